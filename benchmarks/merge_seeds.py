"""Merges `keras-sb bench` results of the same settings and other seeds.

Long CIFAR-10 comparisons run a few seeds at a time; this summarizes them
together (`keras_sb.benchmark.merge_results`): the target, times to target,
speedups and final accuracies over all seeds, and one plot.

Run: `python benchmarks/merge_seeds.py benchmarks/results/a.json
benchmarks/results/b.json --output a_and_b`. Writes
benchmarks/results/<output>.json and .png.
"""

import argparse
import json
import os
import sys

from common import RESULTS
from keras_sb import benchmark


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="+", help="result JSON files")
    parser.add_argument("--output", required=True, help="name of the merged files")
    parser.add_argument("--results-dir", default=RESULTS)
    args = parser.parse_args(argv)
    loaded = []
    for path in args.results:
        with open(path) as file:
            loaded.append(json.load(file))
    merged = benchmark.merge_results(loaded)
    merged["command"] = " ".join(["python benchmarks/merge_seeds.py"]
                                 + (argv if argv is not None else sys.argv[1:]))
    stem = os.path.join(args.results_dir, args.output)
    with open(stem + ".json", "w") as file:
        json.dump(merged, file, indent=2)
    benchmark.plot(merged["runs"], merged["summary"], stem + ".png",
                   merged["config"].get("evaluated_on", "test split"))
    print(benchmark.format_summary(merged["summary"]))
    print(f"wrote {stem}.json and {stem}.png")


if __name__ == "__main__":
    main()
