"""Results: times to target, speedups, merging seeds, the summary table."""

import pytest

from keras_sb import benchmark


def curve(seconds, accuracies, backprops_per_epoch):
    return [{"epoch": i + 1, "seconds": s, "test_accuracy": a,
             "backprops": (i + 1) * backprops_per_epoch,
             "selected_fraction": 1.0}
            for i, (s, a) in enumerate(zip(seconds, accuracies))]


def test_time_to_target_and_speedups():
    runs = {
        "plain": [curve([10, 20, 30], [0.5, 0.7, 0.8], 100),
                  curve([10, 20, 30], [0.5, 0.75, 0.82], 100)],
        "fast": [curve([5, 10, 15], [0.6, 0.8, 0.81], 30),
                 curve([5, 10, 15], [0.6, 0.7, 0.79], 30)],
        "never": [curve([5, 10, 15], [0.1, 0.2, 0.3], 30)] * 2,
    }
    summary = benchmark.summarize(runs, target_gap=0.005)
    # Target: mean plain final accuracy (0.81) minus half a point.
    assert summary["target_accuracy"] == pytest.approx(0.805)
    plain = summary["methods"]["plain"]
    assert plain["seconds_to_target"] == [None, 30]
    fast = summary["methods"]["fast"]
    assert fast["seconds_to_target"] == [15, None]
    assert fast["backprops_to_target"] == [90, None]
    # Seed 0: plain never reached it, so no speedup; seed 1: fast did not.
    assert fast["speedup_vs_plain"] == [None, None]
    # Reached in seed 0, speedup or not.
    assert fast["reached_target"] == "1/2"
    assert summary["methods"]["never"]["reached_target"] == "0/2"

    summary = benchmark.summarize(runs, target=0.7)
    assert summary["methods"]["fast"]["speedup_vs_plain"] == [
        pytest.approx(20 / 10), pytest.approx(20 / 10)]
    assert summary["methods"]["fast"]["speedup_vs_plain_mean"] == pytest.approx(2)
    assert "| fast | 2/2 |" in benchmark.format_summary(summary)


def fake_result(seeds, plain_finals, stale_finals, **config):
    """A result as `keras-sb bench` writes it: plain and a stale method."""
    return {
        "command": "keras-sb bench", "date": "today", "machine": {},
        "config": {"seeds": seeds, "target_gap": 0.005, "target": None,
                   "epochs": 3, **config},
        "runs": {"plain": [curve([10, 20, 30], [0.5, 0.6, a], 100)
                           for a in plain_finals],
                 "sb-beta2": [curve([5, 10, 15], [0.5, 0.6, a], 30)
                              for a in stale_finals],
                 "sb-beta2-stale3": [curve([4, 8, 12], [0.5, 0.6, a], 20)
                                     for a in stale_finals]},
    }


def test_merged_seeds_are_summarized_as_one_run():
    first = fake_result([0, 1], [0.80, 0.82], [0.79, 0.70])
    second = fake_result([2], [0.90], [0.86])
    merged = benchmark.merge_results([first, second])
    assert merged["config"]["seeds"] == [0, 1, 2]
    assert [len(per_seed) for per_seed in merged["runs"].values()] == [3, 3, 3]
    # The target is the mean over all three seeds: (0.80 + 0.82 + 0.90) / 3.
    assert merged["summary"]["target_accuracy"] == pytest.approx(0.835)
    plain = merged["summary"]["methods"]["plain"]
    assert plain["seconds_to_target"] == [None, None, 30]
    assert merged["summary"]["methods"]["sb-beta2"]["speedup_vs_plain"] == [
        None, None, 2.0]
    assert merged["summary"]["methods"]["sb-beta2-stale3"]["vs_non_stale"][
        "speedup"] == [1.25, None, 1.25]
    assert [m["command"] for m in merged["merged_from"]] == ["keras-sb bench"] * 2
    # A result written before `--no-augment` existed was augmented.
    older = fake_result([3], [0.8], [0.8])
    assert "augment" not in older["config"]
    assert benchmark.merge_results([fake_result([4], [0.8], [0.8], augment=True),
                                    older])["config"]["seeds"] == [4, 3]
    with pytest.raises(ValueError, match="augment"):
        benchmark.merge_results([fake_result([4], [0.8], [0.8], augment=False),
                                 older])


@pytest.mark.parametrize("second, match", [
    (fake_result([2], [0.9], [0.8], epochs=4), r"differs .* in \['epochs'\]"),
    (fake_result([1], [0.9], [0.8]), r"repeat a seed. Received: seeds=\[0, 1, 1\]"),
])
def test_merging_different_settings_is_refused(second, match):
    with pytest.raises(ValueError, match=match):
        benchmark.merge_results([fake_result([0, 1], [0.8, 0.8], [0.7, 0.7]), second])


def test_summary_without_plain():
    runs = {"fast": [curve([5, 10], [0.6, 0.8], 30)]}
    summary = benchmark.summarize(runs, target=0.7)
    assert summary["methods"]["fast"]["seconds_to_target"] == [10]
    assert summary["methods"]["fast"]["speedup_vs_plain"] == [None]
    assert summary["methods"]["fast"]["reached_target"] == "1/1"


def test_stale_methods_are_compared_with_selection_at_the_same_beta():
    runs = {"plain": [curve([10, 20], [0.7, 0.9], 20)],
            "sb-beta2": [curve([6, 12], [0.6, 0.8], 8)],
            "sb-beta2-stale3": [curve([4, 8], [0.7, 0.8], 6)]}
    summary = benchmark.summarize(runs, target_gap=0.0)
    stale = summary["methods"]["sb-beta2-stale3"]["vs_non_stale"]
    assert stale["target_accuracy"] == pytest.approx(0.8)
    assert stale["seconds_to_target"] == [8]
    assert stale["reference_seconds_to_target"] == [12]
    assert stale["speedup"] == [pytest.approx(1.5)]
    assert "vs_non_stale" not in summary["methods"]["sb-beta2"]
