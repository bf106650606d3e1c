"""What `fit` shows: the callbacks of `keras_sb.callbacks`, and `summary`."""

import numpy as np
from conftest import mlp

import keras
import keras_sb


def _fit(model, verbose, epochs=2):
    x = np.random.default_rng(0).normal(size=(64, 64)).astype("float32")
    y = np.zeros(64, "int32")
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    return model.fit(x, y, batch_size=32, epochs=epochs, verbose=verbose)


def test_backprops_is_a_whole_number_in_history_and_progress_bar(capsys):
    model = keras_sb.SelectiveBackpropModel(*mlp(), start=0, seed=1)
    history = _fit(model, verbose=1)
    backprops = history.history["backprops"]
    assert all(type(value) is int for value in backprops)
    assert backprops[-1] == int(model.selection_state.backprops.numpy()) > 0
    shown = capsys.readouterr().out
    assert f"backprops: {backprops[-1]} " in shown
    assert f"backprops: {backprops[-1]}.0000" not in shown


def test_one_line_per_epoch_shows_whole_backprops(capsys):
    model = keras_sb.SelectiveBackpropModel(*mlp(), start=0, seed=1)
    history = _fit(model, verbose=2)
    shown = capsys.readouterr().out
    assert f"backprops: {history.history['backprops'][-1]} -" in shown


class Net(keras_sb.SelectiveBackpropModel):
    def __init__(self, **kwargs):
        super().__init__(beta=2.0, **kwargs)
        self.out = keras.layers.Dense(10, activation="softmax")

    def call(self, x, training=None):
        return self.out(x)


def test_summary_shows_the_network_not_the_selection_state(capsys):
    model = Net()
    model(np.zeros((2, 64), "float32"))
    model.summary()
    shown = capsys.readouterr().out
    assert "SelectionState" not in shown and "selection_state" not in shown
    assert "Dense" in shown
    # The state is still the model's, and saved with it.
    assert any(layer is model.selection_state for layer in model.layers)
    assert any(variable is model.selection_state.backprops
               for variable in model.variables)
