"""keras-sb on a GPU under XLA (JAX), with the data on the device: one run.

What it measures, with a ResNet-18-class network on CIFAR-10 (mixed
bfloat16; every batch made on the device by `keras_sb.data.DevicePipeline`):

1. throughput, at each `--batch-sizes` (default 256 and 1024): the steady
   epoch time of plain training, of a selective step that selects nothing
   (its ratio to plain is `f`, the cost of scoring and selecting), of the
   paper's rule at beta 1, 2 and 3, of a stale epoch (and a fresh one with
   example ids, which keeps the score table), and of InfoBatch; each as a
   speedup over plain, and for the selective rows against the ideal
   `1 / (f + s)` for their selected fraction `s`. At the first batch size,
   plain training also runs on `ArrayPipeline` (NumPy on the host), the
   pipeline this one replaces; and the JSON records the loops and
   conditionals of the compiled selective step (`step_profile`);
2. time to accuracy, as `keras-sb bench` measures it: plain training for
   `--epochs`, the paper's rule at beta 2, the uniform control, InfoBatch,
   the random-subset control and plain-short, for each of `--seeds` while
   the deadline allows.

Parts run in the order: throughput at the first batch size, time to
accuracy of the first seed, then the other batch sizes and seeds. A part
that would end after `--deadline` seconds is skipped, and the JSON is
written after every part, so a run cut short keeps what it measured.

On the GPU machine (JAX, no TensorFlow; `data/gpu/` holds a git-ignored copy
of `../shared/data/cifar10-jpeg.tar.xz`, since `../shared` does not travel):

    KERAS_BACKEND=jax python benchmarks/gpu.py --path data/gpu/cifar10-jpeg.tar.xz

`--quick` runs a tiny version (on a CPU in seconds; the tests run it).
"""

import argparse
import json
import os
import sys
import time

import keras
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from keras_sb import benchmark  # noqa: E402
from keras_sb import data as data_utils  # noqa: E402
from keras_sb import datasets  # noqa: E402
from keras_sb import strategies  # noqa: E402
from keras_sb.benchmark import comparison  # noqa: E402
from keras_sb.benchmark import step_profile  # noqa: E402
from keras_sb.benchmark import training  # noqa: E402
from keras_sb.stale import StaleSelection  # noqa: E402

TIME_TO_ACCURACY_METHODS = ["plain", "sb-beta2", "uniform", "infobatch",
                            "random-subset", "plain-short"]

QUICK = {"train_size": 256, "test_size": 128, "widths": [4, 8], "blocks": 1,
         "epochs": 2, "batch_sizes": [32], "seeds": [0]}


@keras.saving.register_keras_serializable(package="keras_sb_benchmarks")
class SelectNothing(strategies.SelectionStrategy):
    """Selects no example: every step is the scoring forward pass alone."""

    def probabilities(self, losses, history):
        return keras.ops.zeros_like(losses)


# Throughput rows: name -> (method options, epochs, epochs of the steady
# median, history log of its selected or kept fraction). The selective
# rows prime for one epoch (every example trained on). The stale rows'
# epochs are told apart by their logged accuracy (NaN in stale epochs,
# which run no forward pass over all examples; see `stale_row_epochs`).
THROUGHPUT_ROWS = {
    "plain": (None, 3, [1, 2], None),
    "select-nothing": ({"strategy": SelectNothing(), "start": 0}, 3, [1, 2],
                       "selected_fraction"),
    "sb-beta1": ({"beta": 1.0}, 4, [2, 3], "selected_fraction"),
    "sb-beta2": ({"beta": 2.0}, 4, [2, 3], "selected_fraction"),
    "sb-beta3": ({"beta": 3.0}, 4, [2, 3], "selected_fraction"),
    "sb-beta2-stale-epoch": ({"beta": 2.0, "staleness": 2}, 7, None,
                             "selected_fraction"),
    "sb-beta2-fresh-with-ids": (None, None, None, "selected_fraction"),
    "infobatch": ({"pruning": "infobatch", **comparison.INFOBATCH_DEFAULTS},
                  4, [2, 3], "kept_fraction"),
}


def stale_row_epochs(history):
    """`(stale, fresh)`: the epochs of a stale-selection run to time, each
    kind without its first epoch (which compiles its step; the priming
    epoch 0 is left out too)."""
    stale = [epoch for epoch, value in enumerate(history["accuracy"])
             if not np.isfinite(value)]
    fresh = [epoch for epoch in range(1, len(history["accuracy"]))
             if epoch not in stale]
    return stale[1:], fresh[1:]


def train_batches(arrays, config, model=None):
    """The training `DevicePipeline` of `config` (drawing the stale or pruned
    epochs of `model` where given)."""
    return data_utils.DevicePipeline(*arrays, config["batch_size"],
                                     seed=config["seeds"][0],
                                     stale_model=model)


def time_epochs(options, arrays, config, epochs):
    """Trains a fresh model for `epochs` epochs (constant learning rate);
    returns `(model, per-epoch seconds, history)`."""
    model = benchmark.build_model(options, config, seed=0)
    timer = benchmark.EpochTimer()
    callbacks = [timer]
    pruning = training.pruning_callback(options, config)
    staleness = (options or {}).get("staleness")
    if pruning or staleness:
        train = train_batches(arrays, config, model)
        callbacks.insert(0, pruning or StaleSelection(staleness))
    else:
        train = train_batches(arrays, config)
    history = model.fit(train, epochs=epochs, callbacks=callbacks, verbose=0,
                        shuffle=False)
    return model, timer.times, history.history


def steady(values, epochs):
    """Median of `values` over the listed epochs."""
    return float(np.median([values[epoch] for epoch in epochs]))


def throughput_table(rows):
    """Speedups over plain, and against `1 / (f + s)` for selective rows.

    Args:
        rows: name -> {"epoch_seconds": float, "fraction": float or None}
            (a row needs "plain"; "select-nothing" gives `f`).
    """
    plain = rows["plain"]["epoch_seconds"]
    f = None
    if "select-nothing" in rows:
        f = rows["select-nothing"]["epoch_seconds"] / plain
    table = {"f": f}
    for name, row in rows.items():
        entry = dict(row, speedup=plain / row["epoch_seconds"])
        selective = name.startswith("sb-") and row.get("fraction") is not None
        if f is not None and selective:
            entry["ideal_speedup"] = 1.0 / (f + row["fraction"])
            entry["fraction_of_ideal"] = entry["speedup"] / entry["ideal_speedup"]
        table[name] = entry
    return table


def measure_throughput(arrays, config, record, save, time_left):
    """Part 1 at `config["batch_size"]`: fills and returns `record`."""
    rows = record.setdefault("rows", {})
    for name, (options, epochs, steady_epochs, fraction_log) in (
            THROUGHPUT_ROWS.items()):
        if epochs is None:  # Measured with the row before it.
            continue
        estimate = record.get("seconds_per_row", 0)
        if rows and estimate > time_left():
            print(f"skipping throughput {name}: about {estimate:.0f}s",
                  flush=True)
            continue
        started = time.perf_counter()
        model, seconds, history = time_epochs(options, arrays, config, epochs)
        fraction = history.get(fraction_log) if fraction_log else None
        timed = {name: steady_epochs}
        if steady_epochs is None:
            timed = dict(zip((name, "sb-beta2-fresh-with-ids"),
                             stale_row_epochs(history)))
        for row, epochs_timed in timed.items():
            rows[row] = {"epoch_seconds": steady(seconds, epochs_timed),
                         "all_epoch_seconds": seconds,
                         "epochs_timed": epochs_timed,
                         "fraction": None if fraction is None
                         else steady(fraction, epochs_timed)}
        if name == "plain" and config.get("compare_host_pipeline"):
            rows["plain-array-pipeline"] = host_pipeline_row(model, arrays,
                                                             config)
        if name == "sb-beta2" and config["backend"] == "jax":
            batch = train_batches(arrays, config)[0]
            record["control_flow"] = step_profile.control_flow(model, batch)
        record["seconds_per_row"] = max(estimate, time.perf_counter() - started)
        record["table"] = throughput_table(rows)
        save()
    return record


def host_pipeline_row(model, arrays, config):
    """Plain training's epoch time on `ArrayPipeline` (NumPy on the host),
    with the model that just trained on the device pipeline."""
    timer = benchmark.EpochTimer()
    host = data_utils.ArrayPipeline(*arrays, config["batch_size"],
                                    seed=config["seeds"][0])
    model.fit(host, epochs=3, callbacks=[timer], verbose=0, shuffle=False)
    return {"epoch_seconds": steady(timer.times, [1, 2]),
            "all_epoch_seconds": timer.times, "fraction": None}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--path", required=True,
                        help="CIFAR-10 copy (folder or .tar.xz)")
    parser.add_argument("--quick", action="store_true",
                        help="a tiny run that checks the script: "
                             + ", ".join(f"{k}={v}" for k, v in QUICK.items()))
    parser.add_argument("--train-size", type=int, default=None)
    parser.add_argument("--test-size", type=int, default=None)
    parser.add_argument("--batch-sizes", type=int, nargs="+",
                        default=[256, 1024])
    parser.add_argument("--learning-rate", type=float, default=0.1,
                        help="at batch size 256; scaled linearly with it")
    parser.add_argument("--widths", type=int, nargs="+",
                        default=[64, 128, 256, 512])
    parser.add_argument("--blocks", type=int, default=2)
    parser.add_argument("--batch-norm-momentum", type=float, default=0.9)
    parser.add_argument("--epochs", type=int, default=30,
                        help="epochs of plain training (time to accuracy)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--methods", nargs="+",
                        default=TIME_TO_ACCURACY_METHODS,
                        help="time-to-accuracy methods (`keras-sb bench` "
                             "names)")
    parser.add_argument("--deadline", type=float, default=510,
                        help="seconds: start no part that would end later")
    parser.add_argument("--no-mixed-precision", action="store_true")
    parser.add_argument("--output", default=os.path.join(
        "benchmarks", "results", "gpu.json"))
    args = parser.parse_args(argv)
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    if "plain" not in args.methods:
        parser.error("--methods must include plain (the reference).")
    try:
        benchmark.choose_methods(benchmark.methods(betas=(2.0,)), args.methods)
    except ValueError as error:
        parser.error(str(error))
    return args


def main(argv=None):
    started = time.perf_counter()
    args = parse_args(argv)
    elapsed = lambda: time.perf_counter() - started  # noqa: E731
    time_left = lambda: args.deadline - elapsed()  # noqa: E731
    if not args.no_mixed_precision:
        keras.config.set_dtype_policy("mixed_bfloat16")
    result = {
        "command": " ".join(["python benchmarks/gpu.py"]
                            + (argv if argv is not None else sys.argv[1:])),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": benchmark.machine(),
        "dtype_policy": keras.config.dtype_policy().name,
        "pipeline": "DevicePipeline",
    }

    def save():
        os.makedirs(os.path.dirname(args.output) or ".", exist_ok=True)
        with open(args.output, "w") as file:
            json.dump(result, file, indent=2)
        print(f"[{elapsed():.0f}s] saved {args.output}", flush=True)

    train = datasets.load_arrays("cifar10", "train", args.path,
                                 limit=args.train_size)
    test = datasets.load_arrays("cifar10", "test", args.path,
                                limit=args.test_size)
    result["data_seconds"] = elapsed()
    base = {
        "epochs": args.epochs,
        "seeds": list(args.seeds),
        "jit_compile": True,
        "train_examples": len(train[0]),
        "input_shape": list(train[0].shape[1:]),
        "classes": 10,
        "widths": args.widths,
        "blocks_per_stage": args.blocks,
        "batch_norm_momentum": args.batch_norm_momentum,
        "pipeline": "device",
        "backend": keras.backend.backend(),
    }

    def config_at(batch_size):
        return dict(base, batch_size=batch_size,
                    learning_rate=args.learning_rate * batch_size / 256)
    result["config"] = dict(base, batch_sizes=args.batch_sizes,
                            learning_rate_at_256=args.learning_rate)
    print(f"[{elapsed():.0f}s] {len(train[0])} training images; devices: "
          f"{result['machine'].get('devices')}", flush=True)

    throughput = result.setdefault("throughput", {})
    compared = benchmark.choose_methods(benchmark.methods(betas=(2.0,)),
                                        args.methods)
    runs = {name: [] for name in compared}
    seed_seconds = None
    parts = [("throughput", args.batch_sizes[0])]
    parts += [("time_to_accuracy", args.seeds[0])]
    parts += [("throughput", size) for size in args.batch_sizes[1:]]
    parts += [("time_to_accuracy", seed) for seed in args.seeds[1:]]
    for part, value in parts:
        if part == "throughput":
            config = dict(config_at(value),
                          compare_host_pipeline=value == args.batch_sizes[0])
            record = throughput.setdefault(str(value), {})
            measure_throughput(train, config, record, save, time_left)
            continue
        if seed_seconds is not None and seed_seconds > time_left():
            print(f"[{elapsed():.0f}s] skipping seed {value}: about "
                  f"{seed_seconds:.0f}s", flush=True)
            continue
        seed_started = time.perf_counter()
        config = dict(config_at(args.batch_sizes[0]), seeds=[value])
        seed_runs, _ = benchmark.run(train, test, config, compared,
                                     progress=False)
        for name, points in seed_runs.items():
            runs[name].extend(points)
        seed_seconds = time.perf_counter() - seed_started
        result["runs"] = runs
        result["summary"] = benchmark.summarize(runs)
        print(benchmark.format_summary(result["summary"]), flush=True)
        save()
    if "summary" in result:
        benchmark.plot(runs, result["summary"],
                       os.path.splitext(args.output)[0] + ".png")
    print(json.dumps({size: record.get("table")
                      for size, record in throughput.items()}, indent=2))
    print(f"[{elapsed():.0f}s] done", flush=True)
    return result


if __name__ == "__main__":
    main()
