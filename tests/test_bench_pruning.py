"""InfoBatch and its controls in `keras-sb bench`: the sized methods
(`infobatch-equal-time`, `random-subset`, `plain-short`), label noise, and
the accuracy at equal wall-clock time."""

import json
import os

import keras
import numpy as np
import pytest
from test_datasets import write_image_folder

import keras_sb
from keras_sb import benchmark
from keras_sb.benchmark import sizing
from keras_sb.benchmark import training

NEW_METHODS = ["plain", "infobatch", "infobatch-equal-time", "random-subset",
               "plain-short", "sb-beta2", "sb-beta2-stale3"]


def curve(seconds, accuracies, kept=None):
    """A learning curve with these cumulative seconds and accuracies (and
    InfoBatch's per-epoch `kept` fractions)."""
    points = [{"epoch": i + 1, "seconds": s, "test_accuracy": a,
               "backprops": 100 * (i + 1), "selected_fraction": 1.0}
              for i, (s, a) in enumerate(zip(seconds, accuracies))]
    for point, fraction in zip(points, kept or []):
        point["kept_fraction"] = fraction
    return points


# --- The methods and their sizing -------------------------------------------

def test_new_methods_and_default_choice():
    compared = benchmark.methods()
    assert compared["infobatch"] == {"pruning": "infobatch",
                                     "prune_ratio": 0.5, "anneal": 0.875}
    assert compared["infobatch-equal-time"]["sized_by"] == "equal-time"
    assert compared["random-subset"] == {"pruning": "random-subset",
                                         "kept_fraction": "infobatch"}
    assert compared["plain-short"] == {"plain": True, "sized_by": "fastest"}
    assert benchmark.default_method_names() == NEW_METHODS
    # What `keras-sb bench` runs without --methods, and with --methods all.
    assert list(benchmark.chosen_methods(benchmark.parse_args([]))) == (
        NEW_METHODS)
    assert list(benchmark.chosen_methods(benchmark.parse_args(
        ["--stalenesses", "2"]))) == NEW_METHODS[:-1]
    assert list(benchmark.chosen_methods(benchmark.parse_args(
        ["--methods", "all"]))) == list(compared)
    # The old methods are still there by name.
    for name in ("sb-beta1", "sb-beta2-anneal", "uniform", "importance"):
        assert name in compared


def test_sized_methods_run_after_the_runs_they_are_sized_from():
    compared = benchmark.choose_methods(benchmark.methods(), [
        "plain-short", "random-subset", "sb-beta2", "infobatch-equal-time",
        "infobatch", "plain"])
    assert sizing.run_order(compared) == [
        "sb-beta2", "infobatch", "plain", "random-subset",
        "infobatch-equal-time", "plain-short"]


@pytest.mark.parametrize("names, match", [
    (["plain", "random-subset"], r"random-subset is sized from the runs of "
                                 r"\['infobatch'\]"),
    (["infobatch", "infobatch-equal-time"], r"\['plain'\]"),
    (["plain", "plain-short"], "add a selective or pruning method"),
])
def test_a_sized_method_needs_the_methods_it_is_sized_from(names, match):
    compared = benchmark.choose_methods(benchmark.methods(), names)
    with pytest.raises(ValueError, match=match):
        sizing.check_dependencies(compared)
    # Refused by the command before the data are loaded.
    with pytest.raises(ValueError, match=match):
        benchmark.main(["--methods", *names])


def test_epochs_of_sized_methods():
    assert sizing.equal_time_epochs(10, plain_seconds=100, seconds=60) == 17
    assert sizing.equal_time_epochs(10, plain_seconds=100, seconds=100) == 10
    assert sizing.plain_short_epochs(10, plain_seconds=100,
                                     fastest_seconds=36) == 4
    assert sizing.plain_short_epochs(10, plain_seconds=100,
                                     fastest_seconds=1) == 1


def test_sized_options_from_the_seeds_runs():
    compared = benchmark.methods()
    plain = curve([10, 20, 30, 40], [0.3, 0.5, 0.6, 0.7])
    infobatch = curve([10, 16, 22, 32], [0.3, 0.5, 0.6, 0.7],
                      kept=[1.0, 0.62, 0.58, 1.0])
    sb = curve([7, 11, 15, 19], [0.2, 0.4, 0.5, 0.6])
    seed_runs = {"plain": plain, "infobatch": infobatch, "sb-beta2": sb}
    equal = sizing.sized_options("infobatch-equal-time",
                                 compared["infobatch-equal-time"], seed_runs, 4)
    # round(4 * 40 / 32) = 5, InfoBatch's options otherwise.
    assert equal == {"pruning": "infobatch", "prune_ratio": 0.5,
                     "anneal": 0.875, "epochs": 5}
    subset = sizing.sized_options("random-subset", compared["random-subset"],
                                  seed_runs, 4)
    assert subset == {"pruning": "random-subset",
                      "kept_fraction": [1.0, 0.62, 0.58, 1.0], "epochs": 4}
    seed_runs["random-subset"] = curve([9, 14, 19, 27], [0.3, 0.5, 0.6, 0.7])
    short = sizing.sized_options("plain-short", compared["plain-short"],
                                 seed_runs, 4)
    # The fastest other method (sb-beta2, 19 s): round(4 * 19 / 40) = 2.
    assert short == {"plain": True, "epochs": 2}
    assert benchmark.epochs_of({"epochs": 4}, short) == 2
    # The option dicts of `methods` are left as they were.
    assert compared["random-subset"]["kept_fraction"] == "infobatch"
    assert sizing.sized_options("sb-beta2", compared["sb-beta2"], {}, 4) is (
        compared["sb-beta2"])
    with pytest.raises(ValueError, match="kept_fraction"):
        sizing.sized_options("random-subset", compared["random-subset"],
                             {"infobatch": plain}, 4)


def test_run_sizes_each_seed_from_that_seeds_runs(monkeypatch):
    """`run` trains each seed's methods in dependency order and sizes them
    from that seed's runs (times and kept fractions differ by seed)."""
    timings = {  # seed -> method -> seconds per epoch.
        0: {"plain": 10.0, "infobatch": 6.0, "sb-beta2": 4.0},
        1: {"plain": 12.0, "infobatch": 9.0, "sb-beta2": 3.0},
    }
    calls = []

    def name_of(options):
        for name, method in compared.items():
            if method is options:  # Not sized: the options of `methods`.
                return name
        if options.get("plain"):
            return "plain-short"
        if options["pruning"] == "random-subset":
            return "random-subset"
        return "infobatch-equal-time"

    def fake_train_one(options, initial, train, test, config, seed,
                       progress=None, train_with_ids=None, on_trained=None):
        epochs = training.epochs_of(config, options)
        name = name_of(options)
        calls.append((seed, name, epochs, (options or {}).get("kept_fraction")))
        per_epoch = timings[seed].get(name, 5.0)
        kept = ([1.0] + [{0: 0.6, 1: 0.7}[seed]] * (epochs - 1)
                if name.startswith("infobatch") else None)
        return curve([per_epoch * (e + 1) for e in range(epochs)],
                     [0.5] * epochs, kept)

    monkeypatch.setattr(training, "train_one", fake_train_one)
    monkeypatch.setattr(training, "pipelines", lambda *args: (None, None))
    monkeypatch.setattr(training, "network_from_config",
                        lambda config: keras.Sequential([keras.Input((1,))]))
    compared = benchmark.choose_methods(benchmark.methods(), NEW_METHODS)
    config = {"epochs": 4, "seeds": [0, 1], "batch_size": 8,
              "train_examples": 64}
    runs, summary = training.run(None, None, config, compared, progress=False)
    assert list(runs) == NEW_METHODS
    assert [(seed, name) for seed, name, _, _ in calls] == [
        (seed, name) for seed in (0, 1) for name in
        ["plain", "infobatch", "sb-beta2", "sb-beta2-stale3",
         "infobatch-equal-time", "random-subset", "plain-short"]]
    epochs = {(seed, name): e for seed, name, e, _ in calls}
    # Seed 0: InfoBatch took 6 s an epoch, plain 10: round(4 * 40 / 24) = 7.
    assert epochs[0, "infobatch-equal-time"] == 7
    # Seed 1: round(4 * 48 / 36) = 5.
    assert epochs[1, "infobatch-equal-time"] == 5
    # The fastest other method: sb-beta2, 16 s (seed 0), 12 s (seed 1).
    assert epochs[0, "plain-short"] == round(4 * 16 / 40)
    assert epochs[1, "plain-short"] == max(1, round(4 * 12 / 48))
    fractions = {seed: f for seed, name, _, f in calls
                 if name == "random-subset"}
    assert fractions == {0: [1.0, 0.6, 0.6, 0.6], 1: [1.0, 0.7, 0.7, 0.7]}
    assert summary["methods"]["plain-short"]["epochs"] == [2, 1]


# --- Label noise --------------------------------------------------------------

def test_noisy_labels_change_exactly_the_fraction_with_a_fixed_seed():
    labels = np.arange(1000) % 10
    noisy = benchmark.noisy_labels(labels, 0.2, classes=10, seed=0)
    assert np.array_equal(labels, np.arange(1000) % 10)  # Not changed in place.
    assert noisy.dtype == labels.dtype
    assert np.sum(noisy != labels) == 200
    assert noisy.min() >= 0 and noisy.max() < 10
    # Same seed, same noise; another seed, other examples.
    assert np.array_equal(noisy, benchmark.noisy_labels(labels, 0.2, 10, seed=0))
    other = benchmark.noisy_labels(labels, 0.2, 10, seed=1)
    assert np.sum(other != labels) == 200
    assert not np.array_equal(other != labels, noisy != labels)
    # The wrong classes spread over the other classes.
    assert len(set((noisy - labels)[noisy != labels] % 10)) == 9
    assert np.array_equal(benchmark.noisy_labels(labels, 0.0, 10), labels)
    assert np.sum(benchmark.noisy_labels(labels, 0.999, 10) != labels) == 999
    with pytest.raises(ValueError, match="fraction"):
        benchmark.noisy_labels(labels, 1.5, 10)


def test_changed_examples_are_those_noisy_labels_changes():
    labels = np.arange(500) % 10
    noisy = benchmark.noisy_labels(labels, 0.2, classes=10, seed=3)
    changed = benchmark.label_noise.changed_examples(500, 0.2, seed=3)
    assert sorted(changed) == list(np.flatnonzero(noisy != labels))


def test_label_noise_option_is_checked_and_recorded():
    args = benchmark.parse_args(["--label-noise", "0.2"])
    assert args.label_noise == 0.2
    assert benchmark.parse_args([]).label_noise == 0.0
    config = benchmark.run_config(args, 100, (8, 8, 3))
    assert config["label_noise"] == 0.2
    assert config["label_noise_seed"] == 0
    assert args.output == "time_to_accuracy_cifar10_10ep_train-all_noise0.2"
    with pytest.raises(SystemExit):
        benchmark.parse_args(["--label-noise", "1"])


PIPELINES = {"tensorflow": ["tf.data", "numpy"],
             "jax": ["numpy"]}[keras.backend.backend()]


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_label_noise_changes_training_labels_only(tmp_path, pipeline):
    """Where the data are loaded: exactly 20% of the training labels are
    wrong (a write_image_folder image of class k has pixels 20 * k), the
    same ones in every load, and the test labels are all true."""
    folder = write_image_folder(tmp_path / "data", per_class=10, size=8)

    def labels_and_truth(split):
        if pipeline == "numpy":
            images, labels = split
        else:
            images, labels = zip(*[(image.numpy(), label.numpy())
                                   for image, label in split])
        truth = [int(image[4, 4, 0]) // 20 for image in images]
        return np.array(labels), np.array(truth)

    argv = ["--path", folder, "--pipeline", pipeline, "--label-noise", "0.2"]
    train, test = benchmark.load_data(benchmark.parse_args(argv))
    labels, truth = labels_and_truth(train)
    assert len(labels) == 100 and np.sum(labels != truth) == 20
    test_labels, test_truth = labels_and_truth(test)
    assert len(test_labels) == 100
    assert np.array_equal(test_labels, test_truth)
    again, _ = labels_and_truth(benchmark.load_data(
        benchmark.parse_args(argv))[0])
    assert np.array_equal(again, labels)
    # The same noise as the pure function gives on the clean labels.
    clean, _ = labels_and_truth(benchmark.load_data(
        benchmark.parse_args(argv[:4]))[0])
    assert np.array_equal(labels, benchmark.noisy_labels(clean, 0.2, 10))


# --- Accuracy at equal wall-clock ----------------------------------------------

def test_equal_wall_clock_statements():
    runs = {
        "plain": [curve([50, 100], [0.6, 0.80]), curve([50, 100], [0.6, 0.82])],
        # 62 s: within 10% of plain-short (60 s), beats it and the control.
        "infobatch": [curve([31, 62], [0.6, 0.79]), curve([31, 62], [0.6, 0.81])],
        # At plain's time (98 s): compared with plain, which it loses to.
        "infobatch-equal-time": [curve([49, 98], [0.6, 0.80])] * 2,
        "random-subset": [curve([30, 58], [0.6, 0.78])] * 2,
        "plain-short": [curve([30, 60], [0.6, 0.76])] * 2,
        # 30 s: nothing at its time.
        "sb-beta2": [curve([15, 30], [0.5, 0.70])] * 2,
        # Beats plain-short, loses to the control.
        "sb-beta2-stale3": [curve([28, 57], [0.5, 0.77])] * 2,
    }
    summary = benchmark.summarize(runs, target_gap=0.005)
    rows = summary["methods"]
    assert rows["infobatch"]["total_seconds_mean"] == 62
    assert rows["infobatch"]["final_accuracy_mean"] == pytest.approx(0.80)
    assert rows["infobatch"]["epochs"] == [2, 2]
    infobatch = rows["infobatch"]
    assert infobatch["beat_plain_short_at_equal_time"] is True
    assert infobatch["plain_at_equal_time"] == "plain-short"
    assert infobatch["beat_plain_at_equal_time"] is True
    assert infobatch["beat_random_subset_at_equal_time"] is True
    assert infobatch["faster"] is True
    equal = rows["infobatch-equal-time"]
    assert equal["beat_plain_short_at_equal_time"] is None
    assert equal["plain_at_equal_time"] == "plain"
    assert equal["beat_plain_at_equal_time"] is False
    assert equal["faster"] is False
    sb = rows["sb-beta2"]
    assert [sb[key] for key in ("beat_plain_short_at_equal_time",
                                "plain_at_equal_time",
                                "beat_plain_at_equal_time",
                                "beat_random_subset_at_equal_time",
                                "faster")] == [None, None, None, None, None]
    assert "not comparable" in sb["equal_time_statement"]
    stale = rows["sb-beta2-stale3"]
    assert stale["beat_plain_short_at_equal_time"] is True
    assert stale["beat_random_subset_at_equal_time"] is False
    assert stale["faster"] is False
    assert "random-subset 0.7800 in 58 s: did not beat it" in (
        stale["equal_time_statement"])
    control = rows["random-subset"]
    assert control["beat_random_subset_at_equal_time"] is None
    assert control["beat_plain_short_at_equal_time"] is True
    assert control["faster"] is True  # The control: beat plain training.
    for plain in ("plain", "plain-short"):
        assert "faster" not in rows[plain]
    view = summary["equal_wall_clock"]
    assert view["tolerance"] == 0.1
    assert [entry["method"] for entry in view["methods"]] == [
        "sb-beta2", "sb-beta2-stale3", "random-subset", "plain-short",
        "infobatch", "infobatch-equal-time", "plain"]
    assert view["methods"][-1]["final_accuracy_mean"] == pytest.approx(0.81)
    text = benchmark.format_summary(summary)
    assert "accuracy at equal wall-clock" in text
    assert "| infobatch | 2, 2 | 62 | 0.8000 +- 0.0100 | yes (plain-short) " \
           "| yes | yes | yes |" in text
    assert "| sb-beta2-stale3 | 2, 2 | 57 | 0.7700 +- 0.0000 | yes " \
           "(plain-short) | yes | no | no |" in text
    # The time-to-target view is still there.
    assert "| method | reached target |" in text
    # Older summaries (no equal-time view) still format.
    del summary["equal_wall_clock"]
    assert "equal wall-clock" not in benchmark.format_summary(summary)


def test_equal_time_tolerance_is_ten_percent_of_the_reference():
    runs = {"plain": [curve([100], [0.8])],
            "plain-short": [curve([50], [0.7])],
            "a": [curve([55], [0.75])], "b": [curve([56], [0.75])]}
    rows = benchmark.summarize(runs)["methods"]
    assert rows["a"]["beat_plain_short_at_equal_time"] is True
    assert rows["b"]["beat_plain_short_at_equal_time"] is None
    # No random-subset run: not shown faster, whatever plain-short says.
    assert rows["a"]["faster"] is None
    assert "no random-subset run" in rows["a"]["equal_time_statement"]


def test_plot_has_the_equal_wall_clock_panel(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    closed = []
    close = plt.close
    monkeypatch.setattr(plt, "close",
                        lambda figure: closed.append(figure) or close(figure))
    runs = {"plain": [curve([1, 2], [0.4, 0.6]), curve([1, 3], [0.4, 0.5])],
            "infobatch": [curve([1, 1.5], [0.3, 0.55])]}
    benchmark.plot(runs, {"target_accuracy": 0.5}, str(tmp_path / "p.png"))
    assert os.path.getsize(tmp_path / "p.png") > 1000
    (figure,) = closed
    panel = figure.axes[2]
    assert panel.get_xlabel() == "training wall-clock time (s)"
    assert panel.get_ylabel() == "final test accuracy"
    assert [text.get_text() for text in panel.texts] == ["plain", "infobatch"]
    # One mean point per method, at its mean time and accuracy.
    means = [line.get_xydata().tolist() for line in panel.lines
             if line.get_marker() == "o"]
    assert means == [[[2.5, 0.55]], [[1.5, 0.55]]]


# --- The learning rate ------------------------------------------------------

def test_learning_rate_follows_epochs_for_selective_and_pruning_methods():
    config = {"learning_rate": 0.1, "train_examples": 1000, "batch_size": 128}
    compared = benchmark.methods()
    plain = training.learning_rate_schedule(None, config, epochs=10)
    assert isinstance(plain, keras.optimizers.schedules.CosineDecay)
    assert plain.decay_steps == 10 * 8
    short = training.learning_rate_schedule({"plain": True, "epochs": 3},
                                            config, epochs=3)
    assert isinstance(short, keras.optimizers.schedules.CosineDecay)
    assert short.decay_steps == 3 * 8
    for name in ("infobatch", "random-subset", "sb-beta2", "sb-beta2-stale3"):
        schedule = training.learning_rate_schedule(compared[name], config, 5)
        assert isinstance(schedule, keras_sb.EpochSchedule)
        assert schedule.steps_per_epoch == 8
        assert schedule.schedule.decay_steps == 5 * 8


def test_train_one_compiles_each_method_with_its_schedule(monkeypatch):
    built = []

    def build_model(options, config, seed, initial_weights=None,
                    learning_rate=None):
        built.append(learning_rate)
        raise RuntimeError("built")

    monkeypatch.setattr(training, "build_model", build_model)
    config = {"learning_rate": 0.1, "train_examples": 100, "batch_size": 10,
              "epochs": 3}
    for options in (None, {"plain": True, "epochs": 2},
                    benchmark.methods()["infobatch"],
                    {"pruning": "random-subset", "kept_fraction": [1.0, 0.5]}):
        with pytest.raises(RuntimeError, match="built"):
            training.train_one(options, None, None, None, config, seed=0)
    assert [type(s).__name__ for s in built] == [
        "CosineDecay", "CosineDecay", "EpochSchedule", "EpochSchedule"]
    assert [getattr(s, "schedule", s).decay_steps for s in built] == [
        30, 20, 30, 20]


# --- End to end ---------------------------------------------------------------

@pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                    reason="TensorFlow only: under JAX on the CPU every "
                           "method's XLA compilation would take minutes")
def test_bench_end_to_end_with_pruning_methods(tmp_path):
    """`keras-sb bench` with InfoBatch, its sized variants and controls, on
    200 generated images with noisy labels: infobatch prunes in its second
    epoch, random-subset keeps about what it kept, the sized methods have
    their epochs, and the results hold the equal-time statements."""
    folder = write_image_folder(tmp_path / "data", per_class=20, size=8)
    results = tmp_path / "results"
    methods = ["plain", "infobatch", "infobatch-equal-time", "random-subset",
               "plain-short"]
    result = benchmark.main([
        "--path", folder, "--epochs", "2", "--seeds", "0", "--batch-size",
        "32", "--widths", "4", "--label-noise", "0.2", "--results-dir",
        str(results), "--output", "tiny", "--jit-compile", "false",
        "--methods", *methods])
    with open(results / "tiny.json") as file:
        saved = json.load(file)
    assert os.path.getsize(results / "tiny.png") > 1000
    assert saved["summary"] == json.loads(json.dumps(result["summary"]))
    assert list(saved["runs"]) == methods
    assert saved["config"]["label_noise"] == 0.2
    runs = {name: per_seed[0] for name, per_seed in saved["runs"].items()}
    infobatch = runs["infobatch"]
    assert len(infobatch) == 2
    # Nothing scored before the first epoch: it trains on everything; the
    # second prunes part of the below-mean examples and rescales them.
    assert infobatch[0]["kept_fraction"] == 1.0
    assert 0.4 < infobatch[1]["kept_fraction"] < 1.0
    assert infobatch[1]["rescaling"] == 2.0
    assert infobatch[1]["backprops"] < 2 * 200
    subset = runs["random-subset"]
    assert len(subset) == 2 and subset[0]["kept_fraction"] == 1.0
    assert abs(subset[1]["kept_fraction"] - infobatch[1]["kept_fraction"]) < 0.2
    assert all(p["rescaling"] == 1.0 for p in subset)
    plain_seconds = runs["plain"][-1]["seconds"]
    assert len(runs["infobatch-equal-time"]) == sizing.equal_time_epochs(
        2, plain_seconds, infobatch[-1]["seconds"])
    fastest = min(points[-1]["seconds"] for name, points in runs.items()
                  if name not in ("plain", "plain-short"))
    assert len(runs["plain-short"]) == sizing.plain_short_epochs(
        2, plain_seconds, fastest)
    rows = saved["summary"]["methods"]
    for name in ("infobatch", "infobatch-equal-time", "random-subset"):
        assert rows[name]["beat_plain_short_at_equal_time"] in (True, False,
                                                                None)
        assert rows[name]["equal_time_statement"].startswith(name)
    assert [e["method"] for e in saved["summary"]["equal_wall_clock"][
        "methods"]] == sorted(methods, key=lambda n: rows[n][
            "total_seconds_mean"])
    # What each pruning method kept: a picture and the mislabel detection
    # (of 200 images, 40 mislabelled; the top 5% is 10 images).
    reports = saved["selection_reports"]
    assert sorted(reports) == ["infobatch", "infobatch-equal-time",
                               "random-subset"]
    for name, entry in reports.items():
        assert entry["picture"] == str(results / f"tiny_selection_{name}.png")
        assert os.path.getsize(entry["picture"]) > 1000
        found = entry["mislabel_detection"]
        assert (found["top"], found["mislabelled"]) == (10, 40)
        assert 0 <= found["by_selection"]["precision"] <= 1
    # Each kept example was trained on once per epoch it was kept.
    assert reports["infobatch"]["times_selected"]["max"] == 2
    assert reports["infobatch"]["times_selected"]["min"] >= 1


# --- benchmarks/pruning_targets.py -------------------------------------------

def test_pruning_targets_reads_the_bar_and_checks(tmp_path):
    """The issue's targets from learning curves: time to plain's mean final
    accuracy minus 0.3 points, speedups, and the equal-time checks."""
    import importlib.util

    path = os.path.join(os.path.dirname(__file__), "..", "benchmarks",
                        "pruning_targets.py")
    spec = importlib.util.spec_from_file_location("pruning_targets", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    runs = {
        # Plain ends at 0.80 (the bar: 0.797) after 300 s, reached at 300 s.
        "plain": [curve([100, 200, 300], [0.5, 0.7, 0.80])] * 2,
        "infobatch": [curve([70, 140, 200], [0.5, 0.7, 0.798])] * 2,
        "infobatch-equal-time": [curve([70, 140, 200, 290], [0.5, 0.7, 0.798, 0.81])] * 2,
        "random-subset": [curve([70, 140, 200], [0.5, 0.7, 0.79])] * 2,
        "plain-short": [curve([100, 200], [0.6, 0.795])] * 2,
    }
    report = module.targets({"runs": runs}, gap=0.003)
    assert report["bar"] == pytest.approx(0.797)
    infobatch = report["methods"]["infobatch"]
    assert infobatch["seconds_to_bar"] == [200, 200]
    assert infobatch["speedup_vs_plain"] == pytest.approx([1.5, 1.5])
    assert infobatch["points_vs_plain"] == pytest.approx(-0.2)
    assert infobatch["time_ratio_plain_over_method"] == pytest.approx(1.5)
    checks = report["checks"]
    assert checks["equal_time_bar_1.3x_sooner"] is True
    assert checks["same_epochs_within_0.5_points"] is True
    assert checks["same_epochs_1.4x_less_time"] is True
    assert checks["infobatch_above_random-subset"] is True
    assert checks["infobatch_above_plain-short"] is True
    assert "| random-subset | -, - |" in module.format_targets(report)
