# marketbridge: `make up` runs the whole system locally; `make test` runs every test.
PYTHON ?= python3
PYTEST_ARGS ?=

.PHONY: help install up test proto bench lint clean image-test

help:
	@echo "make up      run Redis, cache service, bridge, demo feed and the live page locally"
	@echo "make test    install test deps, get Docker + a Redis image, run the suite with coverage"
	@echo "make proto   regenerate cache_service/pb/v1 from proto/cache/v1/cache.proto"
	@echo "make bench   run the benchmarks (bench/), results under docs/"
	@echo "make image-test  build the Docker image (Debian base, no registry) and run both services from it"

install:
	$(PYTHON) -m pip install -q -e '.[test]'

proto:
	bash scripts/gen_proto.sh

up: install
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
