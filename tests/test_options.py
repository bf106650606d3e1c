"""The constructor's selection options (`keras_sb.options`): checks and
their config."""

import json

import numpy as np
import pytest
from conftest import mlp

import keras_sb


class TestOptions:
    @pytest.mark.parametrize("kwargs,message", [
        ({"beta": -1}, "Received: beta=-1"),
        ({"min_probability": 2.0}, "Received: min_probability=2.0"),
        ({"target_fraction": 1.5}, "Received: target_fraction=1.5"),
        ({"history_size": 0}, "Received: history_size=0"),
        ({"history_size": 2.5}, "Received: history_size=2.5"),
        ({"backprop_batch_size": 0}, "Received: backprop_batch_size=0"),
        ({"start": -3}, "Received: start=-3"),
        ({"end": "later"}, "Received: end='later'"),
        ({"seed": "x"}, "Received: seed='x'"),
        ({"strategy": keras_sb.UniformSubset(0.5), "beta": 2.0},
         "either `strategy`"),
        ({"strategy": 0.5}, "Received: strategy=0.5"),
        ({"start": 10, "end": 5}, "Received: start=10, end=5"),
        ({"start": "2ep", "end": "1ep"}, "Received: start='2ep', end='1ep'"),
        ({"start": 0.5, "end": 0.5}, "Received: start=0.5, end=0.5"),
        ({"end": 0}, "Received: end=0"),
        ({"start": 0, "end": 0.0}, "Received: end=0.0"),
        ({"beta": True}, "Received: beta=True"),
    ])
    def test_invalid_options(self, kwargs, message):
        with pytest.raises(ValueError, match=message):
            keras_sb.SelectiveBackpropModel(*mlp(), **kwargs)

    def test_numpy_numbers_are_accepted(self, tmp_path):
        """Options from NumPy (a hyperparameter grid, say) work, and the
        model's config stays JSON."""
        model = keras_sb.SelectiveBackpropModel(
            *mlp(), beta=np.float32(2.0), history_size=np.int64(100),
            backprop_batch_size=np.int64(32), start=np.float64(0.25),
            end=np.int64(1000), seed=np.int64(3))
        config = json.loads(model.to_json())["config"]
        assert (config["history_size"], config["backprop_batch_size"],
                config["start"], config["end"], config["seed"]) == (
                    100, 32, 0.25, 1000, 3)
        assert config["strategy"]["config"]["beta"] == 2.0
        target = keras_sb.SelectiveBackpropModel(
            *mlp(), target_fraction=np.float32(0.25))
        json.loads(target.to_json())
        callback = keras_sb.StaleSelection(np.int64(2), num_examples=np.int64(50))
        assert json.dumps(callback.get_config())
