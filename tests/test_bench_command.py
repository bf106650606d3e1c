"""The `keras-sb bench` command: argument checks, data loading, the run
and its result files."""

import json
import os
import re

import keras
import pytest
from test_datasets import write_image_folder

from keras_sb import benchmark


@pytest.mark.parametrize("argv, match", [
    (["--methods", "plain", "sgd"], r"Unknown methods \['sgd'\]"),
    (["--methods", "uniform"], "give --target"),
])
def test_bad_method_selection(argv, match):
    with pytest.raises(ValueError, match=match):
        benchmark.main(argv)


PIPELINES = {"tensorflow": ["tf.data", "numpy"],
             "jax": ["numpy"]}[keras.backend.backend()]


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_validation_images_are_training_images_not_trained_on(tmp_path,
                                                               pipeline):
    """`--validation-size` evaluates on training-split images that follow
    the first `--train-size` ones: disjoint from the trained-on images, and
    not from the test split."""
    folder = write_image_folder(tmp_path / "data", per_class=20, size=8,
                                splits=("train",))
    write_image_folder(tmp_path / "data", per_class=3, size=8, splits=("test",))

    def examples(split):
        if pipeline == "numpy":
            return {(image.tobytes(), int(label)) for image, label in zip(*split)}
        return {(image.numpy().tobytes(), int(label)) for image, label in split}

    args = benchmark.parse_args(["--path", folder, "--pipeline", pipeline,
                                 "--train-size", "150",
                                 "--validation-size", "50"])
    train, validation = benchmark.load_data(args)
    train, validation = examples(train), examples(validation)
    assert len(train) == 150 and len(validation) == 50
    all_training_images = examples(benchmark.load_data(
        benchmark.parse_args(["--path", folder, "--pipeline", pipeline]))[0])
    assert train | validation == all_training_images
    assert not train & validation


def test_validation_size_needs_a_training_size():
    with pytest.raises(ValueError, match="--validation-size needs"):
        benchmark.main(["--validation-size", "50"])


# TensorFlow: graph mode with tf.data, as on CPUs. JAX: compiled steps (JAX
# runs uncompiled steps op by op, slowly) with the NumPy pipeline, as on the
# GPU machine.
BACKEND_OPTIONS = {
    "tensorflow": ["--jit-compile", "false"],
    "jax": ["--jit-compile", "true", "--pipeline", "numpy"],
}[keras.backend.backend()]
# Every method compiles its own steps; under XLA on the CPU that is most of
# the test's time, so the JAX pass runs the methods of its own code paths
# (the baselines differ from sb-beta2 only in their strategy).
BENCH_METHODS = {
    "tensorflow": ["plain", "sb-beta2", "sb-beta2-stale2", "uniform", "importance"],
    "jax": ["plain", "sb-beta2", "sb-beta2-stale2"],
}[keras.backend.backend()]


def test_bench_end_to_end_on_tiny_data(tmp_path):
    """`keras-sb bench` on 200 generated 32x32 images: every method trains
    from the same weights, records one point per epoch, and writes JSON and
    a plot."""
    folder = write_image_folder(tmp_path / "data", per_class=20, size=32)
    results = tmp_path / "results"
    result = benchmark.main([
        "--path", folder, "--epochs", "3", "--seeds", "0", "--betas", "2",
        "--stalenesses", "2", "--batch-size", "32", "--results-dir", str(results),
        "--output", "tiny", "--methods", *BENCH_METHODS, *BACKEND_OPTIONS])
    with open(results / "tiny.json") as file:
        saved = json.load(file)
    assert os.path.getsize(results / "tiny.png") > 1000
    assert saved["summary"] == json.loads(json.dumps(result["summary"]))
    assert list(saved["runs"]) == BENCH_METHODS
    for name, (points,) in saved["runs"].items():
        assert [p["epoch"] for p in points] == [1, 2, 3]
        assert points[0]["seconds"] < points[1]["seconds"] < points[2]["seconds"]
        # Training loss and accuracy of every epoch, except the accuracy of a
        # stale epoch (no forward pass over all its examples).
        assert all(p["train_loss"] > 0 for p in points)
        stale_epoch = name.startswith("sb-beta2-stale")
        assert [p["train_accuracy"] is None for p in points] == [
            False, False, stale_epoch]
        assert all(0 <= p["train_accuracy"] <= 1 for p in points[:2])
        if name == "plain":
            assert points[2]["backprops"] == 3 * 200
        else:
            # Epoch 1 primes on every example; epochs 2 and 3 select (3 from
            # stored scores with stale selection).
            assert points[0]["selected_fraction"] == 1.0
            assert points[1]["selected_fraction"] < 1.0
            assert points[2]["selected_fraction"] < 1.0
            assert points[2]["backprops"] < 3 * 200
    assert saved["config"]["train_examples"] == 200
    # A picture of what each selective method selected (no label noise:
    # no mislabel detection).
    reports = saved["selection_reports"]
    assert sorted(reports) == sorted(m for m in BENCH_METHODS if m != "plain")
    for name, entry in reports.items():
        assert os.path.getsize(entry["picture"]) > 1000
        assert "mislabel_detection" not in entry
        assert entry["times_selected"]["max"] <= 3
    assert saved["machine"]["keras_backend"] == keras.backend.backend()
    # keras_sb/benchmark/__init__.py: the checkout is two folders up.
    checkout = os.path.join(os.path.dirname(benchmark.__file__), "..", "..")
    if os.path.isdir(os.path.join(checkout, ".git")):  # Run from a checkout, as in CI.
        assert re.fullmatch(r"[0-9a-f]{7,}(-dirty)?",
                            saved["machine"]["git_commit"])
    assert saved["command"].startswith("keras-sb bench --path")
