"""Stale selection: stored scores stay with their examples, stale epochs run
no selection forward pass, and bad ids or tables fail loudly."""

import os

import keras
import numpy as np
import pytest
from conftest import TrainingCounter
from conftest import compile_model
from conftest import mlp
from keras import ops

import keras_sb
from keras_sb import stale

tf = pytest.importorskip("tensorflow")


def numpy(x):
    return ops.convert_to_numpy(x)


@keras.saving.register_keras_serializable(package="keras_sb_tests")
class InferenceCounter(keras.layers.Layer):
    """Identity; counts the examples of inference-mode forward passes."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.examples = self.add_weight(shape=(), initializer="zeros",
                                        trainable=False, name="examples")

    def call(self, inputs, training=None):
        if not training:
            self.examples.assign(self.examples + ops.cast(ops.shape(inputs)[0], "float32"))
        return inputs


def frozen_regression(num_examples, features=4):
    """A linear regression with zero weights and inputs {"x", "id"}.

    Trained with learning rate 0 and the mean squared error, the loss of an
    example is exactly `y ** 2`, whatever its (augmented) features: each id
    has a known loss. Counts training passes per id and inference examples.
    """
    x = keras.Input((features,), name="x")
    ids = keras.Input((), dtype="int32", name="id")
    training_counter = TrainingCounter(num_examples, name="counter")
    inference_counter = InferenceCounter(name="inference_counter")
    hidden = inference_counter(training_counter(x, ids))
    outputs = keras.layers.Dense(1, kernel_initializer="zeros")(hidden)
    return {"x": x, "id": ids}, outputs, training_counter, inference_counter


def regression_data(num_examples, features=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(num_examples, features)).astype("float32")
    # Targets in a random order, so a loss says nothing about an id.
    y = rng.permutation(np.linspace(0.1, 3.0, num_examples)).astype("float32")
    return x, y


def id_pipeline(x, y, batch_size, seed=0):
    """with_example_ids, then shuffle and a random augmentation, as users do."""
    ids = np.arange(len(x), dtype="int32")
    dataset = tf.data.Dataset.from_tensor_slices(({"x": x, "id": ids}, y))

    def augment(features, target):
        noisy = features["x"] + tf.random.normal(tf.shape(features["x"]))
        return {"x": noisy, "id": features["id"]}, target

    return (keras_sb.data.with_example_ids(dataset)
            .shuffle(len(x), seed=seed)
            .map(keras_sb.data.keep_example_ids(augment))
            .batch(batch_size))


def pending_ids(model):
    state = model.selection_state
    size = int(numpy(state.queue_size.value))
    return numpy(state.queue[-1].value)[:size]


def frozen_model(num_examples, beta=1.0, **options):
    inputs, outputs, training_counter, inference_counter = frozen_regression(num_examples)
    model = keras_sb.SelectiveBackpropModel(
        inputs, outputs, beta=beta, start=0,
        history_size=num_examples, **options)
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")
    return model, training_counter, inference_counter


class TestFunctions:
    def test_record_scores_writes_the_rows_of_the_ids(self):
        table = (np.full(5, np.nan, "float32"), np.ones(5, "float32"),
                 np.full(5, -1, "int32"))
        ids = np.array([3, 0, 7, 1], "int32")  # 7 is outside the table.
        losses = np.array([1.0, 2.0, 3.0, 4.0], "float32")
        mask = np.array([True, True, True, False])
        new = [numpy(c) for c in stale.record_scores(
            table, ids, losses, losses / 10, 4, mask=mask)]
        np.testing.assert_array_equal(new[0], [2.0, np.nan, np.nan, 1.0, np.nan])
        np.testing.assert_allclose(new[1], [0.2, 1.0, 1.0, 0.1, 1.0])
        np.testing.assert_array_equal(new[2], [4, -1, -1, 4, -1])

    def test_stored_probabilities(self):
        table = (np.zeros(3, "float32"), np.array([0.1, 0.5, 0.9], "float32"),
                 np.zeros(3, "int32"))
        probabilities = numpy(stale.stored_probabilities(
            table, np.array([2, 0, 3, -1], "int32")))
        np.testing.assert_allclose(probabilities, [0.9, 0.1, 1.0, 1.0])

    @pytest.mark.parametrize("staleness,expected", [
        (1, [False] * 6),
        (2, [False, True, False, True, False, True]),
        (3, [False, True, True, False, True, True]),
    ])
    def test_one_fresh_epoch_in_staleness(self, staleness, expected):
        last_fresh, pattern = -1, []
        for epoch in range(6):
            is_stale = stale.is_stale_epoch(epoch, last_fresh, staleness)
            if not is_stale:
                last_fresh = epoch
            pattern.append(is_stale)
        assert pattern == expected

    @pytest.mark.parametrize("options,message", [
        ({"staleness": 0}, "Received: staleness=0"),
        ({"staleness": 2.5}, "Received: staleness=2.5"),
        ({"num_examples": -3}, "Received: num_examples=-3"),
    ])
    def test_bad_arguments(self, options, message):
        with pytest.raises(ValueError, match=message):
            keras_sb.StaleSelection(**options)


class TestStaleEpochs:
    def test_fresh_epoch_stores_each_examples_own_loss(self):
        """Through shuffling and augmentation, row i holds example i's loss."""
        x, y = regression_data(600)
        model, _, _ = frozen_model(len(x), seed=0)
        model.fit(id_pipeline(x, y, 50), epochs=1, verbose=0,
                  callbacks=[keras_sb.StaleSelection(staleness=2)])
        losses, probabilities, epochs = (numpy(c.value) for c in
                                         model.selection_state.score_table)
        np.testing.assert_allclose(losses, y ** 2, rtol=1e-5)
        assert (epochs == 0).all()
        # Larger losses were given larger probabilities (beta = 1).
        assert np.corrcoef(losses, probabilities)[0, 1] > 0.9

    def test_stale_epoch_keeps_each_id_with_its_stored_probability(self):
        """A statistical test of alignment: in the stale epoch, the examples
        trained on are drawn with the probability stored for their own id."""
        x, y = regression_data(3000)
        model, counter, inference = frozen_model(len(x), seed=1)
        callback = keras_sb.StaleSelection(staleness=100)
        model.fit(id_pipeline(x, y, 100, seed=1), epochs=1, verbose=0,
                  callbacks=[callback])
        stored = numpy(model.selection_state.score_table[1].value).copy()
        counts = numpy(counter.counts.value).copy()
        pending_before = pending_ids(model)
        model.fit(id_pipeline(x, y, 100, seed=2), epochs=1, verbose=0,
                  callbacks=[callback])
        trained = numpy(counter.counts.value) - counts
        trained[pending_before] -= 1  # Selected in the fresh epoch.
        trained[pending_ids(model)] += 1  # Selected, waiting in the queue.
        assert set(np.unique(trained)) <= {0.0, 1.0}
        kept = trained.astype(bool)

        # Overall: the sum of Bernoulli(p_i) draws.
        z = (kept.sum() - stored.sum()) / np.sqrt(np.sum(stored * (1 - stored)))
        assert abs(z) < 4, z
        # Per probability band: the rate follows each id's own probability
        # (a draw from another example's probability would flatten these).
        for low, high in [(0.0, 0.2), (0.2, 0.4), (0.4, 0.6), (0.6, 0.8), (0.8, 1.01)]:
            band = (stored >= low) & (stored < high)
            expected = stored[band].mean()
            spread = np.sqrt(np.sum(stored[band] * (1 - stored[band]))) / band.sum()
            assert abs(kept[band].mean() - expected) < 4 * spread + 1e-3, (low, high)
        assert np.corrcoef(kept, stored)[0, 1] > 0.4

    def test_stale_epochs_run_no_selection_forward_pass(self):
        x, y = regression_data(400)
        model, counter, inference = frozen_model(len(x), seed=2,
                                                 backprop_batch_size=20)
        seen, backprops = [], []

        class Record(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                seen.append(float(numpy(inference.examples.value)))
                backprops.append(logs["backprops"])

        history = model.fit(id_pipeline(x, y, 40), epochs=5, verbose=0,
                            callbacks=[keras_sb.StaleSelection(staleness=3), Record()])
        inference_per_epoch = np.diff([0.0] + seen)
        # Fresh, stale, stale, fresh, stale.
        np.testing.assert_array_equal(inference_per_epoch, [400, 0, 0, 400, 0])
        # Stale epochs still train, on the fraction of the fresh ones
        # (beta = 1: 1/2): the selected examples' losses do not bias the
        # percentiles of later stale epochs.
        trained = np.diff([0.0] + backprops)
        assert (trained[[1, 2, 4]] > 0).all()
        fractions = np.array(history.history["selected_fraction"])
        np.testing.assert_allclose(fractions, 0.5, atol=0.1)
        assert np.isnan(history.history.get("mse", [np.nan])).all()
        assert np.isfinite(history.history["loss"]).all()
        # Every training pass is a counted backprop.
        assert numpy(counter.counts.value).sum() == backprops[-1]
        assert model.selection_state.counters()["last_fresh_epoch"] == 3

    def test_stale_epoch_refreshes_the_scores_it_trains_on(self):
        x, y = regression_data(400)
        model, _, _ = frozen_model(len(x), seed=3, backprop_batch_size=10)
        callback = keras_sb.StaleSelection(staleness=2)
        model.fit(id_pipeline(x, y, 40), epochs=1, verbose=0, callbacks=[callback])
        fresh_probabilities = numpy(model.selection_state.score_table[1].value).copy()
        model.fit(id_pipeline(x, y, 40, seed=1), epochs=1, verbose=0,
                  callbacks=[callback])
        losses, probabilities, epochs = (
            numpy(c.value) for c in model.selection_state.score_table)
        refreshed = epochs == 1
        assert 0 < refreshed.sum() < len(x)
        # Training-mode losses of the same frozen model: still y ** 2.
        np.testing.assert_allclose(losses[refreshed], y[refreshed] ** 2, rtol=1e-5)
        # The biggest losers were the ones refreshed.
        assert y[refreshed].mean() > y[~refreshed].mean()
        # The probabilities stay those of the fresh epoch.
        np.testing.assert_array_equal(probabilities, fresh_probabilities)

    def test_learns_with_xla(self, digits):
        x, y, x_test, y_test = digits
        model = compile_model(keras_sb.SelectiveBackpropModel(
            *mlp(), beta=1.0, seed=0), learning_rate=0.2, jit_compile=True)
        train = keras_sb.data.with_example_ids(
            tf.data.Dataset.from_tensor_slices((x, y))).shuffle(1400).batch(100)
        history = model.fit(train, epochs=8, verbose=0, validation_data=(x_test, y_test),
                            callbacks=[keras_sb.StaleSelection(staleness=2)])
        assert np.isnan(history.history["accuracy"][2])  # Epoch 3 is stale.
        assert history.history["val_accuracy"][-1] > 0.75  # Plain SB: 0.80.
        # Evaluation and prediction take data with or without ids.
        _, accuracy = model.evaluate(train, verbose=0)
        assert accuracy > 0.75
        assert model.predict(train, verbose=0).shape == (1400, 10)


class TestErrors:
    def test_data_without_ids(self, digits):
        x, y, _, _ = digits
        model = compile_model(keras_sb.SelectiveBackpropModel(*mlp()))
        dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(100)
        with pytest.raises(ValueError, match="carry stable ids"):
            model.fit(dataset, callbacks=[keras_sb.StaleSelection()], verbose=0)

    def test_ids_outside_the_table(self, digits):
        x, y, _, _ = digits
        model = compile_model(keras_sb.SelectiveBackpropModel(*mlp()))
        ids = np.arange(len(x)) + 500  # Numbered from 500, not 0.
        train = tf.data.Dataset.from_tensor_slices(((x, y), ids)).map(
            lambda data, i: {"data": data, "example_id": i}).batch(100)
        with pytest.raises(ValueError, match="outside the score table"):
            model.fit(train, verbose=0, callbacks=[
                keras_sb.StaleSelection(num_examples=len(x))])

    def test_fewer_examples_than_the_table(self, digits):
        x, y, _, _ = digits
        model = compile_model(keras_sb.SelectiveBackpropModel(*mlp()))
        train = keras_sb.data.with_example_ids(
            tf.data.Dataset.from_tensor_slices((x, y))).filter(
                lambda element: element["example_id"] < 1000).batch(100)
        with pytest.raises(ValueError, match="400 of the 1400 rows"):
            model.fit(train, verbose=0, callbacks=[keras_sb.StaleSelection()])

    def test_other_dataset_than_the_table(self, digits):
        x, y, _, _ = digits
        model = compile_model(keras_sb.SelectiveBackpropModel(*mlp()))
        model.fit(keras_sb.data.training_pipeline(
            tf.data.Dataset.from_tensor_slices((x, y)), 100, augment=False,
            example_ids=True), verbose=0, callbacks=[keras_sb.StaleSelection()])
        smaller = keras_sb.data.training_pipeline(
            tf.data.Dataset.from_tensor_slices((x[:700], y[:700])), 100,
            augment=False, example_ids=True)
        with pytest.raises(ValueError, match="1400 rows, but the training data have 700"):
            model.fit(smaller, verbose=0, callbacks=[keras_sb.StaleSelection()])

    def test_plain_keras_model(self, digits):
        x, y, _, _ = digits
        model = compile_model(keras.Model(*mlp()))
        with pytest.raises(ValueError, match="callback for `fit` of a keras_sb"):
            model.fit(x, y, verbose=0, callbacks=[keras_sb.StaleSelection()])

    def test_unknown_size(self, digits):
        x, y, _, _ = digits
        model = compile_model(keras_sb.SelectiveBackpropModel(*mlp()))
        dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(100).map(
            lambda a, b: {"data": (a, b), "example_id": tf.zeros_like(b)})
        with pytest.raises(ValueError, match="num_examples="):
            model.fit(dataset, verbose=0, callbacks=[keras_sb.StaleSelection()])


class TestSaving:
    def test_table_and_cycle_survive_save_and_load(self, digits, tmp_path):
        x, y, _, _ = digits
        train = keras_sb.data.training_pipeline(
            tf.data.Dataset.from_tensor_slices((x, y)), 100, augment=False,
            example_ids=True)
        model = compile_model(keras_sb.SelectiveBackpropModel(*mlp(), beta=1.0))
        model.fit(train, epochs=2, verbose=0, callbacks=[keras_sb.StaleSelection(3)])
        path = os.path.join(tmp_path, "stale.keras")
        model.save(path)
        loaded = keras.models.load_model(path)
        for original, restored in zip(model.selection_state.score_table,
                                      loaded.selection_state.score_table):
            np.testing.assert_array_equal(numpy(original.value), numpy(restored.value))
        # Epoch 1 (the first selecting one) was fresh: 2 and 3 are stale.
        history = loaded.fit(train, epochs=3, verbose=0,
                             callbacks=[keras_sb.StaleSelection(3)])
        assert list(np.isnan(history.history["accuracy"])) == [True, True, False]

    def test_state_saved_before_stale_selection_still_loads(self):
        """Models saved by the version without stale selection lack its
        counters; they load with the counters' initial values."""
        state = keras_sb.SelectionState(16)
        store = {name: numpy(variable.value)
                 for name, variable in state._named_variables().items()
                 if name not in ("last_fresh_epoch", "invalid_example_ids")}
        store["scored_batches"] = np.array(7, "int32")
        loaded = keras_sb.SelectionState(16)
        loaded.load_own_variables(store)
        counters = loaded.counters()
        assert counters["scored_batches"] == 7
        assert counters["last_fresh_epoch"] == -1 and loaded.score_table is None
        del store["backprops"]
        with pytest.raises(ValueError, match="no 'backprops'"):
            loaded.load_own_variables(store)

    def test_backup_and_restore_keeps_the_table(self, digits, tmp_path):
        x, y, _, _ = digits
        train = keras_sb.data.training_pipeline(
            tf.data.Dataset.from_tensor_slices((x, y)), 100, augment=False,
            example_ids=True)

        class Interrupt(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                if epoch == 2:
                    raise RuntimeError("interrupted")

        backup = os.path.join(tmp_path, "backup")
        model = compile_model(keras_sb.SelectiveBackpropModel(*mlp(), beta=1.0))
        with pytest.raises(RuntimeError, match="interrupted"):
            model.fit(train, epochs=5, verbose=0, callbacks=[
                keras.callbacks.BackupAndRestore(backup),
                keras_sb.StaleSelection(3), Interrupt()])
        epochs = numpy(model.selection_state.score_table[2].value)

        resumed = compile_model(keras_sb.SelectiveBackpropModel(*mlp(), beta=1.0))
        history = resumed.fit(train, epochs=5, verbose=0, callbacks=[
            keras.callbacks.BackupAndRestore(backup), keras_sb.StaleSelection(3)])
        # Epoch 1 was fresh, 2 stale and backed up: 3 is stale, 4 fresh.
        assert list(np.isnan(history.history["accuracy"])) == [True, False]
        # The stale epoch drew from the restored scores (an empty table
        # would have selected every example).
        assert history.history["selected_fraction"][0] < 0.8
        restored = numpy(resumed.selection_state.score_table[2].value)
        assert (restored >= 3).sum() > 0 and (epochs <= 2).all()


class TestPipelines:
    def test_training_pipeline_ids_follow_their_examples(self):
        images = np.arange(50, dtype="uint8").reshape(50, 1, 1, 1) * np.ones(
            (1, 8, 8, 3), "uint8")
        labels = np.arange(50, dtype="int64")
        train = keras_sb.data.training_pipeline(
            tf.data.Dataset.from_tensor_slices((images, labels)), 16,
            example_ids=True, seed=0)
        ids = []
        for batch in train:
            (_, label), example_id = batch["data"], batch["example_id"]
            np.testing.assert_array_equal(label.numpy(), example_id.numpy())
            ids.extend(example_id.numpy())
        assert sorted(ids) == list(range(50)) and ids != sorted(ids)
        assert keras_sb.data.count_examples(train) == 50

    def test_array_pipeline_ids_are_rows(self):
        images = np.zeros((30, 4, 4, 3), "uint8")
        labels = np.arange(30)
        pipeline = keras_sb.data.ArrayPipeline(images, labels, 8, example_ids=True,
                                               seed=0, workers=1)
        batch = pipeline[1]
        np.testing.assert_array_equal(batch["data"][1], batch["example_id"])
        assert keras_sb.data.count_examples(pipeline) == 30

    def test_array_pipeline_covers_every_id_each_epoch(self):
        """With worker threads, each epoch (the first included) delivers
        every row once: the fresh-epoch check would raise otherwise."""
        rng = np.random.default_rng(0)
        images = rng.integers(0, 256, (300, 8, 8, 3), dtype="uint8")
        labels = rng.integers(0, 2, 300).astype("int32")
        pipeline = keras_sb.data.ArrayPipeline(images, labels, 32, seed=0,
                                               workers=4, example_ids=True)
        inputs = keras.Input((8, 8, 3))
        outputs = keras.layers.Dense(2, activation="softmax")(
            keras.layers.Flatten()(inputs))
        model = compile_model(keras_sb.SelectiveBackpropModel(
            inputs, outputs, beta=1.0, seed=0))
        model.fit(pipeline, epochs=4, verbose=0,
                  callbacks=[keras_sb.StaleSelection(staleness=2)])
        epochs = numpy(model.selection_state.score_table[2].value)
        assert (epochs >= 2).all()  # Scored in epoch 2 (fresh) or later.

    def test_with_example_ids_errors(self):
        with pytest.raises(ValueError, match="infinite"):
            keras_sb.data.with_example_ids(tf.data.Dataset.range(3).repeat())
        with pytest.raises(ValueError, match="no ids"):
            keras_sb.data.keep_example_ids(lambda x: x)(tf.constant(1))
