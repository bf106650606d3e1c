"""Selection strategies (`keras_sb.strategies`) and their argument checks."""

import keras
import numpy as np
import pytest
from keras import ops

import keras_sb
from keras_sb import strategies

NAN = float("nan")


def numpy(x):
    return ops.convert_to_numpy(x)


class TestBiggestLosers:
    def test_defaults_to_the_released_code(self):
        strategy = keras_sb.BiggestLosers()
        assert strategy.beta == 3.0 and strategy.min_probability == 0.0
        assert strategy.expected_fraction() == pytest.approx(0.25)

    def test_target_fraction_sets_beta(self):
        assert keras_sb.BiggestLosers(target_fraction=1 / 3).beta == pytest.approx(2)
        strategy = keras_sb.BiggestLosers(target_fraction=0.4, min_probability=0.1)
        assert strategy.expected_fraction() == pytest.approx(0.4)

    def test_probabilities(self):
        history = ops.array([0.0, 1.0, 2.0, 3.0])
        probabilities = keras_sb.BiggestLosers(beta=2.0).probabilities(
            ops.array([0.0, 2.0, 3.0]), history)
        np.testing.assert_allclose(numpy(probabilities), [0, 0.25, 0.5625])

    @pytest.mark.parametrize("kwargs,message", [
        ({"beta": -1}, "Received: beta=-1"),
        ({"beta": float("nan")}, "Received: beta=nan"),
        ({"beta": "2"}, "Received: beta='2'"),
        ({"min_probability": 1.5}, "Received: min_probability=1.5"),
        ({"min_probability": -0.1}, "Received: min_probability=-0.1"),
        ({"target_fraction": 0.0}, "Received: target_fraction=0.0"),
        ({"target_fraction": 0.1, "min_probability": 0.2}, "target_fraction=0.1"),
        ({"beta": 1.0, "target_fraction": 0.5}, "not both"),
    ])
    def test_bad_arguments(self, kwargs, message):
        with pytest.raises(ValueError, match=message):
            keras_sb.BiggestLosers(**kwargs)


def test_uniform_subset():
    probabilities = keras_sb.UniformSubset(0.3).probabilities(
        ops.array([0.1, 5.0]), ops.full((4,), NAN))
    np.testing.assert_allclose(numpy(probabilities), [0.3, 0.3])
    with pytest.raises(ValueError, match="Received: fraction=0"):
        keras_sb.UniformSubset(0)


class TestLossProportional:
    def test_probabilities_follow_the_loss(self):
        history = ops.array([1.0, 2.0, 3.0, NAN])  # Mean 2.
        strategy = keras_sb.LossProportional(0.5)
        probabilities = numpy(strategy.probabilities(ops.array([1.0, 2.0, 8.0]),
                                                     history))
        np.testing.assert_allclose(probabilities, [0.25, 0.5, 1.0])

    def test_reweighting_is_unbiased(self):
        """E[sum over selected of w_i g_i] / E[#selected] = mean of g_i."""
        rng = np.random.default_rng(0)
        losses = rng.exponential(size=256).astype("float32")
        values = rng.normal(size=256)
        strategy = keras_sb.LossProportional(0.3)
        p = numpy(strategy.probabilities(ops.array(losses), ops.array(losses)))
        w = numpy(strategy.importance_weights(ops.array(p)))
        weighted_mean = np.sum(p * w * values) / np.sum(p)
        assert weighted_mean == pytest.approx(values.mean(), rel=1e-4)
        # Unweighted, the estimate is biased towards high-loss examples.
        assert abs(np.sum(p * values) / np.sum(p) - values.mean()) > 1e-3
        assert keras_sb.LossProportional(0.3, reweight=False).reweights is False


@pytest.mark.parametrize("strategy", [
    keras_sb.BiggestLosers(beta=2.0, min_probability=0.05),
    keras_sb.BiggestLosers(target_fraction=0.3),
    keras_sb.UniformSubset(0.4),
    keras_sb.LossProportional(0.25, reweight=False),
])
def test_strategies_serialize(strategy):
    config = keras.saving.serialize_keras_object(strategy)
    restored = keras.saving.deserialize_keras_object(config)
    assert type(restored) is type(strategy)
    assert restored.get_config() == strategy.get_config()


def test_strategy_get_rejects_other_objects():
    with pytest.raises(ValueError, match="Received: strategy='beta'"):
        strategies.get("beta")
