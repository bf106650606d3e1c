"""Does tf.data autotuning stall the first step of an epoch?

In the CIFAR-10 time-to-accuracy runs on this project's 2-core machine,
Selective-Backprop epochs of the same work took either about 8 s or about
16 s, with nothing in between. Timing each step showed the slow epochs
waiting about 3 s for their first batch. This script measures it: two
identical `SelectiveBackpropModel`s (a ResNet, beta=2, selection from the
first batch) train on the same CIFAR-10 images through
`keras_sb.data.training_pipeline`, one with tf.data's autotuning on
(`autotune=True`, tf.data's default) and one with it off (keras-sb's
default), each in one `fit` call, one after the other. Per epoch it records
the seconds and the wait for the first batch. (An earlier version alternated
the two settings epoch by epoch, one `fit` call per epoch; then neither
stalled.)

Run: `python benchmarks/pipeline_stall.py` (about 5 minutes on this
project's CPU machine). Writes benchmarks/results/pipeline_stall.json.
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402

import keras_sb  # noqa: E402
from common import cifar10_folder  # noqa: E402
from common import OUTPUT_HELP  # noqa: E402
from common import write_result  # noqa: E402


class StepTimes(keras_sb.benchmark.EpochTimer):
    """`EpochTimer` (seconds of each epoch, in `times`) that also records
    the seconds of each epoch's first step, the wait for the first batch
    included, in `first_steps`."""

    def __init__(self):
        super().__init__()
        self.first_steps = []

    def on_epoch_begin(self, epoch, logs=None):
        super().on_epoch_begin(epoch, logs)
        self._first_step_seen = False

    def on_train_batch_end(self, batch, logs=None):
        if not self._first_step_seen:
            self._first_step_seen = True
            self.first_steps.append(time.perf_counter() - self._start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-size", type=int, default=10_000)
    parser.add_argument("--widths", type=int, nargs="+", default=[32, 64, 128])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--output", default="pipeline_stall",
                        help=OUTPUT_HELP)
    args = parser.parse_args()

    train = keras_sb.datasets.load("cifar10", "train", path=cifar10_folder(),
                                   limit=args.train_size)
    examples = sum(1 for _ in train)  # Also fills the decoding cache.
    network = keras_sb.benchmark.small_resnet(widths=args.widths)
    weights = network.get_weights()

    def model():
        keras.utils.set_random_seed(0)
        copy = keras.models.clone_model(network)
        copy.set_weights(weights)
        built = keras_sb.SelectiveBackpropModel.from_model(
            copy, beta=2.0, start=0, seed=0)
        built.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
                      loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"], jit_compile=False)
        return built

    settings = {"autotune on": True, "autotune off": False}
    epochs = {}
    first_steps = {}
    for name, autotune in settings.items():
        times = StepTimes()
        model().fit(keras_sb.data.training_pipeline(
                        train, args.batch_size, seed=0, autotune=autotune),
                    epochs=args.epochs + 1, verbose=0, callbacks=[times])
        epochs[name] = times.times[1:]  # Epoch 0 traces the steps.
        first_steps[name] = times.first_steps[1:]
        print(f"{name}: epochs " + ", ".join(
            f"{t:.2f}" for t in epochs[name]) + " s; first steps " + ", ".join(
            f"{t:.2f}" for t in first_steps[name]) + " s")

    rows = {}
    for name in settings:
        rows[name] = {
            "epoch_seconds_median": statistics.median(epochs[name]),
            "epoch_seconds_mean": statistics.mean(epochs[name]),
            "first_step_seconds_median": statistics.median(first_steps[name]),
            "epochs_with_first_step_over_1s": sum(
                t > 1.0 for t in first_steps[name]),
            "epoch_seconds": epochs[name],
            "first_step_seconds": first_steps[name],
        }
        print(f"{name}: epoch median {rows[name]['epoch_seconds_median']:.2f} "
              f"s, mean {rows[name]['epoch_seconds_mean']:.2f} s; "
              f"{rows[name]['epochs_with_first_step_over_1s']} of "
              f"{args.epochs} epochs waited over 1 s for their first batch")
    path = write_result(args.output, {
        "description": "SelectiveBackpropModel (beta=2, start=0) epochs on "
                       "keras_sb.data.training_pipeline with tf.data "
                       "autotuning on and off, one fit call each, one after "
                       "the other; the first epoch (tracing) is left out.",
        "examples": examples,
        "model": f"small_resnet widths {args.widths}",
        "batch_size": args.batch_size,
        "epochs": args.epochs,
        "settings": rows,
    })
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
