"""The plot of a benchmark run's learning curves (matplotlib, imported
when a plot is drawn)."""

import numpy as np


def plot(runs, summary, path, evaluated_on="test split"):
    """Test accuracy vs training time and vs backprops, one line per run
    (validation accuracy where `evaluated_on`, as in the results' config,
    says so), and the accuracy at equal wall-clock: each method's final
    accuracy vs its training time, the mean over seeds with the seeds'
    range as error bars and each seed as a faint point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (by_time, by_backprops, at_equal_time) = plt.subplots(
        1, 3, figsize=(18, 4.5))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for index, (name, per_seed) in enumerate(runs.items()):
        color = colors[index % len(colors)]
        for seed_index, points in enumerate(per_seed):
            label = name if seed_index == 0 else None
            style = {"color": color, "label": label,
                     "alpha": 0.9 if seed_index == 0 else 0.5, "marker": "."}
            accuracy = [p["test_accuracy"] for p in points]
            by_time.plot([p["seconds"] for p in points], accuracy, **style)
            by_backprops.plot([p["backprops"] for p in points], accuracy,
                              **style)
        seconds = np.array([points[-1]["seconds"] for points in per_seed])
        finals = np.array([points[-1]["test_accuracy"] for points in per_seed])
        at_equal_time.scatter(seconds, finals, color=color, alpha=0.35, s=12)
        at_equal_time.errorbar(
            seconds.mean(), finals.mean(),
            xerr=[[seconds.mean() - seconds.min()],
                  [seconds.max() - seconds.mean()]],
            yerr=[[finals.mean() - finals.min()], [finals.max() - finals.mean()]],
            color=color, marker="o", capsize=3, label=name)
        at_equal_time.annotate(name, (seconds.mean(), finals.mean()),
                               textcoords="offset points", xytext=(4, 4),
                               fontsize=7, color=color)
    accuracy_label = ("validation accuracy"
                      if evaluated_on.startswith("validation")
                      else "test accuracy")
    for axis, label in ((by_time, "training wall-clock time (s)"),
                        (by_backprops, "examples backpropagated")):
        axis.axhline(summary["target_accuracy"], color="gray", linestyle="--",
                     linewidth=1)
        axis.set_xlabel(label)
        axis.set_ylabel(accuracy_label)
        axis.grid(alpha=0.3)
    at_equal_time.set_xlabel("training wall-clock time (s)")
    at_equal_time.set_ylabel(f"final {accuracy_label}")
    at_equal_time.set_title("accuracy at equal wall-clock (mean, seed range)",
                            fontsize=9)
    at_equal_time.grid(alpha=0.3)
    by_time.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
