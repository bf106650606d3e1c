# Two entry points that work on a fresh machine (see README.md):
#   make demo   set up .venv and run the demo
#   make test   set up .venv and run the test suite, on TensorFlow then JAX
#   make bench  set up .venv and run the benchmarks (well over an hour on a 2-core CPU)
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin

.PHONY: setup demo test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

setup: $(BIN)/python
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[cpu,jax,test,demo,bench]"

demo: setup
	$(BIN)/python examples/demo.py

test: setup
	KERAS_BACKEND=tensorflow $(BIN)/python -m pytest -q tests
	KERAS_BACKEND=jax $(BIN)/python -m pytest -q tests

bench: setup
	$(BIN)/python benchmarks/throughput.py
	$(BIN)/python benchmarks/stale_pipeline.py
	$(BIN)/python benchmarks/distributed.py
	$(BIN)/python benchmarks/time_to_accuracy.py --path ../shared/data/cifar10-jpeg.tar.xz --epochs 10 --output time_to_accuracy

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
