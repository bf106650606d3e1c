#!/usr/bin/env bash
# The prepared GPU run: benchmarks/gpu.py on the GPU machine (JAX with CUDA,
# no Keras, no TensorFlow), in one command of under 9 minutes.
#
# Here, once, from the repository root (both folders are git-ignored):
#   bash ../shared/tools/gpu-wheels.sh        # Keras wheels into .whl/
#   mkdir -p data/gpu && cp ../shared/data/cifar10-jpeg.tar.xz data/gpu/
# Then with the device tool: run with command `bash benchmarks/gpu_run.sh`,
# carry [".whl", "data/gpu"], timeout_s 600. The JSON, PNG and log come back
# from $OUT; copy them to benchmarks/results/.
# Extra arguments go to benchmarks/gpu.py.
set -euo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
  --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH="/tmp/site:$PWD" KERAS_BACKEND=jax PYTHONUNBUFFERED=1
out="${OUT:-benchmarks/results}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
python3 benchmarks/gpu.py --path data/gpu/cifar10-jpeg.tar.xz \
  --output "$out/gpu_h200_device_data.json" "$@" 2>&1 | tee "$out/gpu_h200_device_data.log"
