"""How `keras-sb bench` measures what the per-example report finds."""

import numpy as np
import pytest

from keras_sb import report as report_lib
from keras_sb.benchmark import selection_reports


def report_of(times_selected, last_loss):
    report = np.zeros(len(times_selected), dtype=[
        (name, dtype) for name, dtype, _ in report_lib.REPORT_FIELDS])
    report["example_id"] = np.arange(len(times_selected))
    report["times_selected"] = times_selected
    report["last_loss"] = last_loss
    return report


def test_precision_and_recall_of_both_rankings():
    # 100 examples; the 10 mislabelled ones are ids 0-9. Selected most:
    # ids 0-3 and 50 (top 5 by count); highest losses: ids 0-4.
    times = np.zeros(100, "int32")
    times[[0, 1, 2, 3, 50]] = 5
    losses = np.linspace(0.0, 1.0, 100)[::-1].astype("float32")
    mislabelled = np.zeros(100, bool)
    mislabelled[:10] = True
    found = selection_reports.mislabel_detection(
        report_of(times, losses), mislabelled, fraction=0.05)
    assert (found["top"], found["mislabelled"]) == (5, 10)
    assert found["by_selection"] == {"precision": 0.8, "recall": 0.4}
    assert found["by_last_loss"] == {"precision": 1.0, "recall": 0.5}
    text = selection_reports.format_detection(
        {"sb": {"mislabel_detection": found}})
    assert "most selected 0.800 / 0.400" in text


def test_bad_arguments_are_refused():
    report = report_of(np.zeros(10, "int32"), np.zeros(10, "float32"))
    with pytest.raises(ValueError, match="Received: 9"):
        selection_reports.mislabel_detection(report, np.zeros(9, bool))
    with pytest.raises(ValueError, match="fraction=0"):
        selection_reports.mislabel_detection(report, np.zeros(10, bool),
                                             fraction=0)
