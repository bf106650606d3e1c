# Two entry points that work on a fresh machine (see README.md):
#   make demo   set up .venv and run the demo
#   make test   set up .venv and run the test suite, on TensorFlow then JAX
#   make bench  set up .venv and run the benchmarks (well over an hour on a 2-core CPU)
#   make bench-pruning-r1 / -r2 / -r3  InfoBatch, its controls and Selective-Backprop
#               in three regimes (long runs on a 2-core CPU; results in benchmarks/results/)
#   make bench-mislabel  the mislabelled examples the per-example report finds
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin

.PHONY: setup demo test bench bench-pruning-r1 bench-pruning-r2 bench-pruning-r3 bench-mislabel clean

CIFAR10 ?= ../shared/data/cifar10-jpeg.tar.xz
BENCH = $(BIN)/keras-sb bench --dataset cifar10 --path $(CIFAR10) --seeds 0 1

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

# R1: all of CIFAR-10, a short budget (10 epochs).
bench-pruning-r1: setup
	$(BENCH) --epochs 10 --methods plain infobatch infobatch-equal-time random-subset plain-short sb-beta2 sb-beta2-stale3 --output pruning_r1_10ep

# R2: R1 with 20 epochs (InfoBatch's scores need epochs to matter).
bench-pruning-r2: setup
	$(BENCH) --epochs 20 --methods plain infobatch infobatch-equal-time random-subset plain-short sb-beta2 sb-beta2-stale3 --output pruning_r2_20ep

# R3: 20% wrong training labels (test labels true), 10,000 images, 20 epochs.
bench-pruning-r3: setup
	$(BENCH) --train-size 10000 --epochs 20 --label-noise 0.2 --methods plain infobatch random-subset sb-beta2 --output pruning_r3_train10000_20ep_noise0.2

# What the per-example report finds: the mislabelled examples among the most
# selected, R3's data (issue 21).
bench-mislabel: setup
	$(BIN)/keras-sb bench --dataset cifar10 --path $(CIFAR10) --seeds 0 --train-size 10000 --epochs 20 --label-noise 0.2 --methods sb-beta2 infobatch --target 0.6 --output mislabel_detection_train10000_20ep_noise0.2

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
