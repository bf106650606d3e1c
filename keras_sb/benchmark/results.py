"""Results of a benchmark run: times to a target accuracy, speedups, the
merging of seeds run apart, and the Markdown summary."""

import numpy as np


def time_to_accuracy(points, target):
    """Training seconds and backprops when `target` was first reached, or
    None."""
    for point in points:
        if point["test_accuracy"] >= target:
            return point["seconds"], point["backprops"]
    return None


def summarize(runs, target_gap=0.005, target=None):
    """Per-method time to target, speedups and final accuracy.

    Args:
        runs: dict method -> list (one per seed) of learning curves.
        target_gap: target = mean final plain accuracy minus this, when
            `target` is None.
        target: an explicit target accuracy.
    """
    if target is None:
        plain_final = [points[-1]["test_accuracy"] for points in runs["plain"]]
        target = float(np.mean(plain_final)) - target_gap
    seeds = max(len(per_seed) for per_seed in runs.values())
    plain_times = [time_to_accuracy(points, target)
                   for points in runs.get("plain", [])] or [None] * seeds
    summary = {"target_accuracy": target, "methods": {}}
    for name, per_seed in runs.items():
        reached = [time_to_accuracy(points, target) for points in per_seed]
        speedups = [
            plain[0] / mine[0] if plain and mine else None
            for plain, mine in zip(plain_times, reached)
        ]
        finals = [points[-1]["test_accuracy"] for points in per_seed]
        valid = [s for s in speedups if s is not None]
        summary["methods"][name] = {
            "seconds_to_target": [r[0] if r else None for r in reached],
            "backprops_to_target": [r[1] if r else None for r in reached],
            "speedup_vs_plain": speedups,
            "speedup_vs_plain_mean": float(np.mean(valid)) if valid else None,
            "reached_target": f"{sum(r is not None for r in reached)}/{len(per_seed)}",
            "final_accuracy": finals,
            "final_accuracy_mean": float(np.mean(finals)),
            "total_seconds": [points[-1]["seconds"] for points in per_seed],
            "total_backprops": [points[-1]["backprops"] for points in per_seed],
        }
    for name, per_seed in runs.items():
        base = name.split("-stale")[0]
        if name != base and base in runs:
            summary["methods"][name]["vs_non_stale"] = _compare_at_final(
                runs[base], per_seed, target_gap)
    return summary


def _compare_at_final(reference, runs, target_gap):
    """Speedup of `runs` over `reference` (lists of curves, one per seed) to
    the reference's mean final accuracy minus `target_gap`: how stale
    selection compares with selection at the same beta."""
    target = float(np.mean([points[-1]["test_accuracy"] for points in reference]))
    target -= target_gap
    times = [time_to_accuracy(points, target) for points in runs]
    reference_times = [time_to_accuracy(points, target) for points in reference]
    speedups = [theirs[0] / mine[0] if theirs and mine else None
                for theirs, mine in zip(reference_times, times)]
    return {
        "target_accuracy": target,
        "seconds_to_target": [t[0] if t else None for t in times],
        "reference_seconds_to_target": [t[0] if t else None for t in reference_times],
        "speedup": speedups,
    }


# Settings added to `main`'s configuration over time, with the value that
# results written before them ran with.
_SETTINGS_ADDED_LATER = {"augment": True, "evaluated_on": "test split"}


def merge_results(results):
    """Merges benchmark results of the same settings and different seeds.

    Seeds run in separate processes (to fit a time limit, or to add seeds to
    an earlier run) are summarized together, as one run with all the seeds
    would be: same target rule, same statistics.

    Args:
        results: list of result dicts as `main` writes them (JSON-loaded),
            whose configurations differ only in `seeds`, with the same
            methods.

    Returns:
        A result dict with every seed's runs and a new summary; `merged_from`
        holds each input's command, date and machine.

    Example:

    ```python
    merged = merge_results([json.load(open(a)), json.load(open(b))])
    print(format_summary(merged["summary"]))
    ```
    """
    if len(results) < 2:
        raise ValueError(
            f"Merging needs at least 2 results. Received: {len(results)}.")

    def settings(result):
        # Results written before a setting existed ran with its default.
        config = dict(_SETTINGS_ADDED_LATER, **result["config"])
        return {k: v for k, v in config.items() if k != "seeds"}

    first = results[0]
    reference = settings(first)
    for index, result in enumerate(results[1:], 1):
        mine = settings(result)
        if mine != reference:
            differing = sorted(key for key in set(mine) | set(reference)
                               if mine.get(key) != reference.get(key))
            raise ValueError(
                "Results to merge must differ only in their seeds. Received: "
                f"result {index} differs from result 0 in {differing}.")
        if list(result["runs"]) != list(first["runs"]):
            raise ValueError(
                "Results to merge must have the same methods. Received: "
                f"{list(first['runs'])} and {list(result['runs'])}.")
    seeds = [seed for result in results for seed in result["config"]["seeds"]]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"Results to merge repeat a seed. Received: seeds={seeds}.")
    runs = {name: [points for result in results for points in result["runs"][name]]
            for name in first["runs"]}
    config = dict(first["config"], seeds=seeds)
    return {
        "merged_from": [{key: result.get(key) for key in ("command", "date", "machine")}
                        for result in results],
        "config": config,
        "summary": summarize(runs, config["target_gap"], config.get("target")),
        "runs": runs,
    }


def format_summary(summary):
    """The summary as a Markdown table."""
    lines = [
        f"target test accuracy: {summary['target_accuracy']:.4f}",
        "",
        "| method | reached target | time to target (s) | speedup vs plain "
        "| final accuracy | backprops |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in summary["methods"].items():
        times = ", ".join("-" if t is None else f"{t:.0f}"
                          for t in row["seconds_to_target"])
        speedups = ", ".join("-" if s is None else f"{s:.2f}x"
                             for s in row["speedup_vs_plain"])
        finals = ", ".join(f"{a:.4f}" for a in row["final_accuracy"])
        backprops = ", ".join(str(b) for b in row["total_backprops"])
        lines.append(f"| {name} | {row['reached_target']} | {times} | "
                     f"{speedups} | {finals} | {backprops} |")
    for name, row in summary["methods"].items():
        if "vs_non_stale" in row:
            compared = row["vs_non_stale"]
            speedups = ", ".join("-" if s is None else f"{s:.2f}x"
                                 for s in compared["speedup"])
            lines.append(f"\n{name} vs non-stale selection, to "
                         f"{compared['target_accuracy']:.4f}: {speedups}")
    return "\n".join(lines)

