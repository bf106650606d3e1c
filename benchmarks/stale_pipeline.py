"""What stale selection's draws cost and save in the input pipeline alone.

Times one pass (one epoch) of `keras_sb.data.training_pipeline` over the
CIFAR-10 training set (decoding cached, crop-and-flip augmentation, batch
128), with no model attached to the timing, for:

- the plain pipeline (no ids),
- the pipeline with example ids (stale selection with the draws in the
  train step reads this in every epoch),
- the pipeline with `stale_model=` (`keras_sb.data.stale_filter`) in a
  fresh epoch (every example passes) and in a stale epoch (each example
  kept with probability `--keep`).

Passes are timed round-robin, and each figure is the median over
`--rounds`. Run: `python benchmarks/stale_pipeline.py` (about 2 minutes on
this project's CPU machine). Writes benchmarks/results/stale_pipeline.json.
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_sb  # noqa: E402
from common import cifar10_folder  # noqa: E402
from common import OUTPUT_HELP  # noqa: E402
from common import write_result  # noqa: E402


def one_pass(dataset):
    """Seconds to read every batch of `dataset` once, and the batch count."""
    start = time.perf_counter()
    batches = sum(1 for _ in dataset)
    return time.perf_counter() - start, batches


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--keep", type=float, default=1 / 3,
                        help="probability of keeping each example in the "
                             "stale epoch (beta=2 keeps about 1/3)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--output", default="stale_pipeline",
                        help=OUTPUT_HELP)
    args = parser.parse_args()

    train = keras_sb.datasets.load("cifar10", "train", path=cifar10_folder())
    num_examples = sum(1 for _ in train)  # Also fills the decoding cache.
    inputs = keras.Input((32, 32, 3))
    model = keras_sb.SelectiveBackpropModel(
        inputs, keras.layers.Dense(10)(keras.layers.Flatten()(inputs)))

    def pipeline(**options):
        return keras_sb.data.training_pipeline(train, args.batch_size, seed=0,
                                               **options)

    filtered = pipeline(stale_model=model)
    draws = keras_sb.data.find_stale_filter(filtered)
    probabilities = np.full(num_examples, args.keep, "float32")
    passes = {
        "plain": (pipeline(), lambda: None),
        "example ids": (pipeline(example_ids=True), lambda: None),
        "stale_filter, fresh epoch": (
            filtered, lambda: draws.begin_epoch(False, epoch=0)),
        "stale_filter, stale epoch": (
            filtered, lambda: draws.begin_epoch(True, epoch=1,
                                                probabilities=probabilities)),
    }
    seconds = {name: [] for name in passes}
    batches = {}
    for round_index in range(args.rounds + 1):  # The first round warms up.
        for name, (dataset, begin_epoch) in passes.items():
            begin_epoch()
            elapsed, batches[name] = one_pass(dataset)
            if round_index:
                seconds[name].append(elapsed)
        if round_index:
            print(f"round {round_index}: " + ", ".join(
                f"{name} {seconds[name][-1]:.2f}s" for name in passes))

    rows = {name: {"epoch_seconds": statistics.median(seconds[name]),
                   "epoch_seconds_all": seconds[name],
                   "batches": batches[name]} for name in passes}
    for name, row in rows.items():
        print(f"{name}: {row['epoch_seconds']:.2f} s per pass, "
              f"{row['batches']} batches")
    path = write_result(args.output, {
        "description": "One pass of keras_sb.data.training_pipeline over "
                       "CIFAR-10 train (cached decoding, crop-and-flip, "
                       "batch 128), no model: median seconds per pass, "
                       "passes timed round-robin.",
        "examples": num_examples,
        "batch_size": args.batch_size,
        "stale_keep_probability": args.keep,
        "kept_fraction": draws.kept_fraction(),
        "rounds": args.rounds,
        "pipelines": rows,
    })
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
