"""The plot of a run's learning curves."""

import os

import pytest

from keras_sb import benchmark


@pytest.mark.parametrize("evaluated_on", ["test split",
                                          "validation: training images 8 to 9"])
def test_plot_writes_a_png(tmp_path, evaluated_on):
    points = [{"seconds": 1.0, "backprops": 8, "test_accuracy": 0.4},
              {"seconds": 2.0, "backprops": 12, "test_accuracy": 0.6}]
    path = str(tmp_path / "curves.png")
    benchmark.plot({"plain": [points, points], "sb-beta2": [points]},
                   {"target_accuracy": 0.5}, path, evaluated_on)
    assert os.path.getsize(path) > 1000
