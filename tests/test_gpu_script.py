"""`benchmarks/gpu.py --quick`: the prepared GPU run works end to end (on
JAX, the GPU machine's backend), so it cannot break unnoticed."""

import importlib.util
import json
import os

import keras
import numpy as np
import pytest
from PIL import Image

from keras_sb import datasets

pytestmark = pytest.mark.skipif(keras.backend.backend() != "jax",
                                reason="the GPU machine runs JAX")


def load_script():
    path = os.path.join(os.path.dirname(__file__), "..", "benchmarks",
                        "gpu.py")
    spec = importlib.util.spec_from_file_location("gpu_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_cifar_like(root, per_class=30, size=8):
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for label, name in enumerate(datasets.CIFAR10_CLASSES):
            folder = os.path.join(root, split, name)
            os.makedirs(folder)
            for index in range(per_class):
                image = rng.integers(0, 60, (size, size, 3)) + 20 * label
                Image.fromarray(image.astype("uint8")).save(
                    os.path.join(folder, f"{index}.png"))
    return str(root)


def test_quick_run_writes_every_part(tmp_path):
    gpu = load_script()
    output = tmp_path / "gpu.json"
    gpu.main(["--quick", "--path", write_cifar_like(tmp_path / "data"),
              "--output", str(output)])
    result = json.loads(output.read_text())
    assert result["command"].startswith("python benchmarks/gpu.py --quick")
    assert result["machine"]["keras_backend"] == "jax"
    assert result["machine"]["devices"]
    record = result["throughput"]["32"]
    rows = record["table"]
    assert set(rows) == set(gpu.THROUGHPUT_ROWS) | {"f",
                                                     "plain-array-pipeline"}
    assert rows["f"] == pytest.approx(
        rows["select-nothing"]["epoch_seconds"] / rows["plain"]["epoch_seconds"])
    assert rows["select-nothing"]["fraction"] == 0.0
    assert 0.0 < rows["sb-beta2"]["fraction"] < 1.0
    assert rows["sb-beta2-stale-epoch"]["epochs_timed"] == [4, 6]
    assert rows["sb-beta2-fresh-with-ids"]["epochs_timed"] == [3, 5]
    assert "ideal_speedup" in rows["sb-beta3"]
    assert "ideal_speedup" not in rows["infobatch"]
    assert record["control_flow"] == {"loops": 0, "conditionals": 1}
    assert set(result["runs"]) == set(gpu.TIME_TO_ACCURACY_METHODS)
    assert all(len(curves) == 1 for curves in result["runs"].values())
    assert len(result["runs"]["plain"][0]) == 2  # --quick: 2 epochs.
    assert set(result["summary"]["methods"]) == set(gpu.TIME_TO_ACCURACY_METHODS)
    assert (tmp_path / "gpu.png").stat().st_size > 0


def test_stale_row_epochs_are_read_from_the_logged_accuracy():
    gpu = load_script()
    nan = float("nan")
    history = {"accuracy": [0.1, 0.2, nan, 0.3, nan, 0.4, nan]}
    assert gpu.stale_row_epochs(history) == ([4, 6], [3, 5])


def test_throughput_table_speedups_and_ideal():
    gpu = load_script()
    table = gpu.throughput_table({
        "plain": {"epoch_seconds": 2.0, "fraction": None},
        "select-nothing": {"epoch_seconds": 1.0, "fraction": 0.0},
        "sb-beta2": {"epoch_seconds": 2.5, "fraction": 0.5}})
    assert table["f"] == 0.5
    assert table["sb-beta2"]["speedup"] == 0.8
    assert table["sb-beta2"]["ideal_speedup"] == 1.0  # 1 / (0.5 + 0.5)
    assert table["sb-beta2"]["fraction_of_ideal"] == 0.8
