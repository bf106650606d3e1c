"""The plot of a benchmark run's learning curves (matplotlib, imported
when a plot is drawn)."""


def plot(runs, summary, path, evaluated_on="test split"):
    """Test accuracy vs training time and vs backprops, one line per run
    (validation accuracy where `evaluated_on`, as in the results' config,
    says so)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (by_time, by_backprops) = plt.subplots(1, 2, figsize=(12, 4.5))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for index, (name, per_seed) in enumerate(runs.items()):
        for seed_index, points in enumerate(per_seed):
            label = name if seed_index == 0 else None
            style = {"color": colors[index % len(colors)], "label": label,
                     "alpha": 0.9 if seed_index == 0 else 0.5, "marker": "."}
            accuracy = [p["test_accuracy"] for p in points]
            by_time.plot([p["seconds"] for p in points], accuracy, **style)
            by_backprops.plot([p["backprops"] for p in points], accuracy,
                              **style)
    for axis, label in ((by_time, "training wall-clock time (s)"),
                        (by_backprops, "examples backpropagated")):
        axis.axhline(summary["target_accuracy"], color="gray", linestyle="--",
                     linewidth=1)
        axis.set_xlabel(label)
        axis.set_ylabel("validation accuracy"
                        if evaluated_on.startswith("validation")
                        else "test accuracy")
        axis.grid(alpha=0.3)
    by_time.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
