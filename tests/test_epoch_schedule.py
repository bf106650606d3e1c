"""`keras_sb.EpochSchedule`: learning rate schedules that follow epochs of
data, and the warning about schedules of optimizer steps."""

import warnings

import keras
import numpy as np
import pytest
from conftest import mlp
from keras import ops

import keras_sb
from keras_sb import epoch_schedule

EPOCHS = 3
BATCH_SIZE = 50
NUM_EXAMPLES = 400
STEPS = NUM_EXAMPLES // BATCH_SIZE  # Batches (plain steps) per epoch.
TF = keras.backend.backend() == "tensorflow"
# XLA on TensorFlow too; JAX always compiles.
JIT_COMPILE = [False, True] if TF else ["auto"]


@pytest.fixture
def data(digits):
    x, y, x_test, y_test = digits
    return x[:NUM_EXAMPLES], y[:NUM_EXAMPLES], x_test[:100], y_test[:100]


def cosine():
    return keras.optimizers.schedules.CosineDecay(
        0.1, decay_steps=EPOCHS * STEPS)


def compiled(model, learning_rate, jit_compile="auto"):
    model.compile(optimizer=keras.optimizers.SGD(learning_rate),
                  loss="sparse_categorical_crossentropy",
                  jit_compile=jit_compile)
    return model


def selective(**options):
    options.setdefault("beta", 2.0)
    return keras_sb.SelectiveBackpropModel(*mlp(), seed=0, **options)


def plain():
    keras.utils.set_random_seed(0)
    return keras.Model(*mlp())


def learning_rate(model):
    return float(ops.convert_to_numpy(model.optimizer.learning_rate))


class LearningRateRecorder(keras.callbacks.Callback):
    """Records `model.optimizer.learning_rate` at each epoch end."""

    def __init__(self):
        super().__init__()
        self.rates = []

    def on_epoch_end(self, epoch, logs=None):
        self.rates.append(learning_rate(self.model))


def fit_quietly(model, x, y, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.fit(x, y, batch_size=BATCH_SIZE, verbose=0, **kwargs)


class TestSelectiveTraining:
    @pytest.mark.parametrize("jit_compile", JIT_COMPILE)
    def test_decays_over_the_planned_epochs(self, data, jit_compile):
        """The bare schedule counts the few backward steps of selection and
        ends far from 0; wrapped, it ends at 0 after the planned epochs."""
        x, y, _, _ = data
        wrapped = compiled(
            selective(start=0),
            keras_sb.EpochSchedule(cosine(), STEPS), jit_compile)
        fit_quietly(wrapped, x, y, epochs=EPOCHS)
        assert learning_rate(wrapped) == pytest.approx(0.0, abs=1e-6)

        bare = compiled(selective(start=0), cosine(), jit_compile)
        fit_quietly(bare, x, y, epochs=EPOCHS)
        backward_steps = int(ops.convert_to_numpy(bare.optimizer.iterations))
        assert backward_steps < 0.7 * EPOCHS * STEPS
        assert learning_rate(bare) > 0.02
        # The wrapped model trained as selectively.
        assert int(ops.convert_to_numpy(
            wrapped.optimizer.iterations)) < 0.7 * EPOCHS * STEPS

    def test_learning_rate_at_epoch_ends(self, data):
        """Read outside the train step (by callbacks), the learning rate is
        the schedule's at the epochs done."""
        x, y, _, _ = data
        schedule = keras_sb.EpochSchedule(cosine(), STEPS)
        model = compiled(selective(), schedule)
        recorder = LearningRateRecorder()
        fit_quietly(model, x, y, epochs=EPOCHS - 1, callbacks=[recorder])
        expected = [float(cosine()((epoch + 1) * STEPS))
                    for epoch in range(EPOCHS - 1)]
        np.testing.assert_allclose(recorder.rates, expected, atol=1e-6)
        # The step's traced progress does not outlive the step.
        assert schedule._progress is None
        model.train_on_batch(x[:BATCH_SIZE], y[:BATCH_SIZE])
        assert schedule._progress is None
        assert learning_rate(model) == pytest.approx(expected[-1], abs=1e-6)
        # A second `fit` goes on from the epochs done.
        fit_quietly(model, x, y, epochs=1)
        assert learning_rate(model) == pytest.approx(0.0, abs=1e-6)

    @pytest.mark.parametrize("jit_compile", JIT_COMPILE)
    def test_follows_the_fraction_of_each_epoch(self, data, jit_compile):
        """Selection off, every batch is one backward step: the wrapped
        schedule, at the epochs done (batch by batch), gives the learning
        rates of the bare schedule in a plain model, step by step."""
        x, y, x_test, y_test = data
        # Validation resets the epoch's counters before the epoch's end.
        kwargs = dict(epochs=EPOCHS, shuffle=False,
                      validation_data=(x_test, y_test))
        keras.utils.set_random_seed(0)
        reference = compiled(keras.Model(*mlp()), cosine(), jit_compile)
        keras.utils.set_random_seed(0)
        model = compiled(
            keras_sb.SelectiveBackpropModel(*mlp(), start="100ep"),
            keras_sb.EpochSchedule(cosine(), STEPS), jit_compile)
        model.set_weights(reference.get_weights())
        fit_quietly(reference, x, y, **kwargs)
        fit_quietly(model, x, y, **kwargs)
        assert int(ops.convert_to_numpy(model.optimizer.iterations)) == (
            EPOCHS * STEPS)
        for trained, expected in zip(model.get_weights(),
                                     reference.get_weights()):
            np.testing.assert_allclose(trained, expected, atol=1e-5)

    def test_frozen_within_an_epoch_would_differ(self, data, monkeypatch):
        """The check above can fail: a schedule that moves at epoch ends
        only (the epoch's size unknown) trains differently."""
        x, y, _, _ = data
        keras.utils.set_random_seed(0)
        reference = compiled(keras.Model(*mlp()), cosine())
        keras.utils.set_random_seed(0)
        model = compiled(
            keras_sb.SelectiveBackpropModel(*mlp(), start="100ep"),
            keras_sb.EpochSchedule(cosine(), STEPS))
        model.set_weights(reference.get_weights())
        monkeypatch.setattr(keras_sb.fit_session.FitSession, "epoch_size",
                            lambda self, steps=None: 0)
        fit_quietly(reference, x, y, epochs=2, shuffle=False)
        fit_quietly(model, x, y, epochs=2, shuffle=False)
        difference = max(
            np.abs(trained - expected).max() for trained, expected in zip(
                model.get_weights(), reference.get_weights()))
        assert difference > 1e-3

    def test_epoch_size_of_data_of_unknown_length(self, data):
        """Unknown in the first epoch (the learning rate moves at its end),
        the size is the examples the previous epoch went over, also where
        the validation at each epoch end resets the epoch's counters."""
        import tensorflow as tf

        x, y, x_test, y_test = data
        dataset = tf.data.Dataset.from_tensor_slices((x, y)).filter(
            lambda *_: True).batch(BATCH_SIZE)
        sizes = []

        class SizeRecorder(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                sizes.append(int(ops.convert_to_numpy(
                    self.model.selection_state.epoch_size.value)))

        model = compiled(selective(),
                         keras_sb.EpochSchedule(cosine(), STEPS))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(dataset, epochs=EPOCHS, verbose=0,
                      validation_data=(x_test, y_test),
                      callbacks=[SizeRecorder()])
        assert sizes == [0] + [NUM_EXAMPLES] * (EPOCHS - 1)
        assert int(ops.convert_to_numpy(
            model.selection_state.epoch_size.value)) == 0


class TestEpochProgress:
    @pytest.mark.parametrize("completed, scored, size, expected", [
        (2, 100, 400, 2.25),
        (2, 100, 0, 2.0),
        (0, 0, 400, 0.0),
        (1, 450, 400, 2.0),
    ])
    def test_progress(self, completed, scored, size, expected):
        state = keras_sb.SelectionState(history_size=8, seed=0)
        state.epochs_completed.assign(completed)
        state.epoch_scored.assign(scored)
        state.epoch_size.assign(size)
        progress = epoch_schedule.epoch_progress(state)
        assert keras.backend.standardize_dtype(progress.dtype) == "float32"
        assert float(progress) == pytest.approx(expected)

    def test_unbound_schedule_follows_the_step(self):
        schedule = keras_sb.EpochSchedule(cosine(), STEPS)
        for step in (0, 5, STEPS * EPOCHS):
            assert float(schedule(step)) == pytest.approx(
                float(cosine()(step)))


class TestSerialization:
    def test_round_trip(self):
        schedule = keras_sb.EpochSchedule(cosine(), steps_per_epoch=STEPS)
        config = keras.saving.serialize_keras_object(schedule)
        restored = keras.saving.deserialize_keras_object(config)
        assert isinstance(restored, keras_sb.EpochSchedule)
        assert isinstance(restored.schedule,
                          keras.optimizers.schedules.CosineDecay)
        assert restored.steps_per_epoch == STEPS
        assert restored.get_config() == schedule.get_config()
        for step in (0, 7, 20):
            assert float(restored(step)) == pytest.approx(
                float(schedule(step)))

    def test_saved_model(self, data, tmp_path):
        x, y, _, _ = data
        model = compiled(selective(),
                         keras_sb.EpochSchedule(cosine(), STEPS))
        fit_quietly(model, x, y, epochs=1)
        path = str(tmp_path / "model.keras")
        model.save(path)
        loaded = keras.saving.load_model(path)
        schedule = epoch_schedule.epoch_schedule_of(loaded)
        assert isinstance(schedule, keras_sb.EpochSchedule)
        original = epoch_schedule.epoch_schedule_of(model)
        assert schedule.get_config() == original.get_config()
        # Training goes on from the saved epochs done.
        fit_quietly(loaded, x, y, epochs=EPOCHS - 1)
        assert learning_rate(loaded) == pytest.approx(0.0, abs=1e-6)

    def test_rejects_what_it_cannot_wrap(self):
        with pytest.raises(TypeError, match="LearningRateSchedule"):
            keras_sb.EpochSchedule(0.1, STEPS)
        with pytest.raises(ValueError, match="already"):
            keras_sb.EpochSchedule(keras_sb.EpochSchedule(cosine(), 2), 2)
        with pytest.raises(ValueError, match="steps_per_epoch"):
            keras_sb.EpochSchedule(cosine(), 0)


class TestWarning:
    def test_warns_at_the_fit_call(self, data):
        x, y, _, _ = data
        model = compiled(selective(), cosine())
        with pytest.warns(UserWarning, match="EpochSchedule") as record:
            model.fit(x, y, batch_size=BATCH_SIZE, epochs=0, verbose=0)
        warning = next(w for w in record if "EpochSchedule" in str(w.message))
        assert warning.filename == __file__
        assert "CosineDecay" in str(warning.message)
        # Once per model.
        with warnings.catch_warnings(record=True) as again:
            warnings.simplefilter("always")
            model.fit(x, y, batch_size=BATCH_SIZE, epochs=0, verbose=0)
        assert not [w for w in again if "EpochSchedule" in str(w.message)]

    @pytest.mark.parametrize("make_learning_rate", [
        lambda: keras_sb.EpochSchedule(cosine(), STEPS),
        lambda: 0.05,
    ])
    def test_quiet_for_epoch_schedules_and_constants(self, data,
                                                     make_learning_rate):
        x, y, _, _ = data
        model = compiled(selective(), make_learning_rate())
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            model.fit(x, y, batch_size=BATCH_SIZE, epochs=0, verbose=0)
        assert not [w for w in record if "EpochSchedule" in str(w.message)]


class TestPlainModel:
    def test_trains_as_the_bare_schedule(self, data):
        x, y, _, _ = data
        bare = compiled(plain(), cosine())
        wrapped = compiled(plain(), keras_sb.EpochSchedule(cosine(), STEPS))
        fit_quietly(bare, x, y, epochs=2, shuffle=False)
        fit_quietly(wrapped, x, y, epochs=2, shuffle=False)
        for trained, expected in zip(wrapped.get_weights(),
                                     bare.get_weights()):
            np.testing.assert_array_equal(trained, expected)
        assert learning_rate(wrapped) == learning_rate(bare)

