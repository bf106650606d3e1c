"""What selection did to each training example: the per-example report.

For training data with example ids, the model's score table
(`SelectionState.score_table`) counts how often each example was selected
(or kept) and backpropagated, next to its last loss and probability.
`selection_report` reads it as one NumPy structured array;
`rank_most_selected` orders the examples by those counts, and
`plot_selection_extremes` draws the most and least selected ones.
"""

import numpy as np

from keras_sb.state import NOT_SCORED

REPORT_FIELDS = (
    # name, dtype, meaning
    ("example_id", "int64", "the example's id in the training data"),
    ("times_selected", "int32",
     "epochs' draws that selected (or kept) it"),
    ("times_backpropagated", "int32", "backward steps it was trained in"),
    ("last_loss", "float32", "its last loss (NaN: never scored)"),
    ("last_probability", "float32",
     "its last selection (or keep) probability"),
    ("last_scored_epoch", "int32",
     f"the epoch of its last score ({NOT_SCORED}: never scored)"),
)


def selection_report(state):
    """The per-example report of a `SelectionState` with a score table.

    Args:
        state: the model's `selection_state`.

    Returns:
        A NumPy structured array, one row per example id, with the fields
        of `REPORT_FIELDS`.

    Raises:
        ValueError: if the model has no score table yet.
    """
    if state.score_table is None:
        raise ValueError(
            "The model has no per-example scores yet: the report needs a "
            "`fit` on training data that carry example ids and tell their "
            "number, e.g. `keras_sb.data.selective_pipeline(data, model, "
            "batch_size)`, `keras_sb.data.with_example_ids(data)` or "
            "`ArrayPipeline(..., example_ids=True)`, on one device."
        )
    table = state.score_table
    columns = (np.arange(state.score_table_size), table.selected,
               table.backprops, table.loss, table.probability, table.epoch)
    report = np.empty(state.score_table_size,
                      dtype=[(name, dtype) for name, dtype, _ in REPORT_FIELDS])
    for (name, _, _), column in zip(REPORT_FIELDS, columns):
        report[name] = np.asarray(getattr(column, "value", column))
    return report


def rank_most_selected(report):
    """Example ids from the most to the least selected.

    Ties in `times_selected` are broken by `times_backpropagated`, then by
    the last loss (higher first, never-scored examples last).

    Args:
        report: the array `selection_report` returns.

    Returns:
        An int64 array of the report's example ids.
    """
    loss = np.where(np.isnan(report["last_loss"]), -np.inf,
                    report["last_loss"])
    # `lexsort` sorts by its last key first, ascending.
    order = np.lexsort((-loss, -report["times_backpropagated"].astype("int64"),
                        -report["times_selected"].astype("int64")))
    return report["example_id"][order]


def plot_selection_extremes(images, labels, report, count=16, class_names=None,
                            path=None, columns=8, mislabelled=None):
    """Draws the `count` most and least selected examples as a PNG grid.

    Each picture is titled with its label (its class name where given) and
    how many times it was selected; where `mislabelled` says its label is
    wrong, the title is red.

    Args:
        images: array `(n, height, width[, channels])` of the training
            images in example-id order (uint8, or floats in [0, 1]).
        labels: int array `(n,)` of their labels (as trained on).
        report: the array `selection_report` returns for them.
        count: examples in each of the two grids, at least 1.
        class_names: optional list of names, indexed by label.
        path: where to save the PNG; None to only return the figure.
        columns: pictures per row.
        mislabelled: optional bool array `(n,)`, by example id, of the
            examples known to have a wrong label (e.g. injected noise).

    Returns:
        The matplotlib `Figure`.

    Example:

    ```python
    report = model.selection_report()
    keras_sb.report.plot_selection_extremes(
        x_train, y_train, report, count=16, path="selection.png")
    ```
    """
    import matplotlib

    if path is not None:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images, labels = np.asarray(images), np.asarray(labels).reshape(-1)
    if len(images) != len(report) or len(labels) != len(report):
        raise ValueError(
            "`images` and `labels` must hold one entry per example of the "
            f"report ({len(report)}). Received: {len(images)} images and "
            f"{len(labels)} labels."
        )
    if not isinstance(count, int) or not 1 <= count <= len(report):
        raise ValueError(
            f"`count` must be an int in [1, {len(report)}]. Received: "
            f"count={count!r}"
        )
    ranked = rank_most_selected(report)
    groups = (("most selected", ranked[:count]),
              ("least selected", ranked[::-1][:count]))
    rows = -(-count // columns)
    figure = plt.figure(figsize=(1.6 * columns, 2 * 1.9 * rows + 0.8),
                        layout="constrained")
    for subfigure, (title, ids) in zip(figure.subfigures(2, 1), groups):
        subfigure.suptitle(title)
        axes = np.atleast_1d(subfigure.subplots(rows, columns)).reshape(-1)
        for axis in axes:
            axis.axis("off")
        for axis, example_id in zip(axes, ids):
            image = images[example_id]
            axis.imshow(image, cmap="gray" if image.ndim == 2 else None)
            label = int(labels[example_id])
            name = class_names[label] if class_names is not None else label
            wrong = mislabelled is not None and mislabelled[example_id]
            axis.set_title(
                f"{name}\n{report['times_selected'][example_id]}x",
                fontsize=8, color="red" if wrong else "black")
    if path is not None:
        figure.savefig(path, dpi=100)
        plt.close(figure)
    return figure
