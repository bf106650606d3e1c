"""Building a `SelectiveBackpropModel`: functional, subclassed, converted
with `from_model` (`keras_sb.functional`), and cloned."""

import os
import warnings

import keras
import numpy as np
import pytest
from conftest import compile_model
from conftest import mlp
from keras import ops

import keras_sb


def numpy(x):
    return ops.convert_to_numpy(x)


class TestBuilding:
    def test_clone_model_keeps_the_selection_options(self):
        """`keras.models.clone_model` gives new layers and the same options
        (Keras calls a functional class with inputs and outputs only)."""

        class Net(keras_sb.FunctionalSelectiveBackpropModel):
            pass

        options = {"strategy": keras_sb.strategies.UniformSubset(0.25),
                   "history_size": 512, "backprop_batch_size": 16,
                   "start": 0, "end": 100, "seed": 7}
        for cls in (keras_sb.SelectiveBackpropModel, Net):
            model = cls(*mlp(), **options)
            clone = keras.models.clone_model(model)
            assert type(clone) is type(model)
            config, cloned = model.get_config(), clone.get_config()
            assert {k: cloned[k] for k in options} == {
                k: config[k] for k in options}
            assert isinstance(clone.strategy, keras_sb.strategies.UniformSubset)
            assert clone.strategy is not model.strategy
            assert not {id(v) for v in clone.weights} & {
                id(v) for v in model.weights}
        paper = keras_sb.SelectiveBackpropModel(*mlp(), beta=1.0, start=0)
        assert keras.models.clone_model(paper).strategy.get_config() == {
            "beta": 1.0, "min_probability": 0.0}

        class FixedBeta(keras_sb.FunctionalSelectiveBackpropModel):
            def __init__(self, inputs, outputs, name=None, **kwargs):
                super().__init__(inputs, outputs, name=name, beta=3.0, **kwargs)

        model = FixedBeta(*mlp(), seed=5, start="2ep")
        clone = keras.models.clone_model(model)
        assert clone.strategy.get_config() == {"beta": 3.0, "min_probability": 0.0}
        assert (clone.get_config()["seed"], clone.start) == (5, "2ep")
        # A new model in the user's code still gets its own (default) options.
        assert keras_sb.SelectiveBackpropModel(*mlp()).start == "1ep"

    def test_from_sequential(self, digits):
        x, y, _, _ = digits
        sequential = keras.Sequential([keras.Input((64,)),
                                       keras.layers.Dense(10, activation="softmax")])
        model = compile_model(keras_sb.SelectiveBackpropModel.from_model(
            sequential, beta=1.0, start=0))
        assert isinstance(model, keras_sb.FunctionalSelectiveBackpropModel)
        model.fit(x, y, batch_size=100, epochs=1, verbose=0)
        # Layers are shared: the Sequential model was trained too.
        np.testing.assert_array_equal(sequential.predict(x[:5], verbose=0),
                                      model.predict(x[:5], verbose=0))

    def test_from_model_takes_a_name(self):
        functional = keras.Model(*mlp(), name="base")
        sequential = keras.Sequential([keras.Input((64,)), keras.layers.Dense(10)],
                                      name="base")
        for base in (functional, sequential):
            assert keras_sb.SelectiveBackpropModel.from_model(base).name == "base"
            model = keras_sb.SelectiveBackpropModel.from_model(base, name="sb")
            assert model.name == "sb"

    def test_from_subclassed_model_and_saving(self, digits, tmp_path):
        x, y, _, _ = digits

        @keras.saving.register_keras_serializable(package="keras_sb_tests")
        class Classifier(keras.Model):
            def __init__(self, **kwargs):
                super().__init__(**kwargs)
                self.hidden = keras.layers.Dense(16, activation="relu")
                self.out = keras.layers.Dense(10, activation="softmax")

            def call(self, inputs):
                return self.out(self.hidden(inputs))

        model = compile_model(keras_sb.SelectiveBackpropModel.from_model(
            Classifier(), beta=1.0, start=0))
        assert isinstance(model, keras_sb.WrappedModel)
        model.fit(x, y, batch_size=100, epochs=1, verbose=0)
        path = os.path.join(tmp_path, "wrapped.keras")
        model.save(path)
        loaded = keras.models.load_model(path)
        np.testing.assert_allclose(loaded.predict(x[:5], verbose=0),
                                   model.predict(x[:5], verbose=0), rtol=1e-6)

    def test_from_keras_application(self):
        base = keras.applications.MobileNetV3Small(
            input_shape=(32, 32, 3), weights=None, classes=4,
            include_preprocessing=False)
        model = keras_sb.SelectiveBackpropModel.from_model(base, beta=2.0, start=0)
        compile_model(model)
        x = np.random.default_rng(0).random((16, 32, 32, 3)).astype("float32")
        logs = model.train_on_batch(x, np.arange(16) % 4, return_dict=True)
        assert np.isfinite(logs["loss"])
        assert len(model.trainable_weights) == len(base.trainable_weights)

    def test_subclass_with_own_call(self, digits):
        x, y, _, _ = digits

        class Net(keras_sb.SelectiveBackpropModel):
            def __init__(self, **kwargs):
                super().__init__(**kwargs)
                self.hidden = keras.layers.Dense(16, activation="relu")
                self.dropout = keras.layers.Dropout(0.2)
                self.out = keras.layers.Dense(10, activation="softmax")

            def call(self, inputs, training=False):
                return self.out(self.dropout(self.hidden(inputs), training=training))

        model = compile_model(Net(beta=1.0, start=0, seed=0))
        history = model.fit(x, y, batch_size=100, epochs=2, verbose=0)
        assert history.history["backprops"][-1] > 0
        assert isinstance(keras_sb.SelectiveBackpropModel(*mlp()),
                          keras_sb.FunctionalSelectiveBackpropModel)

    def test_train_step_override_that_bypasses_selection_warns(self, digits):
        """A subclass whose `train_step` skips `super().train_step` trains
        every example as plain Keras: `fit` says so; one that calls it
        selects, without the warning."""
        x, y, _, _ = digits

        class Bypass(keras_sb.FunctionalSelectiveBackpropModel):
            def train_step(self, *args):
                return keras.Model.train_step(self, *args)

        class Wraps(keras_sb.FunctionalSelectiveBackpropModel):
            def train_step(self, *args):
                return super().train_step(*args)

        model = compile_model(Bypass(*mlp(), beta=2.0, start=0, seed=0))
        with pytest.warns(UserWarning, match="overrides `train_step` without"):
            model.fit(x, y, batch_size=100, epochs=1, verbose=0)
        assert model.selection_state.counters()["scored_batches"] == 0
        model = compile_model(Wraps(*mlp(), beta=2.0, start=0, seed=0),
                              learning_rate=0.0)
        with warnings.catch_warnings():
            warnings.filterwarnings("error", message=".*overrides `train_step`")
            model.fit(x, y, batch_size=100, epochs=2, verbose=0)
        counters = model.selection_state.counters()
        # Losses that do not drift (learning rate 0): beta = 2 selects 1/3
        # of 2800; sigma = sqrt(2800 (1/3 - 1/5)) = 19.3 examples, 5 sigma.
        assert abs(counters["selected_total"] - 2800 / 3) < 97

    def test_subclasses_save_and_load(self, digits, tmp_path):
        """A subclass that fixes its selection options in `__init__` (the
        README's) and one that takes them as arguments both load from a
        `.keras` file with their options, weights and selection state."""
        x, y, _, _ = digits

        class Fixed(keras_sb.SelectiveBackpropModel):
            def __init__(self, **kwargs):
                super().__init__(beta=2.0, start=0, **kwargs)
                self.hidden = keras.layers.Dense(16, activation="relu")
                self.out = keras.layers.Dense(10, activation="softmax")

            def call(self, inputs, training=None):
                return self.out(self.hidden(inputs))

        class Open(keras_sb.SelectiveBackpropModel):
            def __init__(self, units=16, **kwargs):
                super().__init__(**kwargs)
                self.units = units
                self.hidden = keras.layers.Dense(units, activation="relu")
                self.out = keras.layers.Dense(10, activation="softmax")

            def call(self, inputs, training=None):
                return self.out(self.hidden(inputs))

            def get_config(self):
                return {**super().get_config(), "units": self.units}

        custom_objects = {"Fixed": Fixed, "Open": Open}
        for model in (Fixed(), Open(units=8, beta=1.0, history_size=500, start=0)):
            compile_model(model).fit(x, y, batch_size=100, epochs=1, verbose=0)
            path = os.path.join(tmp_path, f"{model.name}.keras")
            model.save(path)
            loaded = keras.models.load_model(path, custom_objects=custom_objects)
            assert type(loaded) is type(model)
            assert loaded.get_config() == model.get_config()
            assert (loaded.selection_state.counters()
                    == model.selection_state.counters())
            np.testing.assert_allclose(numpy(loaded.predict(x, verbose=0)),
                                       numpy(model.predict(x, verbose=0)))

    def test_subclass_given_inputs_and_outputs_gets_a_clear_error(self):
        class Net(keras_sb.SelectiveBackpropModel):
            pass

        with pytest.raises(TypeError, match="FunctionalSelectiveBackpropModel"):
            Net(*mlp())
        # ... and SelectiveBackpropModel itself is left intact.
        assert keras_sb.SelectiveBackpropModel.__bases__ == (
            keras_sb.backend.Trainer, keras_sb.trainer.SelectiveTrainer,
            keras.Model)
