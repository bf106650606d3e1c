"""Per-epoch throughput of Selective-Backprop against its physical limit.

Measures in one run, on one machine, for the same model (a small CIFAR CNN)
and the same data (a slice of the CIFAR-10 training set):

- the per-epoch time of plain `keras.Model` training (every example),
- the per-epoch time of an inference-mode pass over the same data
  (`evaluate`: forward, loss and metrics), which gives
  `f = inference time / training time`,
- the per-epoch time of `SelectiveBackpropModel` at several `beta`, with the
  selected fraction `s` it measured,
- for stale selection (`StaleSelection(n)` at the reference beta, one fresh
  epoch then `n - 1` stale ones, in which no selection forward pass runs and
  each example is drawn from its stored score): the times of its fresh and
  of its stale epochs,

and reports the measured speedup over plain training next to the ideal one,
`1 / (f + s)` (ALGORITHM.md), or `1 / s` for a stale epoch, and the mean
epoch time of each staleness over its cycle, `(fresh + (n - 1) stale) / n`.
Selection runs from the first batch (no priming) so every timed epoch
selects. Epochs are timed round-robin across the methods (one epoch of each,
repeated), after one untimed round (tracing and compilation); each time is
the median over the rounds (over the rounds of its kind for stale
selection; its first stale epoch, which compiles the stale step, is not
timed). Every method reads the same shuffled `tf.data` pipeline of in-memory
images; stale selection's carries example ids, and by default draws the
examples of stale epochs in the pipeline, before batching
(`keras_sb.data.stale_filter`; `--stale-draws step` draws in the train step).

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
from common import OUTPUT_HELP  # noqa: E402
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


def batches(x, y, args, example_ids=False, stale_model=None):
    """The shuffled batches; with `stale_model`, its stale epochs are drawn
    in the pipeline (`keras_sb.data.stale_filter`, before batching)."""
    dataset = tf.data.Dataset.from_tensor_slices((x, y))
    if example_ids:
        dataset = keras_sb.data.with_example_ids(dataset)
    dataset = dataset.shuffle(len(x), seed=args.seed)
    if stale_model is None:
        return dataset.batch(args.batch_size).prefetch(tf.data.AUTOTUNE)
    draws = keras_sb.data.stale_filter(stale_model, seed=args.seed)
    return (dataset.apply(draws).batch(args.batch_size)
            .apply(draws.pad_batches(args.batch_size))
            .prefetch(tf.data.AUTOTUNE))


def one_epoch(model, data, args, callbacks=()):
    """Trains `model` one epoch; returns (seconds, selected fraction, kind)."""
    timer = EpochTimer()
    history = model.fit(data, epochs=1, verbose=0,
                        callbacks=[*callbacks, timer]).history
    # A stale epoch computes no metric over all examples: accuracy is NaN.
    kind = "stale" if np.isnan(history["accuracy"][0]) else "fresh"
    return timer.times[0], history.get("selected_fraction", [None])[0], kind


def one_inference_pass(model, data, args):
    start = time.perf_counter()
    model.evaluate(data, verbose=0)
    return time.perf_counter() - start, None, "fresh"


def stale_epochs(staleness):
    callback = keras_sb.StaleSelection(staleness)

    def run(model, data, args):
        return one_epoch(model, data, args, [callback])

    return run


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-size", type=int, default=12800)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=9,
                        help="epochs per method, after 1 warm-up epoch (at "
                             "least 3 and the largest staleness)")
    parser.add_argument("--betas", type=float, nargs="+", default=[1, 2, 3])
    parser.add_argument("--reference-beta", type=float, default=2.0,
                        help="beta of the stale-selection timing")
    parser.add_argument("--stalenesses", type=int, nargs="+", default=[2, 3])
    parser.add_argument("--stale-draws", default="pipeline",
                        choices=["pipeline", "step"],
                        help="stale epochs draw in the tf.data pipeline "
                             "(keras_sb.data.stale_filter) or in the step")
    parser.add_argument("--jit-compile", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default="throughput",
                        help=OUTPUT_HELP)
    args = parser.parse_args()
    # The first epoch of each kind compiles and is not timed; a stale method
    # reaches its second fresh epoch after `staleness` epochs, and with
    # staleness 2 its second stale epoch after 3.
    needed = max([3, *args.stalenesses])
    if args.rounds < needed:
        parser.error(f"--rounds must be at least {needed} with --stalenesses "
                     f"{' '.join(map(str, args.stalenesses))}, to time a fresh "
                     f"and a stale epoch of each. Received: --rounds {args.rounds}")

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
    for staleness in args.stalenesses:
        model = build(True, args.seed, beta=args.reference_beta, start=0,
                      seed=args.seed)
        compile_model(model, args.jit_compile)
        stale_data = data_with_ids
        if args.stale_draws == "pipeline":
            stale_data = batches(x, y, args, example_ids=True, stale_model=model)
        methods[f"beta={args.reference_beta:g} staleness {staleness}"] = (
            model, stale_epochs(staleness), stale_data)

    # Round-robin, so that drifts in the machine's speed hit every method
    # alike; the first epoch of each kind (tracing, compilation) is not timed.
    names = list(methods)
    seconds = {name: [] for name in names}
    fractions = {name: [] for name in names}
    kinds = {name: [] for name in names}
    compiled = set()
    for round_index in range(args.rounds + 1):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            model, run, data = methods[name]
            elapsed, fraction, kind = run(model, data, args)
            if (name, kind) in compiled:
                seconds[name].append(elapsed)
                fractions[name].append(fraction)
                kinds[name].append(kind)
            compiled.add((name, kind))
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

    stale = []
    for staleness in args.stalenesses:
        name = f"beta={args.reference_beta:g} staleness {staleness}"
        by_kind = {}
        for kind in ("fresh", "stale"):
            times = [t for t, k in zip(seconds[name], kinds[name]) if k == kind]
            shares = [f for f, k in zip(fractions[name], kinds[name]) if k == kind]
            by_kind[kind] = {
                "epoch_seconds": statistics.median(times),
                "epoch_seconds_all": times,
                "selected_fraction": float(np.mean(shares)),
                "selected_fraction_all": shares,
            }
        fresh, stale_epoch = (by_kind[k]["epoch_seconds"] for k in ("fresh", "stale"))
        stale_s = by_kind["stale"]["selected_fraction"]
        mean_epoch = (fresh + (staleness - 1) * stale_epoch) / staleness
        stale.append({
            "beta": args.reference_beta,
            "staleness": staleness,
            "fresh_epochs": by_kind["fresh"],
            "stale_epochs": by_kind["stale"],
            "stale_epoch_speedup": plain_epoch / stale_epoch,
            "stale_epoch_ideal_speedup": 1.0 / stale_s,
            "mean_epoch_seconds": mean_epoch,
            "speedup_vs_plain": plain_epoch / mean_epoch,
            "speedup_vs_non_stale": (
                statistics.median(seconds[f"beta={args.reference_beta:g}"])
                / mean_epoch),
        })
        print(f"{name}: fresh {fresh:.2f} s, stale {stale_epoch:.2f} s/epoch "
              f"(s = {stale_s:.3f}, {plain_epoch / stale_epoch:.2f}x plain, "
              f"ideal {1 / stale_s:.2f}x); cycle mean {mean_epoch:.2f} s/epoch, "
              f"{plain_epoch / mean_epoch:.2f}x plain, "
              f"{stale[-1]['speedup_vs_non_stale']:.2f}x non-stale selection")

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
        "stale_draws": args.stale_draws,
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
