"""Real infrastructure for the tests: Redis servers (containers or processes), ports, processes."""
