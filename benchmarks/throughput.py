"""Per-epoch throughput of Selective-Backprop against its physical limit.

Measures in one run, on one machine, for the same model (a small CIFAR CNN)
and the same data (a slice of the CIFAR-10 training set):

- the per-epoch time of plain `keras.Model` training (every example),
- the per-epoch time of an inference-mode pass over the same data
  (`evaluate`: forward, loss and metrics), which gives
  `f = inference time / training time`,
- the per-epoch time of `SelectiveBackpropModel` at several `beta`, with the
  selected fraction `s` it measured,

and reports the measured speedup over plain training next to the ideal one,
`1 / (f + s)` (ALGORITHM.md). Selection runs from the first batch (no
priming) so every timed epoch selects. Epochs are timed round-robin across
the methods (one epoch of each, repeated), after one untimed round (tracing
and compilation); each time is the median over the rounds.

Run: `python benchmarks/throughput.py` (graph mode on the CPU; add
`--jit-compile` for XLA). Writes benchmarks/results/throughput.json.
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_sb  # noqa: E402
from common import load_cifar10  # noqa: E402
from common import small_cnn  # noqa: E402
from common import write_result  # noqa: E402
from keras_sb.benchmark import EpochTimer  # noqa: E402


def build(selective, init_seed, **options):
    keras.utils.set_random_seed(init_seed)
    inputs, outputs = small_cnn(keras)
    if selective:
        return keras_sb.SelectiveBackpropModel(inputs, outputs, **options)
    return keras.Model(inputs, outputs)


def compile_model(model, jit_compile):
    model.compile(
        optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        jit_compile=jit_compile,
    )


def one_epoch(model, x, y, args):
    """Trains `model` one epoch; returns (seconds, selected fraction)."""
    timer = EpochTimer()
    history = model.fit(x, y, batch_size=args.batch_size, epochs=1,
                        verbose=0, callbacks=[timer])
    return timer.times[0], history.history.get("selected_fraction", [None])[0]


def one_inference_pass(model, x, y, args):
    start = time.perf_counter()
    model.evaluate(x, y, batch_size=args.batch_size, verbose=0)
    return time.perf_counter() - start, None


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-size", type=int, default=12800)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=7,
                        help="timed epochs per method, after 1 warm-up epoch")
    parser.add_argument("--betas", type=float, nargs="+", default=[1, 2, 3])
    parser.add_argument("--jit-compile", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default="throughput")
    args = parser.parse_args()

    x_train, y_train, _, _ = load_cifar10()
    x = x_train[: args.train_size].astype("float32") / 255.0
    y = y_train[: args.train_size]

    plain = build(False, args.seed)
    compile_model(plain, args.jit_compile)
    methods = {"plain": (plain, one_epoch),
               "inference": (plain, one_inference_pass)}
    for beta in args.betas:
        model = build(True, args.seed, beta=beta, start=0, seed=args.seed)
        compile_model(model, args.jit_compile)
        methods[f"beta={beta:g}"] = (model, one_epoch)

    # Round-robin, so that drifts in the machine's speed hit every method
    # alike; the first round (tracing, compilation) is not timed.
    names = list(methods)
    seconds = {name: [] for name in names}
    fractions = {name: [] for name in names}
    for round_index in range(args.rounds + 1):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            model, run = methods[name]
            elapsed, fraction = run(model, x, y, args)
            if round_index:
                seconds[name].append(elapsed)
                fractions[name].append(fraction)
        print(f"round {round_index}: " + ", ".join(
            f"{n} {seconds[n][-1]:.2f}s" for n in names if seconds[n]))

    plain_epoch = statistics.median(seconds["plain"])
    inference_epoch = statistics.median(seconds["inference"])
    f = inference_epoch / plain_epoch
    print(f"plain: {plain_epoch:.2f} s/epoch; inference: {inference_epoch:.2f} "
          f"s/epoch; f = {f:.3f}")
    rows = []
    for beta in args.betas:
        name = f"beta={beta:g}"
        epoch = statistics.median(seconds[name])
        s = float(np.mean(fractions[name]))
        ideal = 1.0 / (f + s)
        measured = plain_epoch / epoch
        rows.append({
            "beta": beta,
            "epoch_seconds": epoch,
            "epoch_seconds_all": seconds[name],
            "selected_fraction": s,
            "selected_fraction_all": fractions[name],
            "ideal_speedup": ideal,
            "measured_speedup": measured,
            "fraction_of_ideal": measured / ideal,
        })
        print(f"{name}: {epoch:.2f} s/epoch, s = {s:.3f}, speedup "
              f"{measured:.2f}x of ideal {ideal:.2f}x "
              f"({100 * measured / ideal:.0f}%)")

    path = write_result(args.output, {
        "description": "Per-epoch time of SelectiveBackpropModel vs plain "
                       "keras.Model, same model, data and machine, epochs "
                       "timed round-robin; ideal speedup 1/(f+s).",
        "model": "small CNN (4 conv + BatchNorm)",
        "data": f"CIFAR-10 train[:{args.train_size}], float32 arrays",
        "batch_size": args.batch_size,
        "jit_compile": args.jit_compile,
        "timed_rounds": args.rounds,
        "plain_epoch_seconds": plain_epoch,
        "plain_epoch_seconds_all": seconds["plain"],
        "inference_epoch_seconds": inference_epoch,
        "inference_epoch_seconds_all": seconds["inference"],
        "f": f,
        "selective": rows,
    })
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
