"""The time-to-accuracy harness and the `keras-sb` command line."""

import json
import os
import re

import keras
import numpy as np
import pytest
from test_datasets import write_image_folder

from keras_sb import benchmark
from keras_sb import cli
from keras_sb import demo
from keras_sb import strategies


def curve(seconds, accuracies, backprops_per_epoch):
    return [{"epoch": i + 1, "seconds": s, "test_accuracy": a,
             "backprops": (i + 1) * backprops_per_epoch,
             "selected_fraction": 1.0}
            for i, (s, a) in enumerate(zip(seconds, accuracies))]


def test_time_to_target_and_speedups():
    runs = {
        "plain": [curve([10, 20, 30], [0.5, 0.7, 0.8], 100),
                  curve([10, 20, 30], [0.5, 0.75, 0.82], 100)],
        "fast": [curve([5, 10, 15], [0.6, 0.8, 0.81], 30),
                 curve([5, 10, 15], [0.6, 0.7, 0.79], 30)],
        "never": [curve([5, 10, 15], [0.1, 0.2, 0.3], 30)] * 2,
    }
    summary = benchmark.summarize(runs, target_gap=0.005)
    # Target: mean plain final accuracy (0.81) minus half a point.
    assert summary["target_accuracy"] == pytest.approx(0.805)
    plain = summary["methods"]["plain"]
    assert plain["seconds_to_target"] == [None, 30]
    fast = summary["methods"]["fast"]
    assert fast["seconds_to_target"] == [15, None]
    assert fast["backprops_to_target"] == [90, None]
    # Seed 0: plain never reached it, so no speedup; seed 1: fast did not.
    assert fast["speedup_vs_plain"] == [None, None]
    # Reached in seed 0, speedup or not.
    assert fast["reached_target"] == "1/2"
    assert summary["methods"]["never"]["reached_target"] == "0/2"

    summary = benchmark.summarize(runs, target=0.7)
    assert summary["methods"]["fast"]["speedup_vs_plain"] == [
        pytest.approx(20 / 10), pytest.approx(20 / 10)]
    assert summary["methods"]["fast"]["speedup_vs_plain_mean"] == pytest.approx(2)
    assert "| fast | 2/2 |" in benchmark.format_summary(summary)


def fake_result(seeds, plain_finals, stale_finals, **config):
    """A result as `keras-sb bench` writes it: plain and a stale method."""
    return {
        "command": "keras-sb bench", "date": "today", "machine": {},
        "config": {"seeds": seeds, "target_gap": 0.005, "target": None,
                   "epochs": 3, **config},
        "runs": {"plain": [curve([10, 20, 30], [0.5, 0.6, a], 100)
                           for a in plain_finals],
                 "sb-beta2": [curve([5, 10, 15], [0.5, 0.6, a], 30)
                              for a in stale_finals],
                 "sb-beta2-stale3": [curve([4, 8, 12], [0.5, 0.6, a], 20)
                                     for a in stale_finals]},
    }


def test_merged_seeds_are_summarized_as_one_run():
    first = fake_result([0, 1], [0.80, 0.82], [0.79, 0.70])
    second = fake_result([2], [0.90], [0.86])
    merged = benchmark.merge_results([first, second])
    assert merged["config"]["seeds"] == [0, 1, 2]
    assert [len(per_seed) for per_seed in merged["runs"].values()] == [3, 3, 3]
    # The target is the mean over all three seeds: (0.80 + 0.82 + 0.90) / 3.
    assert merged["summary"]["target_accuracy"] == pytest.approx(0.835)
    plain = merged["summary"]["methods"]["plain"]
    assert plain["seconds_to_target"] == [None, None, 30]
    assert merged["summary"]["methods"]["sb-beta2"]["speedup_vs_plain"] == [
        None, None, 2.0]
    assert merged["summary"]["methods"]["sb-beta2-stale3"]["vs_non_stale"][
        "speedup"] == [1.25, None, 1.25]
    assert [m["command"] for m in merged["merged_from"]] == ["keras-sb bench"] * 2
    # A result written before `--no-augment` existed was augmented.
    older = fake_result([3], [0.8], [0.8])
    assert "augment" not in older["config"]
    assert benchmark.merge_results([fake_result([4], [0.8], [0.8], augment=True),
                                    older])["config"]["seeds"] == [4, 3]
    with pytest.raises(ValueError, match="augment"):
        benchmark.merge_results([fake_result([4], [0.8], [0.8], augment=False),
                                 older])


@pytest.mark.parametrize("second, match", [
    (fake_result([2], [0.9], [0.8], epochs=4), r"differs .* in \['epochs'\]"),
    (fake_result([1], [0.9], [0.8]), r"repeat a seed. Received: seeds=\[0, 1, 1\]"),
])
def test_merging_different_settings_is_refused(second, match):
    with pytest.raises(ValueError, match=match):
        benchmark.merge_results([fake_result([0, 1], [0.8, 0.8], [0.7, 0.7]), second])


def test_summary_without_plain():
    runs = {"fast": [curve([5, 10], [0.6, 0.8], 30)]}
    summary = benchmark.summarize(runs, target=0.7)
    assert summary["methods"]["fast"]["seconds_to_target"] == [10]
    assert summary["methods"]["fast"]["speedup_vs_plain"] == [None]
    assert summary["methods"]["fast"]["reached_target"] == "1/1"


def test_stale_methods_are_compared_with_selection_at_the_same_beta():
    runs = {"plain": [curve([10, 20], [0.7, 0.9], 20)],
            "sb-beta2": [curve([6, 12], [0.6, 0.8], 8)],
            "sb-beta2-stale3": [curve([4, 8], [0.7, 0.8], 6)]}
    summary = benchmark.summarize(runs, target_gap=0.0)
    stale = summary["methods"]["sb-beta2-stale3"]["vs_non_stale"]
    assert stale["target_accuracy"] == pytest.approx(0.8)
    assert stale["seconds_to_target"] == [8]
    assert stale["reference_seconds_to_target"] == [12]
    assert stale["speedup"] == [pytest.approx(1.5)]
    assert "vs_non_stale" not in summary["methods"]["sb-beta2"]


@pytest.mark.parametrize("argv, match", [
    (["--methods", "plain", "sgd"], r"Unknown methods \['sgd'\]"),
    (["--methods", "uniform"], "give --target"),
])
def test_bad_method_selection(argv, match):
    with pytest.raises(ValueError, match=match):
        benchmark.main(argv)


def test_methods_compare_on_equal_backprop_budget():
    compared = benchmark.methods(betas=(1, 3), reference_beta=2,
                                 stalenesses=(3,))
    assert list(compared) == ["plain", "sb-beta1", "sb-beta3", "sb-beta2-stale3",
                              "sb-beta2-anneal", "uniform", "importance"]
    assert compared["sb-beta2-stale3"] == {"beta": 2.0, "staleness": 3}
    assert compared["sb-beta2-anneal"] == {"beta": 2.0, "end": 0.875}
    assert compared["plain"] is None
    uniform = compared["uniform"]["strategy"]
    importance = compared["importance"]["strategy"]
    assert isinstance(uniform, strategies.UniformSubset)
    assert uniform.fraction == importance.fraction == pytest.approx(1 / 3)
    assert importance.reweight


def test_min_probability_methods():
    compared = benchmark.methods(betas=(2,), reference_beta=2, stalenesses=(),
                                 min_probabilities=(0.05, 0.2))
    assert compared["sb-beta2-pmin0.05"] == {"beta": 2.0,
                                             "min_probability": 0.05}
    assert compared["sb-beta2-pmin0.2"] == {"beta": 2.0, "min_probability": 0.2}
    model = benchmark.build_model(compared["sb-beta2-pmin0.2"], {
        "input_shape": (8, 8, 3), "classes": 10, "learning_rate": 0.1,
        "jit_compile": False}, seed=0)
    assert model.strategy.min_probability == 0.2


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


@pytest.mark.parametrize("module", [benchmark, demo])
@pytest.mark.parametrize("flag", ["--epochs", "--batch-size"])
@pytest.mark.parametrize("value", ["0", "-1", "x"])
def test_counts_must_be_positive(module, flag, value, capsys):
    with pytest.raises(SystemExit) as exit_info:
        module.main([flag, value])
    assert exit_info.value.code == 2
    assert f"must be an int >= 1. Received: '{value}'" in capsys.readouterr().err


def test_cosine_learning_rate_follows_the_epoch():
    schedule = benchmark.cosine_learning_rate(0.1, epochs=4)
    assert [round(schedule(e), 6) for e in range(4)] == [
        0.1, round(0.05 * (1 + 2 ** -0.5), 6), 0.05,
        round(0.05 * (1 - 2 ** -0.5), 6)]


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


@pytest.mark.parametrize("flags, augmented", [([], True), (["--no-augment"], False)])
def test_no_augment_trains_on_the_images_as_they_are(flags, augmented):
    """`--no-augment` reaches the training batches: each batch holds the
    stored images, scaled, and none cropped or flipped."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (64, 8, 8, 3), dtype="uint8")
    labels = np.arange(64) % 10
    args = benchmark.parse_args(["--seeds", "3", "--batch-size", "16", *flags])
    config = {"batch_size": args.batch_size, "seeds": args.seeds,
              "augment": args.augment}
    batches = benchmark.training_batches((images, labels), config)
    stored = {image.tobytes() for image in images}
    seen = [np.round(image * 255).astype("uint8").tobytes()
            for index in range(len(batches))
            for image in np.asarray(batches[index][0])]
    assert len(seen) == 64
    unchanged = sum(image in stored for image in seen)
    if augmented:  # At most the few left as they were by the crop and flip.
        assert unchanged < 32
    else:
        assert unchanged == 64


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
    assert saved["machine"]["keras_backend"] == keras.backend.backend()
    if os.path.isdir(os.path.join(os.path.dirname(benchmark.__file__), "..",
                                  ".git")):  # Run from a checkout, as in CI.
        assert re.fullmatch(r"[0-9a-f]{7,}(-dirty)?",
                            saved["machine"]["git_commit"])
    assert saved["command"].startswith("keras-sb bench --path")


def test_command_line_help(capsys):
    assert cli.main([]) == 0
    assert "demo" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["bench", "--help"])
    assert exit_info.value.code == 0
    assert "--quick" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["demo", "--help"])
    assert exit_info.value.code == 0
    assert "--beta" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train"])
    assert exit_info.value.code == 2
