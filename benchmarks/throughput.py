"""Per-epoch throughput of Selective-Backprop against its physical limit.

Measures in one run, on one machine, for the same model (a small CIFAR CNN)
and the same data (a slice of the CIFAR-10 training set):

- the per-epoch time of plain `keras.Model` training (every example),
- the per-epoch time of an inference-mode pass over the same data
  (`evaluate`: forward, loss and metrics), which gives
  `f = inference time / training time`,
- the per-epoch time of `SelectiveBackpropModel` at several `beta`, with the
  selected fraction `s` it measured,
- the per-epoch time of a stale epoch (`StaleSelection`, reference beta):
  no selection forward pass, each example drawn from its stored score,

and reports the measured speedup over plain training next to the ideal one,
`1 / (f + s)` (ALGORITHM.md), or `1 / s` for a stale epoch, and the mean
epoch time of stale selection with staleness `n` (one fresh epoch, then
`n - 1` stale ones). Selection runs from the first batch (no priming) so
every timed epoch selects. Epochs are timed round-robin across the methods
(one epoch of each, repeated), after one untimed round (tracing and
compilation; for stale selection, the fresh epoch that fills the score
table); each time is the median over the rounds. Every method reads the same
shuffled `tf.data` pipeline of in-memory images; stale selection's carries
example ids.

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
import tensorflow as tf  # noqa: E402

import keras_sb  # noqa: E402
from common import cifar10_folder  # noqa: E402
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


def batches(x, y, args, example_ids=False):
    dataset = tf.data.Dataset.from_tensor_slices((x, y))
    if example_ids:
        dataset = keras_sb.data.with_example_ids(dataset)
    return (dataset.shuffle(len(x), seed=args.seed)
            .batch(args.batch_size).prefetch(tf.data.AUTOTUNE))


def one_epoch(model, data, args, callbacks=()):
    """Trains `model` one epoch; returns (seconds, selected fraction)."""
    timer = EpochTimer()
    history = model.fit(data, epochs=1, verbose=0,
                        callbacks=[*callbacks, timer])
    return timer.times[0], history.history.get("selected_fraction", [None])[0]


def one_inference_pass(model, data, args):
    start = time.perf_counter()
    model.evaluate(data, verbose=0)
    return time.perf_counter() - start, None


def one_stale_epoch(model, data, args):
    # Every epoch after the first (fresh, untimed) one is stale.
    return one_epoch(model, data, args,
                     [keras_sb.StaleSelection(staleness=10**6)])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-size", type=int, default=12800)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=7,
                        help="timed epochs per method, after 1 warm-up epoch")
    parser.add_argument("--betas", type=float, nargs="+", default=[1, 2, 3])
    parser.add_argument("--reference-beta", type=float, default=2.0,
                        help="beta of the stale-selection timing")
    parser.add_argument("--stalenesses", type=int, nargs="+", default=[2, 3])
    parser.add_argument("--jit-compile", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default="throughput")
    args = parser.parse_args()

    x, y = keras_sb.datasets.load_arrays("cifar10", "train", cifar10_folder(),
                                         limit=args.train_size)
    x = x.astype("float32") / 255.0
    data = batches(x, y, args)
    data_with_ids = batches(x, y, args, example_ids=True)

    plain = build(False, args.seed)
    compile_model(plain, args.jit_compile)
    methods = {"plain": (plain, one_epoch, data),
               "inference": (plain, one_inference_pass, data)}
    for beta in args.betas:
        model = build(True, args.seed, beta=beta, start=0, seed=args.seed)
        compile_model(model, args.jit_compile)
        methods[f"beta={beta:g}"] = (model, one_epoch, data)
    stale_name = f"beta={args.reference_beta:g} stale epoch"
    model = build(True, args.seed, beta=args.reference_beta, start=0,
                  seed=args.seed)
    compile_model(model, args.jit_compile)
    methods[stale_name] = (model, one_stale_epoch, data_with_ids)

    # Round-robin, so that drifts in the machine's speed hit every method
    # alike; the first round (tracing, compilation) is not timed.
    names = list(methods)
    seconds = {name: [] for name in names}
    fractions = {name: [] for name in names}
    for round_index in range(args.rounds + 1):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            model, run, data = methods[name]
            elapsed, fraction = run(model, data, args)
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

    fresh_epoch = statistics.median(seconds[f"beta={args.reference_beta:g}"])
    stale_epoch = statistics.median(seconds[stale_name])
    stale_s = float(np.mean(fractions[stale_name]))
    stale = {
        "beta": args.reference_beta,
        "stale_epoch_seconds": stale_epoch,
        "stale_epoch_seconds_all": seconds[stale_name],
        "selected_fraction": stale_s,
        "selected_fraction_all": fractions[stale_name],
        "stale_epoch_speedup": plain_epoch / stale_epoch,
        "stale_epoch_ideal_speedup": 1.0 / stale_s,
        "fresh_epoch_seconds": fresh_epoch,
        "by_staleness": [],
    }
    print(f"{stale_name}: {stale_epoch:.2f} s/epoch, s = {stale_s:.3f}, "
          f"speedup {plain_epoch / stale_epoch:.2f}x of ideal {1 / stale_s:.2f}x")
    for staleness in args.stalenesses:
        mean_epoch = (fresh_epoch + (staleness - 1) * stale_epoch) / staleness
        stale["by_staleness"].append({
            "staleness": staleness,
            "mean_epoch_seconds": mean_epoch,
            "speedup_vs_plain": plain_epoch / mean_epoch,
            "speedup_vs_fresh_selection": fresh_epoch / mean_epoch,
        })
        print(f"staleness {staleness}: {mean_epoch:.2f} s/epoch on average, "
              f"{plain_epoch / mean_epoch:.2f}x plain, "
              f"{fresh_epoch / mean_epoch:.2f}x non-stale selection")

    path = write_result(args.output, {
        "description": "Per-epoch time of SelectiveBackpropModel vs plain "
                       "keras.Model, same model, data and machine, epochs "
                       "timed round-robin; ideal speedup 1/(f+s).",
        "model": "small CNN (4 conv + BatchNorm)",
        "data": f"CIFAR-10 train, first {args.train_size} of the shuffled "
                "order of keras_sb.datasets.load_arrays, float32 in memory, "
                "tf.data shuffle + batch",
        "batch_size": args.batch_size,
        "jit_compile": args.jit_compile,
        "timed_rounds": args.rounds,
        "plain_epoch_seconds": plain_epoch,
        "plain_epoch_seconds_all": seconds["plain"],
        "inference_epoch_seconds": inference_epoch,
        "inference_epoch_seconds_all": seconds["inference"],
        "f": f,
        "selective": rows,
        "stale": stale,
    })
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
