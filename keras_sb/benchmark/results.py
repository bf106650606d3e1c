"""Results of a benchmark run: times to a target accuracy, speedups,
accuracy at equal wall-clock time, the merging of seeds run apart, and the
Markdown summary."""

import numpy as np

# Two methods are at equal wall-clock time when their mean training times
# differ by at most this fraction of the reference's.
EQUAL_TIME_TOLERANCE = 0.10
# Plain `keras.Model` training: the full schedule, and one that fully decays
# within the fastest other method's time (see `sizing`).
PLAIN_TRAINING = ("plain", "plain-short")
# The control a selective or pruning method must beat at equal time.
CONTROL = "random-subset"


def time_to_accuracy(points, target):
    """Training seconds and backprops when `target` was first reached, or
    None."""
    for point in points:
        if point["test_accuracy"] >= target:
            return point["seconds"], point["backprops"]
    return None


def summarize(runs, target_gap=0.005, target=None):
    """Per-method time to target, speedups, final accuracy and accuracy at
    equal wall-clock time.

    Each method's row also holds its epochs and mean training time and, for
    the selective and pruning methods (all but `PLAIN_TRAINING`), the
    statements of `equal_time_statements`; `equal_wall_clock` lists every
    method's mean time and final accuracy, fastest first.

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
            "epochs": [len(points) for points in per_seed],
            "total_seconds_mean": float(np.mean(
                [points[-1]["seconds"] for points in per_seed])),
            "final_accuracy_std": float(np.std(finals)),
        }
    for name, per_seed in runs.items():
        base = name.split("-stale")[0]
        if name != base and base in runs:
            summary["methods"][name]["vs_non_stale"] = _compare_at_final(
                runs[base], per_seed, target_gap)
    rows = summary["methods"]
    for name in rows:
        if name not in PLAIN_TRAINING:
            rows[name].update(equal_time_statements(name, rows))
    summary["equal_wall_clock"] = {
        "tolerance": EQUAL_TIME_TOLERANCE,
        "methods": [
            {"method": name, "seconds_mean": rows[name]["total_seconds_mean"],
             "final_accuracy_mean": rows[name]["final_accuracy_mean"],
             "final_accuracy_std": rows[name]["final_accuracy_std"]}
            for name in sorted(rows,
                               key=lambda n: rows[n]["total_seconds_mean"])],
    }
    return summary


def _beat_at_equal_time(row, reference, tolerance=EQUAL_TIME_TOLERANCE):
    """Whether `row`'s mean final accuracy beat `reference`'s (summary rows),
    or None when either is missing or their mean training times differ by
    more than `tolerance` of the reference's."""
    if row is None or reference is None:
        return None
    seconds = reference["total_seconds_mean"]
    if abs(row["total_seconds_mean"] - seconds) > tolerance * seconds:
        return None
    return bool(row["final_accuracy_mean"] > reference["final_accuracy_mean"])


def equal_time_statements(name, rows, tolerance=EQUAL_TIME_TOLERANCE):
    """How a selective or pruning method compares at equal wall-clock time.

    Compares mean final accuracies over the seeds, only where the mean
    training times are within `tolerance` (10%) of the reference's: a
    method "beats" a reference at equal time when it ends more accurate in
    about the same time; None says the two are not comparable (or the
    reference was not run).

    Args:
        name: the method.
        rows: the summary rows of every method (name -> row with
            `total_seconds_mean` and `final_accuracy_mean`).

    Returns:
        A dict:
        - `beat_plain_short_at_equal_time`: vs `plain-short`;
        - `plain_at_equal_time`: the plain training run at about its time
          (`plain` or `plain-short`, the closer in time), or None;
        - `beat_plain_at_equal_time`: vs that run;
        - `beat_random_subset_at_equal_time`: vs the `random-subset`
          control (None for the control itself);
        - `faster`: True only where it beat both plain training and the
          control at equal time (the control itself: plain training), False
          where it lost to one of them, else None;
        - `equal_time_statement`: the same in words.
    """
    row = rows[name]
    seconds = row["total_seconds_mean"]
    plain_at_equal_time = min(
        (other for other in PLAIN_TRAINING
         if _beat_at_equal_time(row, rows.get(other), tolerance) is not None),
        key=lambda other: abs(rows[other]["total_seconds_mean"] - seconds),
        default=None)
    beat_plain = (None if plain_at_equal_time is None
                  else _beat_at_equal_time(row, rows[plain_at_equal_time],
                                           tolerance))
    beat_control = (None if name == CONTROL
                    else _beat_at_equal_time(row, rows.get(CONTROL), tolerance))
    verdicts = [beat_plain] if name == CONTROL else [beat_plain, beat_control]
    if False in verdicts:
        faster = False
    elif all(verdicts):
        faster = True
    else:
        faster = None
    words = [f"{name}: {row['final_accuracy_mean']:.4f} in {seconds:.0f} s"]
    references = ["plain-short"]
    if plain_at_equal_time not in (None, "plain-short"):
        references.append(plain_at_equal_time)
    if name != CONTROL:
        references.append(CONTROL)
    for other in references:
        reference = rows.get(other)
        if reference is None:
            words.append(f"no {other} run")
            continue
        verdict = _beat_at_equal_time(row, reference, tolerance)
        compared = (f"{other} {reference['final_accuracy_mean']:.4f} in "
                    f"{reference['total_seconds_mean']:.0f} s")
        words.append(compared + {True: ": beat it", False: ": did not beat it",
                                 None: ": not comparable (time differs by "
                                       f"more than {tolerance:.0%})"}[verdict])
    words.append({True: "faster at equal wall-clock",
                  False: "not faster at equal wall-clock",
                  None: "not shown faster (no comparison at equal time)"}[faster])
    return {
        "beat_plain_short_at_equal_time": _beat_at_equal_time(
            row, rows.get("plain-short"), tolerance),
        "plain_at_equal_time": plain_at_equal_time,
        "beat_plain_at_equal_time": beat_plain,
        "beat_random_subset_at_equal_time": beat_control,
        "faster": faster,
        "equal_time_statement": "; ".join(words) + ".",
    }


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
_SETTINGS_ADDED_LATER = {"augment": True, "evaluated_on": "test split",
                         "label_noise": 0.0}


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
    if "equal_wall_clock" in summary:
        lines.extend(_format_equal_wall_clock(summary))
    return "\n".join(lines)


def _format_equal_wall_clock(summary):
    """The lines of the accuracy-at-equal-wall-clock table and statements."""
    def verdict(value):
        return {True: "yes", False: "no", None: "-"}[value]

    view = summary["equal_wall_clock"]
    rows = summary["methods"]
    lines = [
        "",
        f"accuracy at equal wall-clock (mean over seeds; equal: times within "
        f"{view['tolerance']:.0%}):",
        "",
        "| method | epochs | training time (s) | final accuracy "
        "| beat plain training | beat plain-short | beat random-subset "
        "| faster |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for entry in view["methods"]:
        name = entry["method"]
        row = rows[name]
        epochs = ", ".join(str(e) for e in row.get("epochs", []))
        plain = verdict(row.get("beat_plain_at_equal_time"))
        if row.get("plain_at_equal_time"):
            plain += f" ({row['plain_at_equal_time']})"
        lines.append(
            f"| {name} | {epochs} | {entry['seconds_mean']:.0f} | "
            f"{entry['final_accuracy_mean']:.4f} "
            f"+- {entry['final_accuracy_std']:.4f} | "
            + ("- | - | - | - |" if name in PLAIN_TRAINING
               else f"{plain} | "
                    f"{verdict(row.get('beat_plain_short_at_equal_time'))} | "
                    f"{verdict(row.get('beat_random_subset_at_equal_time'))} | "
                    f"{verdict(row.get('faster'))} |"))
    lines.append("")
    lines.extend(rows[entry["method"]]["equal_time_statement"]
                 for entry in view["methods"]
                 if "equal_time_statement" in rows[entry["method"]])
    return lines

