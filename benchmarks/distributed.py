"""Throughput of one replica against two (tf.distribute.MirroredStrategy).

On this machine the "replicas" are two logical devices of one 2-core CPU,
which share the same cores: the figure measures what synchronizing replicas
costs (all-gathered losses, the joint decision on each backward step, the
all-reduce of gradients, weight-0 rows when one replica's queue runs ahead),
not a speedup from more hardware. For the same model (a small CIFAR CNN),
data (a shuffled slice of CIFAR-10) and global batch size, it times epochs
of:

- plain `keras.Model` training, without a strategy and with two replicas,
- `SelectiveBackpropModel(beta=...)`, without a strategy and with two
  replicas (selection from the first batch),

round-robin (one epoch of each, repeated) after one untimed round (tracing),
and reports the median epoch time, the examples per second, the ratio of two
replicas to one for each model, and for Selective-Backprop the selected
fraction and the share of backward rows that were padding (weight 0).

Run: `python benchmarks/distributed.py` (graph mode on the CPU). Writes
benchmarks/results/distributed_cpu.json and distributed_cpu.png.
"""

import argparse
import os
import statistics

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf  # noqa: E402

REPLICAS = 2
# Two logical devices on the one CPU, before TensorFlow starts.
tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0],
    [tf.config.LogicalDeviceConfiguration()] * REPLICAS,
)

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_sb  # noqa: E402
from common import RESULTS  # noqa: E402
from common import cifar10_folder  # noqa: E402
from common import small_cnn  # noqa: E402
from common import OUTPUT_HELP  # noqa: E402
from common import write_result  # noqa: E402
from keras_sb.benchmark import EpochTimer  # noqa: E402


def build(selective, strategy, args):
    with strategy.scope():
        keras.utils.set_random_seed(args.seed)
        inputs, outputs = small_cnn(keras)
        if selective:
            model = keras_sb.SelectiveBackpropModel(
                inputs, outputs, beta=args.beta, start=0, seed=args.seed)
        else:
            model = keras.Model(inputs, outputs)
        model.compile(
            optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
    return model


def one_epoch(model, data):
    timer = EpochTimer()
    history = model.fit(data, epochs=1, verbose=0, shuffle=False,
                        callbacks=[timer]).history
    return timer.times[0], history.get("selected_fraction", [None])[0]


def plot(result, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["runs"]
    labels = [f"{row['model']}\n{row['replicas']} replica"
              + ("s" if row["replicas"] > 1 else "") for row in rows]
    speeds = [row["examples_per_second"] for row in rows]
    colors = ["tab:gray" if row["model"] == "plain" else "tab:blue"
              for row in rows]
    figure, axis = plt.subplots(figsize=(7, 4))
    axis.bar(labels, speeds, color=colors)
    for index, speed in enumerate(speeds):
        axis.text(index, speed, f"{speed:.0f}", ha="center", va="bottom")
    axis.set_ylim(0, 1.15 * max(speeds))
    axis.set_ylabel("training examples per second")
    axis.set_title("1 vs 2 replicas (MirroredStrategy) on a 2-core CPU\n"
                   "two logical devices sharing the same cores: CPU only, "
                   "not a GPU figure", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-size", type=int, default=12800)
    parser.add_argument("--batch-size", type=int, default=128,
                        help="global batch size (split over the replicas)")
    parser.add_argument("--beta", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=5,
                        help="timed epochs per configuration")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default="distributed_cpu",
                        help=OUTPUT_HELP)
    args = parser.parse_args()

    x, y = keras_sb.datasets.load_arrays("cifar10", "train", cifar10_folder(),
                                         limit=args.train_size)
    x = x.astype("float32") / 255.0
    data = (tf.data.Dataset.from_tensor_slices((x, y))
            .shuffle(len(x), seed=args.seed).batch(args.batch_size)
            .prefetch(tf.data.AUTOTUNE))

    one = tf.distribute.get_strategy()
    mirrored = tf.distribute.MirroredStrategy(
        [f"/cpu:{index}" for index in range(REPLICAS)])
    configs = {}
    for name, selective in (("plain", False), (f"sb-beta{args.beta:g}", True)):
        for replicas, strategy in ((1, one), (REPLICAS, mirrored)):
            configs[(name, replicas)] = build(selective, strategy, args)

    keys = list(configs)
    seconds = {key: [] for key in keys}
    fractions = {key: [] for key in keys}
    for round_index in range(args.rounds + 1):
        shift = round_index % len(keys)
        for key in keys[shift:] + keys[:shift]:
            elapsed, fraction = one_epoch(configs[key], data)
            if round_index:  # The first round traces the functions.
                seconds[key].append(elapsed)
                fractions[key].append(fraction)
        print(f"round {round_index}: " + ", ".join(
            f"{name}/{replicas} {seconds[(name, replicas)][-1]:.2f}s"
            for name, replicas in keys if seconds[(name, replicas)]),
            flush=True)

    runs = []
    for name, replicas in keys:
        epoch = statistics.median(seconds[(name, replicas)])
        row = {
            "model": name,
            "replicas": replicas,
            "strategy": "MirroredStrategy" if replicas > 1 else "none",
            "epoch_seconds": epoch,
            "epoch_seconds_all": seconds[(name, replicas)],
            "examples_per_second": len(x) / epoch,
        }
        model = configs[(name, replicas)]
        if isinstance(model, keras_sb.SelectiveBackpropModel):
            counters = model.selection_state.counters()
            row["selected_fraction"] = float(np.mean(fractions[(name, replicas)]))
            row["backprops"] = counters["backprops"]
            row["padded_examples"] = counters["padded_examples"]
            row["padded_share_of_backward_rows"] = counters["padded_examples"] / (
                counters["backprops"] + counters["padded_examples"])
            row["dropped_examples"] = counters["dropped_examples"]
        runs.append(row)
    by_key = {(row["model"], row["replicas"]): row for row in runs}
    ratios = {
        name: by_key[(name, REPLICAS)]["examples_per_second"]
        / by_key[(name, 1)]["examples_per_second"]
        for name, _ in keys
    }
    for row in runs:
        print(f"{row['model']} x{row['replicas']}: {row['epoch_seconds']:.2f} "
              f"s/epoch, {row['examples_per_second']:.0f} examples/s")
    print("2 replicas / 1: " + ", ".join(f"{k} {v:.2f}x" for k, v in ratios.items()))
    result = {
        "what": "epoch time with 1 and 2 MirroredStrategy replicas; the 2 "
                "replicas are logical devices of the same 2-core CPU "
                "(CPU only, not a GPU figure)",
        "train_size": len(x),
        "global_batch_size": args.batch_size,
        "rounds": args.rounds,
        "runs": runs,
        "throughput_ratio_2_vs_1_replicas": ratios,
    }
    path = write_result(args.output, result)
    plot(result, os.path.join(RESULTS, f"{args.output}.png"))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
