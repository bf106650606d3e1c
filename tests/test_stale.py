"""Stale selection: stored scores stay with their examples, stale epochs run
no selection forward pass, and bad ids or tables fail loudly."""

import os
import re
import warnings

import keras
import numpy as np
import pytest
from conftest import compile_model
from conftest import frozen_model
from conftest import mlp
from conftest import regression_data
from conftest import StepCounter
from keras import ops

import keras_sb
from keras_sb import score_table
from keras_sb import stale

tf = pytest.importorskip("tensorflow")


def shuffled_with_ids(x, y, batch_size=100):
    """Feature vectors with example ids, reshuffled each epoch, batched."""
    dataset = keras_sb.data.with_example_ids(
        tf.data.Dataset.from_tensor_slices((x, y)))
    return dataset.shuffle(len(x), seed=0).batch(batch_size)


def numpy(x):
    return ops.convert_to_numpy(x)


def id_pipeline(x, y, batch_size, seed=0, draws=None):
    """with_example_ids, then shuffle and a random augmentation, as users do;
    with `draws` (a `stale_filter`), filtered before the augmentation and
    padded after batching."""
    ids = np.arange(len(x), dtype="int32")
    dataset = tf.data.Dataset.from_tensor_slices(({"x": x, "id": ids}, y))

    def augment(features, target):
        noisy = features["x"] + tf.random.normal(tf.shape(features["x"]))
        return {"x": noisy, "id": features["id"]}, target

    dataset = keras_sb.data.with_example_ids(dataset).shuffle(len(x), seed=seed)
    if draws is not None:
        dataset = dataset.apply(draws)
    dataset = dataset.map(keras_sb.data.keep_example_ids(augment)).batch(batch_size)
    if draws is not None:
        dataset = dataset.apply(draws.pad_batches(batch_size))
    return dataset


def pending_ids(model):
    state = model.selection_state
    size = int(numpy(state.queue_size.value))
    return numpy(state.queue[-1].value)[:size]


class TestFunctions:
    def test_record_scores_writes_the_rows_of_the_ids(self):
        table = (np.full(5, np.nan, "float32"), np.ones(5, "float32"),
                 np.full(5, -1, "int32"))
        ids = np.array([3, 0, 7, 1], "int32")  # 7 is outside the table.
        losses = np.array([1.0, 2.0, 3.0, 4.0], "float32")
        mask = np.array([True, True, True, False])
        new = [numpy(c) for c in score_table.record_scores(
            table, ids, losses, losses / 10, 4, mask=mask)]
        np.testing.assert_array_equal(new[0], [2.0, np.nan, np.nan, 1.0, np.nan])
        np.testing.assert_allclose(new[1], [0.2, 1.0, 1.0, 0.1, 1.0])
        np.testing.assert_array_equal(new[2], [4, -1, -1, 4, -1])

    def test_stored_probabilities(self):
        table = (np.zeros(3, "float32"), np.array([0.1, 0.5, 0.9], "float32"),
                 np.zeros(3, "int32"))
        probabilities = numpy(score_table.stored_probabilities(
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
                                         model.selection_state.score_table[:3])
        np.testing.assert_allclose(losses, y ** 2, rtol=1e-5)
        assert (epochs == 0).all()
        # Each row holds its own example's probability, pct ** 1: its
        # loss's rank in the history when it was scored, which the rank in
        # the whole data estimates. The history fills batch by batch (50
        # of 600), so early rows differ by the history's sampling error
        # (0.07 for 50 losses); over all rows the mean absolute difference
        # is 0.011 to 0.018 (seeds 0-2). Stored as pct ** 0.5, or as the
        # probability of another example, it would be 0.17 or more.
        rank = np.argsort(np.argsort(losses)) / len(x)
        assert np.abs(probabilities - rank).mean() < 0.05

    def test_fresh_epoch_follows_the_rule_exactly(self):
        """The rule on one device, beta 3 with a floor: learning rate 0, so
        example i's loss is y_i ** 2 in every epoch. The first epoch fills
        the history (it holds all n losses); the second goes over the data
        in the same order, so each batch replaces its own examples' losses
        and the example of rank r (from 0) has pct = r / n exactly.

        The stored probabilities must be max(min_probability, pct ** 3) of
        the stored losses, and the second epoch's selected count the sum of
        those Bernoulli draws, to 5 sigma (sigma about 20 of n = 2000).
        """
        n, beta, floor = 2000, 3.0, 0.05
        x, y = regression_data(n)
        model, _, _ = frozen_model(n, beta=beta, min_probability=floor, seed=0)
        batches = keras_sb.data.with_example_ids(
            tf.data.Dataset.from_tensor_slices(({"x": x, "id": np.arange(
                n, dtype="int32")}, y))).batch(100)
        history = model.fit(batches, epochs=2, verbose=0, shuffle=False,
                            callbacks=[keras_sb.StaleSelection(staleness=1)])
        losses, probabilities, epochs = (numpy(c.value) for c in
                                         model.selection_state.score_table[:3])
        assert (epochs == 1).all()
        np.testing.assert_allclose(losses, y ** 2, rtol=1e-6)
        rank = np.argsort(np.argsort(losses))
        expected = np.maximum(floor, (rank / n) ** beta)
        np.testing.assert_allclose(probabilities, expected, rtol=1e-5,
                                   atol=1e-7)
        selected = history.history["selected_fraction"][1] * n
        z = (selected - expected.sum()) / np.sqrt(
            np.sum(expected * (1 - expected)))
        assert abs(z) < 5, (selected, expected.sum(), z)

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
        # 5 epochs of 400 draws, with p = pct (beta = 1): 1/2, less 1/80 at
        # most from the first batches, whose history held few losses;
        # sigma = sqrt(2000 / 6) / 2000 = 0.0091; 5 sigma.
        fractions = np.array(history.history["selected_fraction"])
        assert abs(fractions.mean() - 0.5) < 0.0125 + 0.046
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
            numpy(c.value) for c in model.selection_state.score_table[:3])
        refreshed = epochs == 1
        assert 0 < refreshed.sum() < len(x)
        # Training-mode losses of the same frozen model: still y ** 2.
        np.testing.assert_allclose(losses[refreshed], y[refreshed] ** 2, rtol=1e-5)
        # The biggest losers were the ones refreshed.
        assert y[refreshed].mean() > y[~refreshed].mean()
        # The probabilities stay those of the fresh epoch.
        np.testing.assert_array_equal(probabilities, fresh_probabilities)

    def test_stale_epoch_without_a_backward_step_logs_no_loss(self, digits):
        """A stale epoch logs the loss of the examples trained on: NaN when
        none was (a 0 would look like the best epoch to EarlyStopping)."""
        x, y, _, _ = digits
        # About 350 examples drawn per epoch (beta 3: 1/4): the backprop
        # batch fills in the third epoch.
        keras.utils.set_random_seed(0)
        model = compile_model(keras_sb.SelectiveBackpropModel(
            *mlp(), beta=3.0, start=0, seed=0, backprop_batch_size=875))
        train = keras_sb.data.with_example_ids(
            tf.data.Dataset.from_tensor_slices((x, y))).batch(100)
        history = model.fit(train, epochs=3, verbose=0,
                            callbacks=[keras_sb.StaleSelection(staleness=3)])
        assert np.diff([0] + history.history["backprops"]).tolist() == [0, 0, 875]
        loss = history.history["loss"]
        assert np.isfinite(loss[0]) and np.isnan(loss[1]) and np.isfinite(loss[2])

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
        # NumPy arrays have no ids either: the same error, before training
        # (not a table of unscored rows after an epoch).
        with pytest.raises(ValueError, match="carry stable ids"):
            model.fit(x, y, callbacks=[keras_sb.StaleSelection(num_examples=len(x))],
                      verbose=0)
        assert model.selection_state.counters()["scored_batches"] == 0

    def test_ids_given_to_batches(self, digits):
        """`with_example_ids` after batching gives one id per batch: a clear
        error, not a shape error inside the step."""
        x, y, _, _ = digits
        model = compile_model(keras_sb.SelectiveBackpropModel(*mlp()))
        train = keras_sb.data.with_example_ids(
            tf.data.Dataset.from_tensor_slices((x, y)).batch(100))
        with pytest.raises(ValueError, match="before batching"):
            model.fit(train, verbose=0, callbacks=[keras_sb.StaleSelection()])

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
        model.fit(shuffled_with_ids(x, y), verbose=0,
                  callbacks=[keras_sb.StaleSelection()])
        smaller = shuffled_with_ids(x[:700], y[:700])
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
        train = shuffled_with_ids(x, y)
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
        train = shuffled_with_ids(x, y)

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


class TestPipelineDraws:
    """`keras_sb.data.stale_filter`: stale epochs drawn in the input
    pipeline, before augmentation and batching."""

    def test_stale_epochs_are_shorter_and_train_their_draws(self):
        """A first fit scores every example; a second fit starts with two
        stale epochs (shorter, no selection forward pass) and then a fresh
        one, which must again go over all the data."""
        x, y = regression_data(800)
        model, counter, inference = frozen_model(len(x), seed=4,
                                                 backprop_batch_size=20)
        draws = keras_sb.data.stale_filter(model, seed=1)
        callback = keras_sb.StaleSelection(staleness=3)
        model.fit(id_pipeline(x, y, 40, draws=draws), epochs=1, verbose=0,
                  callbacks=[callback])
        stored = numpy(model.selection_state.score_table[1].value).copy()
        counts = numpy(counter.counts.value).copy()
        pending_before = pending_ids(model)

        steps = StepCounter()
        inference_seen, first_stale = [], {}

        class Record(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                inference_seen.append(float(numpy(inference.examples.value)))
                if epoch == 0:  # The first stale epoch: what it trained.
                    first_stale["trained"] = numpy(counter.counts.value) - counts
                    first_stale["pending"] = pending_ids(model)

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            history = model.fit(id_pipeline(x, y, 40, seed=1, draws=draws),
                                epochs=3, verbose=0,
                                callbacks=[callback, steps, Record()])
        assert not [w for w in caught if "ran out of data" in str(w.message)]
        # No selection forward pass in the stale epochs; the fresh epoch
        # scored all 800 examples (fewer would raise in StaleSelection).
        assert inference_seen == [800, 800, 1600]
        fractions = history.history["selected_fraction"]
        # Each stale epoch has one step per 40 kept examples, a fresh one 20.
        for epoch in (0, 1):
            kept = round(fractions[epoch] * len(x))
            assert steps.steps[epoch] == -(-kept // 40), (steps.steps, kept)
        assert steps.steps[2] == 20
        # The first stale epoch trained each kept example once (or queued
        # it), and kept each id with its own stored probability.
        trained = first_stale["trained"]
        trained[pending_before] -= 1
        trained[first_stale["pending"]] += 1
        assert set(np.unique(trained)) <= {0.0, 1.0}
        assert trained.sum() == round(fractions[0] * len(x))
        z = (trained.sum() - stored.sum()) / np.sqrt(np.sum(stored * (1 - stored)))
        assert abs(z) < 4, z
        assert np.corrcoef(trained, stored)[0, 1] > 0.4
        # Every training pass is a counted backprop; no padding row counted
        # as a bad id (StaleSelection would raise).
        assert numpy(counter.counts.value).sum() == model.selection_state.counters()["backprops"]

    def test_progress_bar_counts_each_epochs_steps(self, capsys):
        x, y = regression_data(400)
        model, _, _ = frozen_model(len(x), seed=5)
        draws = keras_sb.data.stale_filter(model, seed=2)
        steps = StepCounter()
        model.fit(id_pipeline(x, y, 40, draws=draws), epochs=3, verbose=2,
                  callbacks=[keras_sb.StaleSelection(staleness=2), steps])
        shown = re.findall(r"^(\d+)/(\d+) - ", capsys.readouterr().out, re.M)
        assert [(int(a), int(b)) for a, b in shown] == [(n, n) for n in steps.steps]
        assert steps.steps[1] < steps.steps[0]

    def test_learns_with_xla(self, digits):
        x, y, x_test, y_test = digits
        model = compile_model(keras_sb.SelectiveBackpropModel(
            *mlp(), beta=1.0, seed=0), learning_rate=0.2, jit_compile=True)
        draws = keras_sb.data.stale_filter(model, seed=0)
        train = (keras_sb.data.with_example_ids(
            tf.data.Dataset.from_tensor_slices((x, y))).shuffle(1400)
            .apply(draws).batch(100).apply(draws.pad_batches(100)))
        stored = []

        class StoredProbabilities(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                table = self.model.selection_state.score_table
                stored.append(numpy(table.probability.value).copy())

        history = model.fit(train, epochs=8, verbose=0, validation_data=(x_test, y_test),
                            callbacks=[keras_sb.StaleSelection(staleness=2),
                                       StoredProbabilities()])
        assert np.isnan(history.history["accuracy"][2])  # Epoch 3 is stale.
        # The stale epoch keeps each example with its stored probability:
        # the kept count is a sum of those Bernoulli draws (5 sigma).
        p = stored[2]
        kept = history.history["selected_fraction"][2] * len(x)
        assert abs(kept - p.sum()) < 5 * np.sqrt(np.sum(p * (1 - p)))
        assert history.history["val_accuracy"][-1] > 0.75
        counters = model.selection_state.counters()
        assert counters["invalid_example_ids"] == 0
        assert counters["selected_total"] == counters["backprops"] + counters["queue_size"]

    def test_array_pipeline_stale_epochs_train_their_draws(self):
        rng = np.random.default_rng(0)
        images = rng.integers(0, 256, (320, 8, 8, 3), dtype="uint8")
        labels = rng.integers(0, 2, 320).astype("int32")
        inputs = keras.Input((8, 8, 3))
        outputs = keras.layers.Dense(2, activation="softmax")(
            keras.layers.Flatten()(inputs))
        model = compile_model(keras_sb.SelectiveBackpropModel(
            inputs, outputs, beta=1.0, seed=0, start=0))
        pipeline = keras_sb.data.ArrayPipeline(images, labels, 32, seed=0,
                                               workers=4, stale_model=model)
        steps = StepCounter()
        history = model.fit(pipeline, epochs=4, verbose=0, callbacks=[
            keras_sb.StaleSelection(staleness=2), steps])
        fractions = history.history["selected_fraction"]
        assert steps.steps[0] == steps.steps[2] == 10
        for epoch in (1, 3):  # Stale: one step per 32 kept examples.
            kept = round(fractions[epoch] * 320)
            assert 0 < kept < 320 and steps.steps[epoch] == -(-kept // 32)
        counters = model.selection_state.counters()
        assert counters["invalid_example_ids"] == 0
        assert counters["selected_total"] == counters["backprops"] + counters["queue_size"]

    def test_without_stale_selection_every_example_passes(self, digits):
        """A filter with no callback to draw in it: every example passes,
        and `fit` says the filter is not used."""
        x, y, _, _ = digits
        model = compile_model(keras_sb.SelectiveBackpropModel(*mlp(), seed=0))
        draws = keras_sb.data.stale_filter(model)
        train = keras_sb.data.with_example_ids(
            tf.data.Dataset.from_tensor_slices((x, y))).apply(draws).batch(100)
        steps = StepCounter()
        with pytest.warns(UserWarning, match="no callback that draws"):
            model.fit(train, epochs=2, verbose=0, callbacks=[steps])
        assert steps.steps == [14, 14]

    def test_errors(self, digits):
        x, y, _, _ = digits
        model = compile_model(keras_sb.SelectiveBackpropModel(*mlp()))
        other = compile_model(keras_sb.SelectiveBackpropModel(*mlp()))
        with_ids = keras_sb.data.with_example_ids(
            tf.data.Dataset.from_tensor_slices((x, y)))
        with pytest.raises(ValueError, match="another model"):
            model.fit(with_ids.apply(keras_sb.data.stale_filter(other)).batch(100),
                      verbose=0, callbacks=[keras_sb.StaleSelection()])
        # Repeated data with `steps_per_epoch`: one iterator for all epochs
        # would carry the draws (and padding) of one epoch into the next.
        draws = keras_sb.data.stale_filter(model)
        with pytest.raises(ValueError, match="Received: steps_per_epoch=4"):
            model.fit(with_ids.apply(draws).batch(100).apply(draws.pad_batches(100))
                      .repeat(), steps_per_epoch=4, epochs=2, verbose=0,
                      callbacks=[keras_sb.StaleSelection()])
        with pytest.raises(ValueError, match="before batching"):
            with_ids.batch(10).apply(keras_sb.data.stale_filter(model))
        with pytest.raises(ValueError, match="with_example_ids"):
            tf.data.Dataset.range(3).apply(keras_sb.data.stale_filter(model))
        with pytest.raises(ValueError, match="after `batch`"):
            with_ids.apply(keras_sb.data.stale_filter(model).pad_batches(10))
        with pytest.raises(ValueError, match="needs a keras_sb"):
            keras_sb.data.stale_filter(keras.Model(*mlp()))
        with pytest.raises(ValueError, match="Received: seed='1'"):
            keras_sb.data.stale_filter(model, seed="1")
