"""Selective-Backprop on a GPU under XLA (JAX backend), in one run.

Measures, with a ResNet-18-class network on CIFAR-10 (mixed bfloat16,
batch 256, every step compiled by XLA through JAX):

1. the cost of a selective step that runs no backward pass (a strategy that
   selects nothing, so the queue never fills): the forward-and-select cost
   `f` relative to a plain training step, next to the plain `evaluate`
   pass over the same data;
2. a time-to-accuracy comparison (plain Keras, keras-sb beta=2, the uniform
   subset at the same fraction), whose steady epochs also give the measured
   per-epoch speedup against the ideal `1 / (f + s)`;
3. the epoch time with every example selected (the backward branch taken at
   every step: about plain + forward if the conditional costs nothing),
   per-epoch times at beta=1 and beta=3, and a second seed, while time
   remains.

Each part is written to the result JSON as soon as it is done, so a run cut
short by `--deadline` still leaves what it measured. Meant for the GPU
machine, which has JAX but not TensorFlow:

    KERAS_BACKEND=jax python benchmarks/gpu.py --path data/gpu/cifar10-jpeg.tar.xz

(`data/gpu/` holds a copy of `../shared/data/cifar10-jpeg.tar.xz`, git-ignored,
since `../shared` does not travel to the GPU machine; on this machine
`--path ../shared/data/cifar10-jpeg.tar.xz` works as well.)

Runs on a CPU too (slowly; `--train-size`, `--widths` and `--blocks` make it
small enough to check the script).
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


@keras.saving.register_keras_serializable(package="keras_sb_benchmarks")
class SelectNothing(strategies.SelectionStrategy):
    """Selects no example: every step is the scoring forward pass alone."""

    def probabilities(self, losses, history):
        return keras.ops.zeros_like(losses)


def epoch_seconds(options, train, config, epochs):
    """Per-epoch seconds of `epochs` epochs (the first includes compiling)."""
    model = benchmark.build_model(options, config, seed=0)
    timer = benchmark.EpochTimer()
    history = model.fit(train, epochs=epochs, callbacks=[timer], verbose=0)
    return model, timer.times, history.history


def evaluate_seconds(model, images, labels, batch_size, passes):
    """Seconds of plain `evaluate` passes over the training images (the
    first includes compiling)."""
    pipeline = data_utils.ArrayPipeline(images, labels, batch_size,
                                        augment=False, shuffle=False)
    seconds = []
    for _ in range(passes):
        start = time.perf_counter()
        model.evaluate(pipeline, verbose=0)
        seconds.append(time.perf_counter() - start)
    return seconds


def steady(seconds, skip=1):
    """Median epoch time without the first `skip` epochs (compiling,
    priming)."""
    return float(np.median(seconds[skip:]))


def per_epoch(points):
    """Epoch durations of a learning curve."""
    totals = [0.0] + [p["seconds"] for p in points]
    return list(np.diff(totals))


def throughput(result):
    """Per-epoch speedups against the ideal `1 / (f + s)`.

    `f`: epoch time of the selective step that selects nothing over the
    plain epoch time; `s`: selected fraction. keras-sb epochs are taken
    after the priming epoch.
    """
    runs = result.get("runs", {})
    if "plain" not in runs or "forward_only_epoch_seconds" not in result:
        return None
    plain = float(np.median(per_epoch(runs["plain"][0])[1:]))
    forward = steady(result["forward_only_epoch_seconds"])
    table = {
        "plain_epoch_seconds": plain,
        "forward_only_epoch_seconds": forward,
        "f": forward / plain,
        "f_evaluate": steady(result["evaluate_seconds"]) / plain,
    }
    measured = {}
    if "sb-beta2" in runs and len(runs["sb-beta2"][0]) > 3:
        points = runs["sb-beta2"][0]
        measured["sb-beta2"] = (
            float(np.median(per_epoch(points)[2:])),
            float(np.mean([p["selected_fraction"] for p in points[2:]])),
        )
    for beta in ("1", "3"):
        if f"sb-beta{beta}_epoch_seconds" in result:
            measured[f"sb-beta{beta}"] = (
                steady(result[f"sb-beta{beta}_epoch_seconds"], skip=2),
                float(np.mean(result[f"sb-beta{beta}_selected_fraction"][2:])),
            )
    if "all_epoch_seconds" in result:
        # Backward branch taken at every step: close to plain + forward when
        # the conditional costs nothing (on XLA CPUs it does, a lot).
        everything = steady(result["all_epoch_seconds"], skip=2)
        table["all_selected_epoch_seconds"] = everything
        table["all_selected_over_plain_plus_forward"] = everything / (
            plain + forward)
    for name, (seconds, fraction) in measured.items():
        ideal = 1.0 / (table["f"] + fraction)
        table[name] = {
            "epoch_seconds": seconds,
            "selected_fraction": fraction,
            "ideal_speedup": ideal,
            "measured_speedup": plain / seconds,
            "fraction_of_ideal": plain / seconds / ideal,
        }
    return table


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--path", required=True,
                        help="CIFAR-10 copy (folder or .tar.xz)")
    parser.add_argument("--train-size", type=int, default=None)
    parser.add_argument("--test-size", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--learning-rate", type=float, default=0.1)
    parser.add_argument("--widths", type=int, nargs="+",
                        default=[64, 128, 256, 512])
    parser.add_argument("--blocks", type=int, default=2)
    parser.add_argument("--batch-norm-momentum", type=float, default=0.9)
    parser.add_argument("--epochs", type=int, default=20,
                        help="epochs of plain training")
    parser.add_argument("--selective-epochs", type=int, default=30,
                        help="epochs of keras-sb and the uniform control")
    parser.add_argument("--deadline", type=float, default=510,
                        help="seconds: start no part that would end later")
    parser.add_argument("--methods", nargs="+",
                        default=["plain", "sb-beta2", "uniform"],
                        help="time-to-accuracy methods, in order (also "
                             "sb-beta2-stale2, sb-beta2-stale3: stale "
                             "selection drawn by the ArrayPipeline)")
    parser.add_argument("--no-mixed-precision", action="store_true")
    parser.add_argument("--output", default=os.path.join(
        "benchmarks", "results", "gpu.json"))
    args = parser.parse_args(argv)
    try:
        benchmark.choose_methods(benchmark.methods(betas=(2.0,)), args.methods)
    except ValueError as error:
        parser.error(str(error))
    return args


def main(argv=None):
    started = time.perf_counter()
    args = parse_args(argv)
    elapsed = lambda: time.perf_counter() - started  # noqa: E731
    if not args.no_mixed_precision:
        keras.config.set_dtype_policy("mixed_bfloat16")
    result = {
        "command": " ".join(["python benchmarks/gpu.py"]
                            + (argv if argv is not None else sys.argv[1:])),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": benchmark.machine(),
        "dtype_policy": keras.config.dtype_policy().name,
    }

    def save():
        result["throughput"] = throughput(result)
        os.makedirs(os.path.dirname(args.output) or ".", exist_ok=True)
        with open(args.output, "w") as file:
            json.dump(result, file, indent=2)
        print(f"[{elapsed():.0f}s] saved {args.output}", flush=True)

    x_train, y_train = datasets.load_arrays("cifar10", "train", args.path,
                                            limit=args.train_size)
    x_test, y_test = datasets.load_arrays("cifar10", "test", args.path,
                                          limit=args.test_size)
    result["data_seconds"] = elapsed()
    config = {
        "epochs": args.epochs,
        "selective_epochs": args.selective_epochs,
        "batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "seeds": [0],
        "jit_compile": True,
        "train_examples": len(x_train),
        "input_shape": x_train.shape[1:],
        "classes": 10,
        "widths": args.widths,
        "blocks_per_stage": args.blocks,
        "batch_norm_momentum": args.batch_norm_momentum,
    }
    result["config"] = {k: (list(v) if isinstance(v, tuple) else v)
                        for k, v in config.items()}
    train = data_utils.ArrayPipeline(x_train, y_train, args.batch_size, seed=0)
    print(f"[{elapsed():.0f}s] {len(x_train)} training images; devices: "
          f"{result['machine'].get('devices')}", flush=True)

    # 1. The step without a backward pass, and plain evaluate.
    model, seconds, _ = epoch_seconds(
        {"strategy": SelectNothing(), "start": 0}, train, config, epochs=3)
    result["forward_only_epoch_seconds"] = seconds
    result["evaluate_seconds"] = evaluate_seconds(
        model, x_train, y_train, args.batch_size, passes=3)
    save()

    # 2. Time to accuracy: plain, keras-sb beta=2, uniform control (and
    #    whatever --methods adds).
    compared = benchmark.methods(betas=(2.0,))
    order = args.methods

    def train_with_ids(model):  # Stale selection: the pipeline draws.
        return data_utils.ArrayPipeline(x_train, y_train, args.batch_size,
                                        seed=0, stale_model=model)
    test = data_utils.ArrayPipeline(x_test, y_test, 500, augment=False,
                                    shuffle=False)
    runs = result.setdefault("runs", {})
    plain_epoch = None
    for seed in (0, 1):
        keras.utils.set_random_seed(seed)
        initial = benchmark._network(config).get_weights()
        for name in order:
            options = compared[name]
            epochs = benchmark._epochs(config, options)
            if plain_epoch is not None:
                cost = 0.6 if options is not None else 1.0
                estimate = 30 + epochs * plain_epoch * cost
                if elapsed() + estimate > args.deadline:
                    print(f"[{elapsed():.0f}s] skipping {name} seed {seed}: "
                          f"about {estimate:.0f}s left to do", flush=True)
                    continue
            points = benchmark.train_one(options, initial, train, test,
                                         config, seed,
                                         train_with_ids=train_with_ids)
            runs.setdefault(name, []).append(points)
            if name == "plain":
                plain_epoch = points[-1]["seconds"] - points[-2]["seconds"]
            print(f"[{elapsed():.0f}s] {name} seed {seed}: final accuracy "
                  f"{points[-1]['test_accuracy']:.4f} in "
                  f"{points[-1]['seconds']:.0f}s", flush=True)
            result["summary"] = benchmark.summarize(runs)
            save()
        if seed == 0:
            # 3. Every example selected (the backward branch taken at every
            #    step), then beta 1 and 3, before a second seed.
            #    Selection starts after the usual priming epoch (from random
            #    weights, inference-mode losses are nearly all equal).
            extras = {"all": {"strategy": strategies.UniformSubset(1.0)},
                      "sb-beta1": {"beta": 1.0},
                      "sb-beta3": {"beta": 3.0}}
            for name, options in extras.items():
                if plain_epoch and elapsed() + 25 + 4 * plain_epoch > args.deadline:
                    continue
                _, seconds, history = epoch_seconds(options, train, config,
                                                    epochs=4)
                result[f"{name}_epoch_seconds"] = seconds
                result[f"{name}_selected_fraction"] = [
                    float(v) for v in history["selected_fraction"]]
                save()
    benchmark.plot(runs, result["summary"],
                   os.path.splitext(args.output)[0] + ".png")
    print(benchmark.format_summary(result["summary"]))
    print(json.dumps(result["throughput"], indent=2))
    print(f"[{elapsed():.0f}s] done", flush=True)


if __name__ == "__main__":
    main()
