"""What each selective method of a `keras-sb bench` run selected.

For the first seed of every method with a per-example report
(`SelectiveBackpropModel.selection_report`), the run writes a picture of
its most and least selected training images, and with `--label-noise`
measures how well the report finds the mislabelled examples: of the
`fraction` most selected examples (`report.rank_most_selected`), the share
that are mislabelled (precision) and the share of the mislabelled ones they
are (recall), next to the same for the examples of highest last loss.
"""

import numpy as np

from keras_sb import report as report_lib

TOP_FRACTION = 0.05


def mislabel_detection(report, mislabelled, fraction=TOP_FRACTION):
    """Precision and recall of two rankings for the mislabelled examples.

    Args:
        report: a `selection_report` array.
        mislabelled: bool array `(n,)`, by example id.
        fraction: the share of the examples taken from the top, in (0, 1].

    Returns:
        A dict: `top` (examples taken), `mislabelled` (how many there are),
        and `precision` / `recall` of the most selected examples
        (`by_selection`) and of the highest last losses (`by_last_loss`).
    """
    mislabelled = np.asarray(mislabelled, bool)
    if len(mislabelled) != len(report):
        raise ValueError(
            f"`mislabelled` must have one entry per example of the report "
            f"({len(report)}). Received: {len(mislabelled)}")
    if not 0.0 < fraction <= 1.0:
        raise ValueError(
            f"`fraction` must be in (0, 1]. Received: fraction={fraction!r}")
    top = max(1, int(round(fraction * len(report))))
    loss = np.where(np.isnan(report["last_loss"]), -np.inf,
                    report["last_loss"])
    rankings = {
        "by_selection": report_lib.rank_most_selected(report),
        "by_last_loss": report["example_id"][np.argsort(-loss, kind="stable")],
    }
    result = {"fraction": fraction, "top": top,
              "mislabelled": int(mislabelled.sum())}
    for name, ranked in rankings.items():
        found = int(mislabelled[ranked[:top]].sum())
        result[name] = {
            "precision": found / top,
            "recall": found / max(1, int(mislabelled.sum())),
        }
    return result


def training_arrays(train):
    """`(images, labels)` NumPy arrays, in example-id order, of a loaded
    training set (arrays, or an unbatched `tf.data.Dataset`)."""
    if isinstance(train, tuple):
        return np.asarray(train[0]), np.asarray(train[1])
    images, labels = [], []
    for image, label in train.as_numpy_iterator():
        images.append(image)
        labels.append(label)
    return np.stack(images), np.asarray(labels)


def write(reports, train, stem, class_names=None, mislabelled=None):
    """Writes a picture per report and measures the mislabel detection.

    Args:
        reports: dict method name -> `selection_report` array.
        train: the training set the reports are about (see
            `training_arrays`), with the labels trained on.
        stem: path prefix: pictures go to `<stem>_selection_<name>.png`.
        class_names: optional class names, by label.
        mislabelled: optional bool array `(n,)` of the examples whose
            training label is wrong (red titles in the pictures).

    Returns:
        dict method name -> `{"picture": path, "times_selected": summary,
        "mislabel_detection": ...}` (the last with `mislabelled` only).
    """
    if not reports:
        return {}
    images, labels = training_arrays(train)
    written = {}
    for name, report in reports.items():
        path = f"{stem}_selection_{name}.png"
        report_lib.plot_selection_extremes(
            images, labels, report, count=16, class_names=class_names,
            path=path, mislabelled=mislabelled)
        counts = report["times_selected"]
        written[name] = {
            "picture": path,
            "times_selected": {"mean": float(counts.mean()),
                               "min": int(counts.min()),
                               "max": int(counts.max())},
        }
        if mislabelled is not None:
            written[name]["mislabel_detection"] = mislabel_detection(
                report, mislabelled)
    return written


def format_detection(written):
    """The mislabel detection of `write`'s result as text lines (empty
    without label noise)."""
    lines = []
    for name, entry in written.items():
        found = entry.get("mislabel_detection")
        if found is None:
            continue
        if not lines:
            lines.append(
                f"mislabelled among the {found['fraction']:.0%} top-ranked "
                f"examples ({found['top']}; {found['mislabelled']} "
                "mislabelled in all): precision / recall")
        lines.append(
            f"  {name}: most selected {found['by_selection']['precision']:.3f}"
            f" / {found['by_selection']['recall']:.3f}; highest last loss "
            f"{found['by_last_loss']['precision']:.3f} / "
            f"{found['by_last_loss']['recall']:.3f}")
    return "\n".join(lines)
