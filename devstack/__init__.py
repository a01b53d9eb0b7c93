"""The parts every launcher of this repository is built from: ``make up`` (scripts/dev_stack.py),
the benchmarks (bench/stack.py) and the tests (tests/infra).

Each launcher composes them its own way, on purpose: the dev stack supervises child processes
and relays their colour-coded output, the benchmarks run every server as a process so its CPU
and memory can be measured from outside, and most tests run the services in the test's own
event loop (faster, and measured by coverage). What they must not do is each find ports, mint
tokens, probe readiness, start Redis or word a child's exit in a way of its own; that lives
here, once. Development and test tooling only: nothing here ships in the image.
"""
