"""Shared pieces of the benchmarks: data, models, timing and result files."""

import json
import os
import sys
import tarfile
import time

from keras_sb.benchmark import machine
from keras_sb.benchmark import source_commit

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "benchmarks", "results")
# Read when a script starts: its results name the code that ran, even if
# the checkout moves during a long run.
source_commit()

OUTPUT_HELP = ("name of the result file, benchmarks/results/<name>.json; a "
               "path (e.g. /tmp/x) writes there instead")


def cifar10_folder():
    """Path of the extracted CIFAR-10 JPEG folder, extracting it if needed.

    Looks at $CIFAR10_DIR, then ./data/cifar10-jpeg, then extracts
    ../shared/data/cifar10-jpeg.tar.xz into ./data.
    """
    candidates = [os.environ.get("CIFAR10_DIR"),
                  os.path.join(ROOT, "data", "cifar10-jpeg")]
    for folder in candidates:
        if folder and os.path.isdir(os.path.join(folder, "train")):
            return folder
    archive = os.path.join(ROOT, "..", "shared", "data", "cifar10-jpeg.tar.xz")
    if not os.path.exists(archive):
        raise FileNotFoundError(
            "CIFAR-10 not found: set CIFAR10_DIR to a folder with train/ and "
            f"test/, or provide {archive}."
        )
    os.makedirs(os.path.join(ROOT, "data"), exist_ok=True)
    with tarfile.open(archive) as tar:
        tar.extractall(os.path.join(ROOT, "data"), filter="data")
    return os.path.join(ROOT, "data", "cifar10-jpeg")


def small_cnn(keras, inputs_shape=(32, 32, 3), classes=10):
    """Inputs and outputs of a small CIFAR CNN (4 conv layers, BatchNorm)."""
    layers = keras.layers
    inputs = keras.Input(inputs_shape)
    x = inputs
    for filters in (32, 64):
        for _ in range(2):
            x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
            x = layers.BatchNormalization()(x)
            x = layers.ReLU()(x)
        x = layers.MaxPooling2D()(x)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(classes, activation="softmax")(x)
    return inputs, outputs


def write_result(name, result):
    """Writes `result` (a dict) as benchmarks/results/<name>.json (at
    `<name>.json` if `name` is an absolute path)."""
    os.makedirs(RESULTS, exist_ok=True)
    result = {
        "command": " ".join([os.path.relpath(sys.argv[0], ROOT)] + sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": machine(),
        **result,
    }
    path = os.path.join(RESULTS, f"{name}.json")
    with open(path, "w") as file:
        json.dump(result, file, indent=2)
    return path
