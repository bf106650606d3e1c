"""Checks a `keras-sb bench` result against the pruning targets of issue 20.

For each method: the time to reach plain training's mean final accuracy
minus `--gap` (0.3 points), and its speedup over plain training's time to
the same accuracy, per seed; the gap of its mean final accuracy to plain's,
and plain's mean time over its own. The targets: InfoBatch sized to plain's
time reaches the bar at least 1.3x sooner than plain (mean of the seeds);
at plain's epochs, InfoBatch ends within 0.5 points of plain with at least
1.4x less time; at equal time, InfoBatch ends above random-subset and
plain-short. Nothing is trained: this reads the result's learning curves.

Run: `python benchmarks/pruning_targets.py benchmarks/results/pruning_r1_10ep.json`.
Writes benchmarks/results/<name>_targets.json next to it and prints a table.
"""

import argparse
import json
import os
import sys

import numpy as np

from keras_sb.benchmark import summarize


def _mean(values):
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def targets(result, gap):
    """The figures above, from a loaded result (`runs` and `summary`)."""
    runs = result["runs"]
    summary = summarize(runs, target_gap=gap)
    methods = summary["methods"]
    plain = methods["plain"]
    rows = {}
    for name, row in methods.items():
        rows[name] = {
            "seconds_to_bar": row["seconds_to_target"],
            "speedup_vs_plain": row["speedup_vs_plain"],
            "speedup_vs_plain_mean": _mean(row["speedup_vs_plain"]),
            "final_accuracy_mean": row["final_accuracy_mean"],
            "points_vs_plain": 100 * (row["final_accuracy_mean"]
                                      - plain["final_accuracy_mean"]),
            "time_ratio_plain_over_method": (
                plain["total_seconds_mean"] / row["total_seconds_mean"]),
        }
    checks = {}
    if "infobatch-equal-time" in rows:
        speedup = rows["infobatch-equal-time"]["speedup_vs_plain_mean"]
        checks["equal_time_bar_1.3x_sooner"] = (
            None if speedup is None else speedup >= 1.3)
    if "infobatch" in rows:
        same = rows["infobatch"]
        checks["same_epochs_within_0.5_points"] = same["points_vs_plain"] >= -0.5
        checks["same_epochs_1.4x_less_time"] = (
            same["time_ratio_plain_over_method"] >= 1.4)
    for control in ("random-subset", "plain-short"):
        for name in ("infobatch", "infobatch-equal-time"):
            if name in rows and control in rows:
                checks[f"{name}_above_{control}"] = (
                    rows[name]["final_accuracy_mean"]
                    > rows[control]["final_accuracy_mean"])
    return {"bar": summary["target_accuracy"], "gap": gap, "methods": rows,
            "checks": checks}


def format_targets(report):
    lines = [f"bar: plain's mean final accuracy minus {100 * report['gap']:.1f} "
             f"points = {report['bar']:.4f}", "",
             "| method | time to bar (s) | speedup vs plain | mean final "
             "| vs plain (points) | plain time / its time |",
             "|---|---|---|---|---|---|"]
    for name, row in report["methods"].items():
        times = ", ".join("-" if t is None else f"{t:.0f}"
                          for t in row["seconds_to_bar"])
        speedups = ", ".join("-" if s is None else f"{s:.2f}x"
                             for s in row["speedup_vs_plain"])
        lines.append(
            f"| {name} | {times} | {speedups} | {row['final_accuracy_mean']:.4f}"
            f" | {row['points_vs_plain']:+.2f} | "
            f"{row['time_ratio_plain_over_method']:.2f}x |")
    lines.append("")
    lines += [f"- {check}: {met}" for check, met in report["checks"].items()]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("result", help="a keras-sb bench result JSON")
    parser.add_argument("--gap", type=float, default=0.003,
                        help="the bar is plain's mean final accuracy minus this")
    args = parser.parse_args(argv)
    with open(args.result) as file:
        result = json.load(file)
    report = targets(result, args.gap)
    report["command"] = " ".join(["python benchmarks/pruning_targets.py"]
                                 + (argv if argv is not None else sys.argv[1:]))
    report["source"] = os.path.basename(args.result)
    stem = os.path.splitext(args.result)[0]
    with open(stem + "_targets.json", "w") as file:
        json.dump(report, file, indent=2)
    print(format_targets(report))
    print(f"wrote {stem}_targets.json")


if __name__ == "__main__":
    main()
