"""Time-to-accuracy benchmark: Selective-Backprop against its baselines.

Trains the same network, from the same initial weights, with the same data,
optimizer and per-epoch learning-rate schedule, with each method:

- `plain`: `keras.Model`, every example every step;
- `sb-beta<b>`: `SelectiveBackpropModel` with the paper's rule;
- `uniform`: a uniform random subset at the backprop fraction of the
  reference beta (`1 / (beta + 1)`), the control;
- `importance`: loss-proportional importance sampling with unbiased
  re-weighting (Katharopoulos & Fleuret-like) at the same fraction.

After every epoch the test accuracy is recorded against the training
wall-clock time (evaluation excluded) and against the examples
backpropagated. The time to a target accuracy (default: plain training's
final accuracy minus 0.5 points, averaged over seeds) gives each method's
speedup over plain training.

The learning rate follows the epoch (a cosine decay over the epochs, set at
each epoch's start), not `optimizer.iterations`, because Selective-Backprop
takes fewer optimizer steps per epoch: every method gets the same schedule
per epoch of data.

Run `keras-sb bench --help` (or `python benchmarks/time_to_accuracy.py`).
"""

import argparse
import importlib.util
import json
import math
import os
import platform
import subprocess
import sys
import time

import keras
import numpy as np

from keras_sb import data as data_utils
from keras_sb import datasets
from keras_sb import strategies
from keras_sb.cli import positive_int
from keras_sb.model import SelectiveBackpropModel
from keras_sb.stale import StaleSelection

QUICK = {"train_size": 2048, "test_size": 1000, "epochs": 4}


def small_resnet(input_shape=(32, 32, 3), classes=10, widths=(16, 32, 64),
                 blocks_per_stage=1, batch_norm_momentum=0.99):
    """A small CIFAR ResNet (basic blocks, BatchNorm), as a functional model.

    With the defaults it is a ResNet-8 (3 stages of one basic block); use
    `widths=(64, 128, 256, 512)` and `blocks_per_stage=2` for a
    ResNet-18-class network on a GPU.

    `batch_norm_momentum` (Keras's default 0.99) sets how fast BatchNorm's
    moving statistics follow the weights. Selective-Backprop scores examples
    with those statistics (inference mode) and updates them only in backward
    steps, so short schedules with large learning rates want a faster
    average, e.g. 0.9 (PyTorch's default).
    """
    layers = keras.layers

    def batch_norm():
        return layers.BatchNormalization(momentum=batch_norm_momentum)

    inputs = keras.Input(input_shape)
    x = layers.Conv2D(widths[0], 3, padding="same", use_bias=False)(inputs)
    x = layers.ReLU()(batch_norm()(x))
    for stage, width in enumerate(widths):
        for block in range(blocks_per_stage):
            strides = 2 if stage > 0 and block == 0 else 1
            shortcut = x
            y = layers.Conv2D(width, 3, strides=strides, padding="same",
                              use_bias=False)(x)
            y = layers.ReLU()(batch_norm()(y))
            y = layers.Conv2D(width, 3, padding="same", use_bias=False)(y)
            y = batch_norm()(y)
            if strides != 1 or shortcut.shape[-1] != width:
                shortcut = layers.Conv2D(width, 1, strides=strides,
                                         use_bias=False)(shortcut)
                shortcut = batch_norm()(shortcut)
            x = layers.ReLU()(layers.Add()([y, shortcut]))
    x = layers.GlobalAveragePooling2D()(x)
    # float32 softmax, also under a mixed precision policy.
    outputs = layers.Dense(classes, activation="softmax", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="small_resnet")


def methods(betas=(1.0, 2.0, 3.0), reference_beta=2.0, stalenesses=(2, 3),
            anneal_from=0.875, min_probabilities=()):
    """The compared methods: name -> SelectiveBackpropModel options (None:
    plain keras.Model). A `staleness` option means training with
    `StaleSelection(staleness)` on data with example ids. The `-anneal`
    method selects until `anneal_from` of its epochs (`end=`), then trains
    on every example, as InfoBatch anneals to the full data. The `-pmin`
    methods are the paper's rule at the reference beta with a floor
    `min_probability` on the selection probability."""
    fraction = 1.0 / (reference_beta + 1.0)
    compared = {"plain": None}
    for beta in betas:
        compared[f"sb-beta{beta:g}"] = {"beta": float(beta)}
    for floor in min_probabilities:
        compared[f"sb-beta{reference_beta:g}-pmin{floor:g}"] = {
            "beta": float(reference_beta), "min_probability": float(floor)}
    for staleness in stalenesses:
        compared[f"sb-beta{reference_beta:g}-stale{staleness}"] = {
            "beta": float(reference_beta), "staleness": int(staleness)}
    compared[f"sb-beta{reference_beta:g}-anneal"] = {
        "beta": float(reference_beta), "end": float(anneal_from)}
    compared["uniform"] = {"strategy": strategies.UniformSubset(fraction)}
    compared["importance"] = {
        "strategy": strategies.LossProportional(fraction, reweight=True)
    }
    return compared


def choose_methods(compared, names):
    """The methods of `compared` (see `methods`) named in `names`, in that
    order; a ValueError for a name that is not one of them."""
    unknown = sorted(set(names) - set(compared))
    if unknown:
        raise ValueError(f"Unknown methods {unknown}; the methods are "
                         f"{list(compared)}. Received: --methods "
                         f"{' '.join(names)}")
    return {name: compared[name] for name in names}


def cosine_learning_rate(base, epochs):
    """Per-epoch cosine decay from `base` to 0 (for LearningRateScheduler)."""
    def schedule(epoch, learning_rate=None):
        return base * 0.5 * (1.0 + math.cos(math.pi * epoch / epochs))

    return schedule


def wait_for_device(model):
    """Blocks until the training steps dispatched so far have run.

    JAX (and TensorFlow on a GPU) return from a step before the device has
    finished it; reading a value the last step wrote waits for it, so that
    wall-clock times are not carried over into the next measurement.
    """
    keras.ops.convert_to_numpy(model.optimizer.iterations)


class EpochTimer(keras.callbacks.Callback):
    """Records the wall-clock seconds of each epoch in `times` (waiting for
    the device at the end of each epoch)."""

    def __init__(self):
        super().__init__()
        self.times = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        wait_for_device(self.model)
        self.times.append(time.perf_counter() - self._start)


class LearningCurve(keras.callbacks.Callback):
    """Records, per epoch: training seconds (validation excluded),
    examples backpropagated, validation accuracy, and the loss and accuracy
    logged in training (None where not finite: stale epochs log NaN)."""

    def __init__(self, examples_per_epoch, progress=None):
        super().__init__()
        self.examples_per_epoch = examples_per_epoch
        self.progress = progress
        self.points = []
        self._seconds = 0.0
        self._backprops = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = time.perf_counter()
        self._test_seconds = 0.0

    def on_test_begin(self, logs=None):
        wait_for_device(self.model)
        self._test_start = time.perf_counter()

    def on_test_end(self, logs=None):
        self._test_seconds += time.perf_counter() - self._test_start

    def on_epoch_end(self, epoch, logs=None):
        wait_for_device(self.model)
        self._seconds += (time.perf_counter() - self._epoch_start
                          - self._test_seconds)
        if "backprops" in logs:
            self._backprops = int(logs["backprops"])
        else:
            self._backprops += self.examples_per_epoch
        self.points.append({
            "epoch": epoch + 1,
            "seconds": self._seconds,
            "backprops": self._backprops,
            "test_accuracy": float(logs["val_accuracy"]),
            "selected_fraction": float(logs.get("selected_fraction", 1.0)),
            "train_loss": _finite_or_none(logs.get("loss")),
            "train_accuracy": _finite_or_none(logs.get("accuracy")),
        })
        if self.progress is not None:
            self.progress.add(1)


def _finite_or_none(value):
    """`value` as a float, or None when it is missing or not finite (stale
    epochs log NaN metrics; JSON has no NaN)."""
    if value is None:
        return None
    value = float(value)
    return value if np.isfinite(value) else None


def _network(config):
    return small_resnet(config["input_shape"], config["classes"],
                        widths=config.get("widths", (16, 32, 64)),
                        blocks_per_stage=config.get("blocks_per_stage", 1),
                        batch_norm_momentum=config.get("batch_norm_momentum",
                                                       0.99))


def _epochs(config, options):
    """Epochs of a method: `selective_epochs` for all but plain training."""
    if options is None:
        return config["epochs"]
    return config.get("selective_epochs") or config["epochs"]


def build_model(options, config, seed, initial_weights=None):
    """The compiled model of one method: the network of `config` (with
    `initial_weights`), as a `SelectiveBackpropModel` with `options`, or
    plain when `options` is None."""
    network = _network(config)
    if initial_weights is not None:
        network.set_weights(initial_weights)
    if options is None:
        model = network
    else:
        options = {k: v for k, v in options.items() if k != "staleness"}
        model = SelectiveBackpropModel.from_model(network, seed=seed, **options)
    model.compile(
        optimizer=keras.optimizers.SGD(config["learning_rate"], momentum=0.9,
                                       nesterov=True, weight_decay=5e-4),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        jit_compile=config["jit_compile"],
    )
    return model


def train_one(options, initial_weights, train, test, config, seed,
              progress=None, train_with_ids=None):
    """Trains one method from `initial_weights`; returns its learning curve.

    Methods with a `staleness` train with `StaleSelection` on
    `train_with_ids(model)`: the same training data with example ids (and,
    if the function makes them so, the stale draws in the input pipeline).
    """
    keras.utils.set_random_seed(seed)
    model = build_model(options, config, seed, initial_weights)
    epochs = _epochs(config, options)
    curve = LearningCurve(config["train_examples"], progress)
    schedule = keras.callbacks.LearningRateScheduler(
        cosine_learning_rate(config["learning_rate"], epochs))
    callbacks = [schedule, curve]
    staleness = (options or {}).get("staleness")
    if staleness:
        if train_with_ids is None:
            raise ValueError("A method with `staleness` needs `train_with_ids`.")
        train = train_with_ids(model)
        callbacks.insert(0, StaleSelection(staleness))
    model.fit(train, epochs=epochs, validation_data=test,
              callbacks=callbacks, verbose=0)
    return curve.points


def time_to_accuracy(points, target):
    """Training seconds and backprops when `target` was first reached, or
    None."""
    for point in points:
        if point["test_accuracy"] >= target:
            return point["seconds"], point["backprops"]
    return None


def summarize(runs, target_gap=0.005, target=None):
    """Per-method time to target, speedups and final accuracy.

    Args:
        runs: dict method -> list (one per seed) of learning curves.
        target_gap: target = mean final plain accuracy minus this, when
            `target` is None.
        target: an explicit target accuracy.
    """
    if target is None:
        plain_final = [points[-1]["test_accuracy"] for points in runs["plain"]]
        target = float(np.mean(plain_final)) - target_gap
    seeds = max(len(per_seed) for per_seed in runs.values())
    plain_times = [time_to_accuracy(points, target)
                   for points in runs.get("plain", [])] or [None] * seeds
    summary = {"target_accuracy": target, "methods": {}}
    for name, per_seed in runs.items():
        reached = [time_to_accuracy(points, target) for points in per_seed]
        speedups = [
            plain[0] / mine[0] if plain and mine else None
            for plain, mine in zip(plain_times, reached)
        ]
        finals = [points[-1]["test_accuracy"] for points in per_seed]
        valid = [s for s in speedups if s is not None]
        summary["methods"][name] = {
            "seconds_to_target": [r[0] if r else None for r in reached],
            "backprops_to_target": [r[1] if r else None for r in reached],
            "speedup_vs_plain": speedups,
            "speedup_vs_plain_mean": float(np.mean(valid)) if valid else None,
            "reached_target": f"{sum(r is not None for r in reached)}/{len(per_seed)}",
            "final_accuracy": finals,
            "final_accuracy_mean": float(np.mean(finals)),
            "total_seconds": [points[-1]["seconds"] for points in per_seed],
            "total_backprops": [points[-1]["backprops"] for points in per_seed],
        }
    for name, per_seed in runs.items():
        base = name.split("-stale")[0]
        if name != base and base in runs:
            summary["methods"][name]["vs_non_stale"] = _compare_at_final(
                runs[base], per_seed, target_gap)
    return summary


def _compare_at_final(reference, runs, target_gap):
    """Speedup of `runs` over `reference` (lists of curves, one per seed) to
    the reference's mean final accuracy minus `target_gap`: how stale
    selection compares with selection at the same beta."""
    target = float(np.mean([points[-1]["test_accuracy"] for points in reference]))
    target -= target_gap
    times = [time_to_accuracy(points, target) for points in runs]
    reference_times = [time_to_accuracy(points, target) for points in reference]
    speedups = [theirs[0] / mine[0] if theirs and mine else None
                for theirs, mine in zip(reference_times, times)]
    return {
        "target_accuracy": target,
        "seconds_to_target": [t[0] if t else None for t in times],
        "reference_seconds_to_target": [t[0] if t else None for t in reference_times],
        "speedup": speedups,
    }


# Settings added to `main`'s configuration over time, with the value that
# results written before them ran with.
_SETTINGS_ADDED_LATER = {"augment": True, "evaluated_on": "test split"}


def merge_results(results):
    """Merges benchmark results of the same settings and different seeds.

    Seeds run in separate processes (to fit a time limit, or to add seeds to
    an earlier run) are summarized together, as one run with all the seeds
    would be: same target rule, same statistics.

    Args:
        results: list of result dicts as `main` writes them (JSON-loaded),
            whose configurations differ only in `seeds`, with the same
            methods.

    Returns:
        A result dict with every seed's runs and a new summary; `merged_from`
        holds each input's command, date and machine.

    Example:

    ```python
    merged = merge_results([json.load(open(a)), json.load(open(b))])
    print(format_summary(merged["summary"]))
    ```
    """
    if len(results) < 2:
        raise ValueError(
            f"Merging needs at least 2 results. Received: {len(results)}.")

    def settings(result):
        # Results written before a setting existed ran with its default.
        config = dict(_SETTINGS_ADDED_LATER, **result["config"])
        return {k: v for k, v in config.items() if k != "seeds"}

    first = results[0]
    reference = settings(first)
    for index, result in enumerate(results[1:], 1):
        mine = settings(result)
        if mine != reference:
            differing = sorted(key for key in set(mine) | set(reference)
                               if mine.get(key) != reference.get(key))
            raise ValueError(
                "Results to merge must differ only in their seeds. Received: "
                f"result {index} differs from result 0 in {differing}.")
        if list(result["runs"]) != list(first["runs"]):
            raise ValueError(
                "Results to merge must have the same methods. Received: "
                f"{list(first['runs'])} and {list(result['runs'])}.")
    seeds = [seed for result in results for seed in result["config"]["seeds"]]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"Results to merge repeat a seed. Received: seeds={seeds}.")
    runs = {name: [points for result in results for points in result["runs"][name]]
            for name in first["runs"]}
    config = dict(first["config"], seeds=seeds)
    return {
        "merged_from": [{key: result.get(key) for key in ("command", "date", "machine")}
                        for result in results],
        "config": config,
        "summary": summarize(runs, config["target_gap"], config.get("target")),
        "runs": runs,
    }


def plot(runs, summary, path, evaluated_on="test split"):
    """Test accuracy vs training time and vs backprops, one line per run
    (validation accuracy where `evaluated_on`, as in the results' config,
    says so)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (by_time, by_backprops) = plt.subplots(1, 2, figsize=(12, 4.5))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for index, (name, per_seed) in enumerate(runs.items()):
        for seed_index, points in enumerate(per_seed):
            label = name if seed_index == 0 else None
            style = {"color": colors[index % len(colors)], "label": label,
                     "alpha": 0.9 if seed_index == 0 else 0.5, "marker": "."}
            accuracy = [p["test_accuracy"] for p in points]
            by_time.plot([p["seconds"] for p in points], accuracy, **style)
            by_backprops.plot([p["backprops"] for p in points], accuracy,
                              **style)
    for axis, label in ((by_time, "training wall-clock time (s)"),
                        (by_backprops, "examples backpropagated")):
        axis.axhline(summary["target_accuracy"], color="gray", linestyle="--",
                     linewidth=1)
        axis.set_xlabel(label)
        axis.set_ylabel("validation accuracy"
                        if evaluated_on.startswith("validation")
                        else "test accuracy")
        axis.grid(alpha=0.3)
    by_time.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def machine():
    """This machine, the software versions and, when keras-sb runs from a
    git checkout, its commit (with "-dirty" if tracked files had changed)
    when this module was imported: the code this process runs, even if the
    checkout changes while a long benchmark runs."""
    info = {
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
        "keras": keras.__version__,
        "keras_backend": keras.backend.backend(),
    }
    if keras.backend.backend() == "jax":
        import jax

        info["jax"] = jax.__version__
        info["devices"] = [f"{d.platform}: {d.device_kind}" for d in jax.devices()]
    try:
        import tensorflow as tf
    except ImportError:
        pass
    else:
        info["tensorflow"] = tf.__version__
        info["gpus"] = [d.name for d in tf.config.list_physical_devices("GPU")]
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            info["cpu_model"] = next(line.split(":", 1)[1].strip()
                                     for line in cpuinfo
                                     if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    if _IMPORTED_COMMIT:
        info["git_commit"] = _IMPORTED_COMMIT
    return info


def _git_commit():
    """The short commit of the checkout keras-sb runs from, or None."""
    folder = os.path.dirname(os.path.abspath(__file__))
    try:
        commit = subprocess.check_output(
            ["git", "rev-parse", "--short", "HEAD"], cwd=folder, text=True,
            stderr=subprocess.DEVNULL).strip()
        changed = subprocess.check_output(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=folder, text=True, stderr=subprocess.DEVNULL).strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + "-dirty" if changed else commit


_IMPORTED_COMMIT = _git_commit()


def pipelines(train, test, config):
    """Training and test batches from a loaded dataset.

    `train` and `test` are unbatched `tf.data.Dataset`s (`datasets.load`),
    or `(images, labels)` NumPy arrays (`datasets.load_arrays`), which give
    `data.ArrayPipeline`s and need no TensorFlow.
    """
    if isinstance(train, tuple):
        test_batches = data_utils.ArrayPipeline(*test, 500, augment=False,
                                                shuffle=False)
    else:
        test_batches = data_utils.evaluation_pipeline(test, 500)
        for _ in train.concatenate(test):  # Fill the decoding caches once.
            pass
    return training_batches(train, config), test_batches


def training_batches(train, config, example_ids=False, stale_model=None):
    """The training batches of `config` from a loaded training set.

    Args:
        train: unbatched `tf.data.Dataset` or `(images, labels)` arrays.
        config: dict with `batch_size` and `seeds` (and `augment`, default
            True).
        example_ids: whether batches carry example ids (stale selection).
        stale_model: the model whose stale epochs are drawn in the pipeline
            (`data.stale_filter`); None: the train step draws.
    """
    augment = config.get("augment", True)
    if isinstance(train, tuple):
        return data_utils.ArrayPipeline(
            *train, config["batch_size"], augment=augment,
            seed=config["seeds"][0], example_ids=example_ids,
            stale_model=stale_model)
    return data_utils.training_pipeline(
        train, config["batch_size"], augment=augment, seed=config["seeds"][0],
        example_ids=example_ids, stale_model=stale_model)


def run(train, test, config, compared=None, progress=True):
    """Runs every method with every seed; returns `(runs, summary)`.

    Args:
        train, test: unbatched `tf.data.Dataset`s of `(uint8 image, label)`,
            or `(images, labels)` NumPy arrays (see `pipelines`).
        config: dict with `epochs`, `batch_size`, `seeds`, `learning_rate`,
            `jit_compile`, `train_examples`, `input_shape`, `classes`, and
            optionally `target` / `target_gap`.
        compared: dict name -> options (see `methods`); defaults to all.
    """
    compared = compared or methods()
    train_batches, test_batches = pipelines(train, test, config)
    pipeline_draws = config.get("stale_draws", "pipeline") == "pipeline"

    def train_with_ids(model):
        return training_batches(train, config, example_ids=True,
                                stale_model=model if pipeline_draws else None)
    bar = None
    if progress:
        bar = keras.utils.Progbar(
            len(config["seeds"]) * sum(_epochs(config, options)
                                       for options in compared.values()),
            unit_name="epoch")
    runs = {name: [] for name in compared}
    for seed in config["seeds"]:
        keras.utils.set_random_seed(seed)
        initial = _network(config).get_weights()
        for name, options in compared.items():
            runs[name].append(train_one(options, initial, train_batches,
                                        test_batches, config, seed, bar,
                                        train_with_ids))
    summary = summarize(runs, config.get("target_gap", 0.005),
                        config.get("target"))
    return runs, summary


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="keras-sb bench",
        description="Time-to-accuracy of Selective-Backprop vs plain Keras, "
                    "a uniform-subset control and importance sampling.")
    parser.add_argument("--dataset", default="cifar10",
                        choices=sorted(datasets.DATASETS))
    parser.add_argument("--path", default=None,
                        help="local copy (folder or .tar.xz); default: TFDS")
    parser.add_argument("--data-dir", default=None, help="TFDS data dir")
    parser.add_argument("--train-size", type=positive_int, default=None,
                        help="use the first N training images (default all)")
    parser.add_argument("--test-size", type=positive_int, default=None)
    parser.add_argument("--validation-size", type=positive_int, default=None,
                        help="evaluate on the N training images after the "
                             "first --train-size instead of the test split "
                             "(to choose settings without the test set); "
                             "the accuracies called test accuracy are then "
                             "these images'")
    parser.add_argument("--epochs", type=positive_int, default=10)
    parser.add_argument("--selective-epochs", type=positive_int, default=None,
                        help="epochs of every method but plain (default "
                             "--epochs), to compare at equal wall-clock time")
    parser.add_argument("--methods", nargs="+", default=None,
                        help="run only these methods (e.g. plain sb-beta2 "
                             "uniform); without plain, give --target")
    parser.add_argument("--batch-size", type=positive_int, default=128)
    parser.add_argument("--no-augment", dest="augment", action="store_false",
                        help="train without the random crop and flip (a "
                             "network that can fit its training set)")
    parser.add_argument("--learning-rate", type=float, default=0.1)
    parser.add_argument("--widths", type=int, nargs="+", default=[16, 32, 64],
                        help="channels per ResNet stage (ResNet-18 class: "
                             "64 128 256 512 with --blocks 2)")
    parser.add_argument("--blocks", type=positive_int, default=1,
                        help="basic blocks per stage")
    parser.add_argument("--batch-norm-momentum", type=float, default=0.99)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--betas", type=float, nargs="+", default=[1, 2, 3])
    parser.add_argument("--stalenesses", type=int, nargs="*", default=[2, 3],
                        help="stale selection at the reference beta with "
                             "these stalenesses")
    parser.add_argument("--stale-draws", default="pipeline",
                        choices=["pipeline", "step"],
                        help="where stale epochs draw their examples: in the "
                             "tf.data pipeline (data.stale_filter: skipped "
                             "examples are not augmented or batched; with "
                             "--pipeline numpy, the ArrayPipeline) or in the "
                             "train step")
    parser.add_argument("--anneal-from", type=float, default=0.875,
                        help="the sb-beta<reference beta>-anneal method "
                             "trains on every example from this fraction of "
                             "its epochs on")
    parser.add_argument("--min-probabilities", type=float, nargs="*",
                        default=[],
                        help="add the methods sb-beta<reference beta>-pmin<P>:"
                             " the paper's rule with the floor "
                             "min_probability=P")
    parser.add_argument("--reference-beta", type=float, default=2.0,
                        help="beta whose backprop fraction 1/(beta+1) the "
                             "uniform and importance baselines use")
    parser.add_argument("--target", type=float, default=None,
                        help="target test accuracy (default: plain's final "
                             "accuracy minus --target-gap)")
    parser.add_argument("--target-gap", type=float, default=0.005)
    parser.add_argument("--jit-compile", default="auto",
                        choices=["auto", "true", "false"])
    parser.add_argument("--pipeline", default=None,
                        choices=["tf.data", "numpy"],
                        help="input pipeline (default: tf.data where "
                             "TensorFlow is installed, else numpy, which "
                             "needs --path)")
    parser.add_argument("--mixed-precision", action="store_true",
                        help="train in mixed_bfloat16 (for GPUs)")
    parser.add_argument("--quick", action="store_true",
                        help=f"a few minutes: {QUICK}")
    parser.add_argument("--output", default="time_to_accuracy",
                        help="name of the result files")
    parser.add_argument("--results-dir", default=os.path.join("benchmarks",
                                                              "results"))
    args = parser.parse_args(argv)
    if args.pipeline is None:
        has_tensorflow = importlib.util.find_spec("tensorflow") is not None
        args.pipeline = "tf.data" if has_tensorflow else "numpy"
    if args.quick:
        for key, value in QUICK.items():
            if getattr(args, key) in (None, parser.get_default(key)):
                setattr(args, key, value)
    return args


def load_data(args):
    """The training and evaluation sets of the parsed command line `args`:
    `(images, labels)` arrays with `--pipeline numpy`, else unbatched
    `tf.data.Dataset`s. The evaluation set is the test split, or with
    `--validation-size N` the N training images after the first
    `--train-size`, so that settings can be chosen without the test set."""
    if args.pipeline == "numpy":
        if args.path is None:
            raise ValueError("--pipeline numpy reads a local copy: give --path.")
        if args.validation_size:
            images, labels = datasets.load_arrays(
                args.dataset, "train", args.path,
                limit=args.train_size + args.validation_size)
            return ((images[:args.train_size], labels[:args.train_size]),
                    (images[args.train_size:], labels[args.train_size:]))
        return (datasets.load_arrays(args.dataset, "train", args.path,
                                     limit=args.train_size),
                datasets.load_arrays(args.dataset, "test", args.path,
                                     limit=args.test_size))
    if args.validation_size:
        images = datasets.load(args.dataset, "train", args.path, args.data_dir,
                               limit=args.train_size + args.validation_size)
        for _ in images:  # Decode into the cache once; take/skip read it.
            pass
        return images.take(args.train_size), images.skip(args.train_size)
    return (datasets.load(args.dataset, "train", args.path, args.data_dir,
                          limit=args.train_size),
            datasets.load(args.dataset, "test", args.path, args.data_dir,
                          limit=args.test_size))


def main(argv=None):
    args = parse_args(argv)
    compared = methods(args.betas, args.reference_beta, args.stalenesses,
                       args.anneal_from, args.min_probabilities)
    if args.methods:
        compared = choose_methods(compared, args.methods)
    if "plain" not in compared and args.target is None:
        raise ValueError("Without the plain method, give --target.")
    if args.validation_size is not None and args.train_size is None:
        raise ValueError(
            "--validation-size needs --train-size (the validation images "
            "follow the training ones). Received: --validation-size "
            f"{args.validation_size} without --train-size")
    train, test = load_data(args)
    if args.pipeline == "numpy":
        train_examples = len(train[0])
        image_shape = tuple(train[0].shape[1:])
    else:
        train_examples = int(train.reduce(0, lambda count, _: count + 1))
        image_shape = tuple(train.element_spec[0].shape)
    config = {
        "dataset": args.dataset,
        "epochs": args.epochs,
        "selective_epochs": args.selective_epochs,
        "batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "seeds": args.seeds,
        "jit_compile": {"auto": "auto", "true": True,
                        "false": False}[args.jit_compile],
        "train_examples": train_examples,
        "input_shape": image_shape,
        "classes": datasets.num_classes(args.dataset),
        "target": args.target,
        "target_gap": args.target_gap,
        "evaluated_on": (
            f"validation: training images {args.train_size} to "
            f"{args.train_size + args.validation_size - 1}"
            if args.validation_size else "test split"),
        "stale_draws": args.stale_draws,
        "anneal_from": args.anneal_from,
        "widths": args.widths,
        "blocks_per_stage": args.blocks,
        "batch_norm_momentum": args.batch_norm_momentum,
        "model": f"small_resnet (widths {args.widths}, {args.blocks} "
                 "basic block(s) per stage)",
        "augment": args.augment,
        "augmentation": ("random crop (4 px padding) + horizontal flip"
                         if args.augment else "none"),
        "pipeline": args.pipeline,
        "dtype_policy": "mixed_bfloat16" if args.mixed_precision else "float32",
        "optimizer": "SGD nesterov momentum 0.9, weight decay 5e-4, "
                     "per-epoch cosine learning rate",
        "selection_start": "1ep (default priming epoch)",
    }
    print(f"{args.dataset}: {train_examples} training images, "
          f"{len(compared)} methods x {len(args.seeds)} seeds x "
          f"{args.epochs} epochs")
    if args.mixed_precision:
        keras.config.set_dtype_policy("mixed_bfloat16")
    runs, summary = run(train, test, config, compared)
    os.makedirs(args.results_dir, exist_ok=True)
    stem = os.path.join(args.results_dir, args.output)
    result = {
        "command": " ".join(["keras-sb bench"] + (argv if argv is not None
                                                   else sys.argv[1:])),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": machine(),
        "config": {k: (list(v) if isinstance(v, tuple) else v)
                   for k, v in config.items()},
        "summary": summary,
        "runs": runs,
    }
    with open(stem + ".json", "w") as file:
        json.dump(result, file, indent=2)
    plot(runs, summary, stem + ".png", config["evaluated_on"])
    print(format_summary(summary))
    print(f"wrote {stem}.json and {stem}.png")
    return result


def format_summary(summary):
    """The summary as a Markdown table."""
    lines = [
        f"target test accuracy: {summary['target_accuracy']:.4f}",
        "",
        "| method | reached target | time to target (s) | speedup vs plain "
        "| final accuracy | backprops |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in summary["methods"].items():
        times = ", ".join("-" if t is None else f"{t:.0f}"
                          for t in row["seconds_to_target"])
        speedups = ", ".join("-" if s is None else f"{s:.2f}x"
                             for s in row["speedup_vs_plain"])
        finals = ", ".join(f"{a:.4f}" for a in row["final_accuracy"])
        backprops = ", ".join(str(b) for b in row["total_backprops"])
        lines.append(f"| {name} | {row['reached_target']} | {times} | "
                     f"{speedups} | {finals} | {backprops} |")
    for name, row in summary["methods"].items():
        if "vs_non_stale" in row:
            compared = row["vs_non_stale"]
            speedups = ", ".join("-" if s is None else f"{s:.2f}x"
                                 for s in compared["speedup"])
            lines.append(f"\n{name} vs non-stale selection, to "
                         f"{compared['target_accuracy']:.4f}: {speedups}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
