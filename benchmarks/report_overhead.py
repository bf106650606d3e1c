"""What the per-example report and the TensorBoard summaries cost.

Times, in one run on one machine, epochs of the same selective model (the
small CIFAR CNN of `throughput.py`, the paper's rule at `--beta`, selecting
from the first batch) on the same shuffled in-memory CIFAR-10 slice:

- `no ids`: batches without example ids: no score table, no report (the
  step as it was before the report);
- `report`: batches with example ids: the step writes each example's loss,
  probability and epoch, and counts its selections and backprops
  (`SelectiveBackpropModel.selection_report`);
- `report + summaries`: the same with `keras_sb.SelectionSummaries`
  writing its scalars and histograms every epoch.

Epochs are timed round-robin (one of each, repeated) after one untimed
round (tracing); each time is the median over the rounds, and the overhead
is the ratio of medians to `no ids`.

Run: `python benchmarks/report_overhead.py` (graph mode on the CPU; add
`--jit-compile` for XLA). Writes benchmarks/results/report_overhead.json.
"""

import argparse
import os
import statistics
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras_sb  # noqa: E402
from common import cifar10_folder  # noqa: E402
from common import OUTPUT_HELP  # noqa: E402
from common import write_result  # noqa: E402
from throughput import batches  # noqa: E402
from throughput import build  # noqa: E402
from throughput import compile_model  # noqa: E402
from throughput import one_epoch  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-size", type=int, default=12800)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--beta", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=5,
                        help="timed epochs per variant, after 1 warm-up")
    parser.add_argument("--jit-compile", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default="report_overhead",
                        help=OUTPUT_HELP)
    args = parser.parse_args()

    x, y = keras_sb.datasets.load_arrays("cifar10", "train", cifar10_folder(),
                                         limit=args.train_size)
    x = x.astype("float32") / 255.0
    log_dir = tempfile.mkdtemp(prefix="report_overhead_")
    variants = {}
    for name, ids, callbacks in (
            ("no ids", False, []),
            ("report", True, []),
            ("report + summaries", True,
             [keras_sb.SelectionSummaries(log_dir)])):
        model = build(True, args.seed, beta=args.beta, start=0, seed=args.seed)
        compile_model(model, args.jit_compile)
        variants[name] = (model, batches(x, y, args, example_ids=ids),
                          callbacks)

    names = list(variants)
    seconds = {name: [] for name in names}
    for round_index in range(args.rounds + 1):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            model, data, callbacks = variants[name]
            elapsed, _, _ = one_epoch(model, data, args, callbacks)
            if round_index:  # The first round traces and compiles.
                seconds[name].append(elapsed)
        if round_index:
            print(f"round {round_index}: " + ", ".join(
                f"{n} {seconds[n][-1]:.2f}s" for n in names))

    reference = statistics.median(seconds["no ids"])
    rows = {}
    for name in names:
        epoch = statistics.median(seconds[name])
        rows[name] = {
            "epoch_seconds": epoch,
            "epoch_seconds_all": seconds[name],
            "examples_per_second": args.train_size / epoch,
            "time_vs_no_ids": epoch / reference,
        }
        print(f"{name}: {epoch:.2f} s/epoch, {args.train_size / epoch:.0f} "
              f"examples/s, {epoch / reference:.3f}x the time without ids")
    report = variants["report"][0].selection_report()
    path = write_result(args.output, {
        "description": "Epoch time of the selective step without example "
                       "ids, with them (score table and per-example "
                       "counts), and with SelectionSummaries too; epochs "
                       "timed round-robin, medians.",
        "model": "small CNN (4 conv + BatchNorm)",
        "data": f"CIFAR-10 train, first {args.train_size} images of "
                "keras_sb.datasets.load_arrays, float32 in memory, tf.data "
                "shuffle + batch",
        "beta": args.beta,
        "batch_size": args.batch_size,
        "jit_compile": args.jit_compile,
        "timed_rounds": args.rounds,
        "variants": rows,
        "report_check": {
            "examples": int(len(report)),
            "times_selected_sum": int(report["times_selected"].sum()),
            "selected_total": variants["report"][0].selection_state
            .counters()["selected_total"],
        },
    })
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
