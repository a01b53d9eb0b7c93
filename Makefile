# marketbridge: `make up` runs the whole system locally; `make test` runs every test.
# Everything installs into a project virtualenv (.venv, made on first use), never into the
# system's Python: Debian's and Ubuntu's own python3 refuse pip installs (PEP 668). Its bin/
# comes first on PATH, so the scripts' `python` and the tests' subprocesses use it too.
BOOTSTRAP_PYTHON ?= python3
VENV := .venv
PYTHON := $(CURDIR)/$(VENV)/bin/python
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export VIRTUAL_ENV := $(CURDIR)/$(VENV)
PYTEST_ARGS ?=

.PHONY: help install install-run up test proto bench clean image-test

help:
	@echo "make up      run Redis, cache service, bridge, demo feed and the live page locally"
	@echo "make test    install test deps, get Docker + a Redis image, run the suite with coverage"
	@echo "make proto   regenerate marketbridge/api/v1 from proto/cache/v1/cache.proto"
	@echo "make bench   run the benchmarks (bench/), results under docs/"
	@echo "make image-test  build the Docker image (Debian base, no registry), run both services from it,"
	@echo "                 and check make install-run on a fresh Debian with its own Python (PEP 668)"

$(PYTHON):
	@$(BOOTSTRAP_PYTHON) -m venv $(VENV) 2>/dev/null || { rm -rf $(VENV); \
	  [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && echo "make: installing python3-venv" && \
	  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null && \
	  $(BOOTSTRAP_PYTHON) -m venv $(VENV); } || \
	  { echo "make: cannot create $(VENV) with $(BOOTSTRAP_PYTHON): install python3-venv" >&2; exit 1; }
	$(PYTHON) -m pip install -q --upgrade pip

# `make up` needs only the services' own dependencies; `make test` adds the test extra
# (testcontainers, the Helm SDK, hadolint, matplotlib, py-spy...).
install-run: $(PYTHON)
	$(PYTHON) -m pip install -q -e .

install: $(PYTHON)
	$(PYTHON) -m pip install -q -e '.[test]'
	$(PYTHON) -m pip install -q -e clients/python

proto:
	bash scripts/gen_proto.sh

up: install-run
	$(PYTHON) -m scripts.dev_stack

test: install
	bash scripts/test_env.sh bash scripts/run_suite.sh $(PYTEST_ARGS)

bench: install
	$(PYTHON) -m pip install -q -e '.[bench]'
	bash scripts/test_env.sh $(PYTHON) -m bench

image-test: install
	MARKETBRIDGE_IMAGE_TEST=1 bash scripts/test_env.sh $(PYTHON) -m pytest -q -p no:cacheprovider -rs tests/k8s/test_image.py

clean:
	rm -rf .coverage .coverage.* htmlcov .pytest_cache build *.egg-info
