"""The compared methods."""

import pytest

from keras_sb import benchmark
from keras_sb import strategies


def test_methods_compare_on_equal_backprop_budget():
    compared = benchmark.methods(betas=(1, 3), reference_beta=2,
                                 stalenesses=(3,))
    assert list(compared) == ["plain", "sb-beta1", "sb-beta3", "sb-beta2-stale3",
                              "sb-beta2-anneal", "uniform", "importance",
                              "infobatch", "infobatch-equal-time",
                              "random-subset", "plain-short"]
    assert compared["sb-beta2-stale3"] == {"beta": 2.0, "staleness": 3}
    assert compared["sb-beta2-anneal"] == {"beta": 2.0, "end": 0.875}
    assert compared["plain"] is None
    uniform = compared["uniform"]["strategy"]
    importance = compared["importance"]["strategy"]
    assert isinstance(uniform, strategies.UniformSubset)
    assert uniform.fraction == importance.fraction == pytest.approx(1 / 3)
    assert importance.reweight


def test_min_probability_methods():
    compared = benchmark.methods(betas=(2,), reference_beta=2, stalenesses=(),
                                 min_probabilities=(0.05, 0.2))
    assert compared["sb-beta2-pmin0.05"] == {"beta": 2.0,
                                             "min_probability": 0.05}
    assert compared["sb-beta2-pmin0.2"] == {"beta": 2.0, "min_probability": 0.2}
    model = benchmark.build_model(compared["sb-beta2-pmin0.2"], {
        "input_shape": (8, 8, 3), "classes": 10, "learning_rate": 0.1,
        "jit_compile": False}, seed=0)
    assert model.strategy.min_probability == 0.2
