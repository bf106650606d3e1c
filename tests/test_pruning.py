"""Data pruning (InfoBatch, RandomSubset): which examples an epoch keeps,
how they are weighted, that pruned examples cost nothing and keep their
scores, and that saving and resuming prune as an uninterrupted run."""

import os

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
from keras_sb import pruning

tf = pytest.importorskip("tensorflow")


def numpy(x):
    return ops.convert_to_numpy(x)


def drawn_pipeline(x, y, batch_size, model, sample_weight=None, seed=0,
                   id_feature=True):
    """Examples with ids, shuffled, drawn by the model's filter, batched,
    the last batch padded (what `selective_pipeline` makes). With
    `id_feature`, the features are `{"x": x, "id": id}` (for the
    `TrainingCounter` of `frozen_model`)."""
    ids = np.arange(len(x), dtype="int32")
    element = ({"x": x, "id": ids} if id_feature else x, y)
    if sample_weight is not None:
        element += (sample_weight,)
    draws = keras_sb.data.stale_filter(model)
    dataset = keras_sb.data.with_example_ids(
        tf.data.Dataset.from_tensor_slices(element))
    return (dataset.shuffle(len(x), seed=seed).apply(draws)
            .batch(batch_size).apply(draws.pad_batches(batch_size)))


class EpochCounts(keras.callbacks.Callback):
    """Training passes per id in each epoch (from a `TrainingCounter`)."""

    def __init__(self, counter):
        super().__init__()
        self.counter = counter
        self.per_epoch = []

    def on_epoch_begin(self, epoch, logs=None):
        self._before = numpy(self.counter.counts.value).copy()

    def on_epoch_end(self, epoch, logs=None):
        counts = numpy(self.counter.counts.value) - self._before
        draws = self.model.fit_session.stale_filter
        if draws is not None and draws.stale:
            # The padding rows of a drawn epoch's last batch have all-zero
            # features, which the counter takes for id 0: for id 0, the
            # draw tells.
            counts[0] = float(draws.kept_rows(np.array([0]))[0])
        self.per_epoch.append(counts)


class KeptSets(keras.callbacks.Callback):
    """The keep/skip draws of each epoch (placed after the pruning
    callback, which makes them at the epoch's start)."""

    def __init__(self):
        super().__init__()
        self.kept = {}

    def on_epoch_begin(self, epoch, logs=None):
        draws = self.model.fit_session.stale_filter
        self.kept[epoch] = draws._kept_numpy[:-1].copy()


class TestRules:
    def test_below_mean_examples_get_the_keep_probability(self):
        scores = np.array([1.0, 2.0, 6.0, 3.0, np.nan], "float32")
        probabilities = pruning.infobatch_probabilities(scores, 0.25)
        # Mean of the scored examples: 3.0; 3.0 itself is not below it.
        np.testing.assert_array_equal(probabilities, [0.75, 0.75, 1, 1, 1])

    def test_nothing_pruned_before_any_score(self):
        scores = np.full(5, np.nan, "float32")
        np.testing.assert_array_equal(
            pruning.infobatch_probabilities(scores, 0.5), np.ones(5))

    @pytest.mark.parametrize("epochs, anneal, pruned", [
        (10, 0.875, [True] * 9 + [False]),
        (8, 0.5, [True] * 4 + [False] * 4),
        (4, 1.0, [True] * 4),
    ])
    def test_the_last_epochs_train_on_everything(self, epochs, anneal, pruned):
        assert [pruning.is_pruned_epoch(e, epochs, anneal)
                for e in range(epochs)] == pruned


class TestInfoBatchEpochs:
    def test_keeps_below_mean_examples_with_one_minus_prune_ratio(self):
        """With fixed scores (a frozen model: each loss is y ** 2), the
        second epoch keeps every above-mean example and 70% of the others,
        each example at most once, runs no forward pass beyond the backward
        steps', and rescores exactly the examples it trained on."""
        x, y = regression_data(3000)
        model, counter, inference = frozen_model(len(x), seed=3)
        counts = EpochCounts(counter)
        history = model.fit(
            drawn_pipeline(x, y, 100, model), epochs=2, verbose=0,
            callbacks=[keras_sb.InfoBatch(prune_ratio=0.3, anneal=1.0), counts])
        first, second = counts.per_epoch
        np.testing.assert_array_equal(first, np.ones(len(x)))
        assert set(np.unique(second)) <= {0.0, 1.0}
        kept = second.astype(bool)
        scores = y.astype("float64") ** 2
        below = scores < scores.mean()
        assert kept[~below].all()
        fraction = kept[below].mean()
        spread = np.sqrt(0.3 * 0.7 / below.sum())
        assert abs(fraction - 0.7) < 4 * spread, fraction
        assert float(numpy(inference.examples.value)) == 0.0
        # Pruned examples keep the score (and epoch) of epoch 0.
        epochs = numpy(model.selection_state.score_table.epoch.value)
        np.testing.assert_array_equal(epochs, np.where(kept, 1, 0))
        np.testing.assert_allclose(
            numpy(model.selection_state.score_table.loss.value), scores,
            rtol=1e-5)
        assert history.history["kept_fraction"][0] == 1.0
        assert history.history["kept_fraction"][1] == pytest.approx(kept.mean())
        assert history.history["rescaling"] == pytest.approx([1.0, 1 / 0.7])
        assert history.history["backprops"][1] - history.history["backprops"][0] \
            == kept.sum()

    def test_annealed_epochs_see_every_example_once(self):
        x, y = regression_data(600)
        model, counter, _ = frozen_model(len(x), seed=4)
        counts = EpochCounts(counter)
        history = model.fit(
            drawn_pipeline(x, y, 64, model), epochs=4, verbose=0,
            callbacks=[keras_sb.InfoBatch(anneal=0.5), counts])
        assert counts.per_epoch[1].sum() < 0.9 * len(x)  # Pruned.
        for epoch in (2, 3):
            np.testing.assert_array_equal(counts.per_epoch[epoch], np.ones(len(x)))
        assert history.history["kept_fraction"][2:] == [1.0, 1.0]
        assert history.history["rescaling"][2:] == [1.0, 1.0]

    @pytest.mark.parametrize("with_sample_weight", [False, True])
    def test_weight_applies_once_to_the_kept_well_learned_examples(
            self, with_sample_weight):
        """One pruned step equals a plain Keras step on the kept examples
        (and the padding rows, weight 0) with weight 1 / (1 - prune_ratio)
        on the below-mean ones, times the user's sample weights."""
        n, features = 64, 6
        rng = np.random.default_rng(0)
        x = rng.normal(size=(n, features)).astype("float32")
        y = rng.integers(0, 3, n).astype("int32")
        user_weight = rng.uniform(0.5, 2.0, n).astype("float32")
        sample_weight = user_weight if with_sample_weight else None

        def network():
            inputs = keras.Input((features,))
            return inputs, keras.layers.Dense(3, activation="softmax")(inputs)

        keras.utils.set_random_seed(0)
        model = compile_model(keras_sb.SelectiveBackpropModel(*network(), seed=0),
                              learning_rate=0.5)
        train = drawn_pipeline(x, y, n, model, sample_weight, id_feature=False)
        model.fit(train, epochs=1, verbose=0,
                  callbacks=[keras_sb.InfoBatch(anneal=1.0)])
        table = model.selection_state.score_table
        scores = np.where(np.arange(n) % 2 == 0, 0.1, 5.0).astype("float32")
        table.loss.assign(scores)
        before = [numpy(w).copy() for w in model.get_weights()]
        model.fit(train, epochs=1, verbose=0,
                  callbacks=[keras_sb.InfoBatch(prune_ratio=0.5, anneal=1.0)])
        after = model.get_weights()
        kept = numpy(table.epoch.value) == 1
        assert 0 < kept[scores < 1].sum() < (scores < 1).sum()
        assert kept[scores > 1].all()
        # Pruned examples keep their scores; the kept ones get new ones.
        losses = numpy(table.loss.value)
        np.testing.assert_array_equal(losses[~kept], scores[~kept])
        assert (losses[kept] != scores[kept]).all()

        def plain_step(weights):
            plain = compile_model(keras.Model(*network()), learning_rate=0.5)
            plain.set_weights(before)
            rows = np.flatnonzero(kept)
            padding = n - len(rows)
            plain.train_on_batch(
                np.concatenate([x[rows], np.zeros((padding, features), "float32")]),
                np.concatenate([y[rows], np.zeros(padding, "int32")]),
                sample_weight=np.concatenate([weights[rows], np.zeros(padding)]))
            return plain.get_weights()

        base = user_weight if with_sample_weight else np.ones(n, "float32")
        rescaled = base * np.where(scores < scores.mean(), 2.0, 1.0)
        for expected, actual in zip(plain_step(rescaled), after):
            np.testing.assert_allclose(actual, expected, atol=1e-6)
        # The test tells the weights apart: unweighted is another step.
        unweighted = plain_step(base)
        assert not np.allclose(unweighted[0], after[0], atol=1e-6)

    def test_learns_and_logs_training_metrics(self, digits):
        x, y, x_test, y_test = digits
        ids = keras_sb.data.with_example_ids(
            tf.data.Dataset.from_tensor_slices((x, y)))
        keras.utils.set_random_seed(0)
        model = keras_sb.SelectiveBackpropModel(*mlp(), seed=0)
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        draws = keras_sb.data.stale_filter(model)
        train = ids.shuffle(len(x), seed=0).apply(draws).batch(64).apply(
            draws.pad_batches(64))
        history = model.fit(train, epochs=12, verbose=0,
                            validation_data=(x_test, y_test),
                            callbacks=[keras_sb.InfoBatch()])
        accuracy = history.history["accuracy"]
        assert np.isfinite(accuracy).all()
        assert max(history.history["kept_fraction"][1:10]) < 0.9
        # Plain training, same settings: 0.93 on both backends.
        assert history.history["val_accuracy"][-1] > 0.88

    def test_draws_in_the_step_without_a_filter_warn(self):
        x, y = regression_data(1000)
        model, counter, _ = frozen_model(len(x), seed=5)
        ids = np.arange(len(x), dtype="int32")
        train = keras_sb.data.with_example_ids(tf.data.Dataset.from_tensor_slices(
            ({"x": x, "id": ids}, y))).shuffle(len(x), seed=0).batch(100)
        counts = EpochCounts(counter)
        with pytest.warns(UserWarning, match="draws the kept examples in the "
                          "train step"):
            history = model.fit(train, epochs=2, verbose=0,
                                callbacks=[keras_sb.InfoBatch(anneal=1.0), counts])
        # Every example passes through the backward step (weight 0 if
        # pruned); the kept ones are rescored.
        np.testing.assert_array_equal(counts.per_epoch[1], np.ones(len(x)))
        kept = numpy(model.selection_state.score_table.epoch.value) == 1
        assert history.history["kept_fraction"][1] == pytest.approx(kept.mean())
        assert 0.5 < kept.mean() < 0.9


class TestArrayData:
    def test_pruned_epochs_are_shorter_without_tensorflow_data(self):
        """NumPy data through `selective_pipeline` (a PyDataset, any
        backend): pruned epochs run fewer steps, every step full."""
        rng = np.random.default_rng(0)
        x = rng.normal(size=(640, 8)).astype("float32")
        y = (x[:, 0] > 0).astype("int32")
        keras.utils.set_random_seed(0)
        model = compile_model(keras_sb.SelectiveBackpropModel(
            *mlp(input_dim=8, classes=2), seed=0))
        train = keras_sb.data.selective_pipeline((x, y), model, batch_size=64)
        steps = StepCounter()
        history = model.fit(train, epochs=4, verbose=0,
                            callbacks=[keras_sb.InfoBatch(anneal=0.75), steps])
        kept = history.history["kept_fraction"]
        assert kept[0] == 1.0 and kept[3] == 1.0 and max(kept[1:3]) < 0.9
        expected = [int(np.ceil(f * len(x) / 64)) for f in kept]
        assert steps.steps == expected
        assert np.isfinite(history.history["accuracy"]).all()


class TestRandomSubset:
    def test_keeps_the_given_fraction_each_epoch_unweighted(self):
        x, y = regression_data(2000)
        model, counter, _ = frozen_model(len(x), seed=6)
        counts = EpochCounts(counter)
        history = model.fit(
            drawn_pipeline(x, y, 100, model), epochs=3, verbose=0,
            callbacks=[keras_sb.RandomSubset([1.0, 0.3, 0.6]), counts])
        for epoch, fraction in enumerate([1.0, 0.3, 0.6]):
            kept = counts.per_epoch[epoch]
            assert set(np.unique(kept)) <= {0.0, 1.0}
            spread = np.sqrt(fraction * (1 - fraction) / len(x))
            assert abs(kept.mean() - fraction) < 4 * spread + 1e-9
            assert history.history["kept_fraction"][epoch] == pytest.approx(kept.mean())
        assert history.history["rescaling"] == [1.0, 1.0, 1.0]
        # Independent of the loss: a fresh uniform subset.
        scores = y ** 2
        second = counts.per_epoch[1].astype(bool)
        assert abs(second[scores < np.median(scores)].mean()
                   - second[scores >= np.median(scores)].mean()) < 0.1

    @pytest.mark.parametrize("fraction", [0, 1.5, [], [0.5, -1], True, "half"])
    def test_bad_fraction(self, fraction):
        with pytest.raises(ValueError, match="kept_fraction"):
            keras_sb.RandomSubset(fraction)


def batched_with_ids(x, y):
    return keras_sb.data.with_example_ids(
        tf.data.Dataset.from_tensor_slices((x, y))).batch(100)


class TestErrors:
    @pytest.mark.parametrize("options, message", [
        ({"prune_ratio": 1.0}, "prune_ratio=1.0"),
        ({"prune_ratio": -0.1}, "prune_ratio=-0.1"),
        ({"prune_ratio": True}, "prune_ratio=True"),
        ({"anneal": 0}, "anneal=0"),
        ({"anneal": 1.5}, "anneal=1.5"),
        ({"num_examples": 0}, "num_examples=0"),
    ])
    def test_bad_arguments(self, options, message):
        with pytest.raises(ValueError, match=message):
            keras_sb.InfoBatch(**options)

    def test_data_without_ids_say_how_to_add_them(self, digits):
        x, y, _, _ = digits
        model = compile_model(keras_sb.SelectiveBackpropModel(*mlp()))
        with pytest.raises(ValueError, match="selective_pipeline"):
            model.fit(x, y, epochs=1, verbose=0, callbacks=[keras_sb.InfoBatch()])

    def test_table_of_another_size(self, digits):
        x, y, _, _ = digits
        model = compile_model(keras_sb.SelectiveBackpropModel(*mlp()))
        train = batched_with_ids(x, y)
        with pytest.raises(ValueError, match="num_examples=10"):
            model.fit(train, epochs=1, verbose=0,
                      callbacks=[keras_sb.InfoBatch(num_examples=10)])
        model.fit(train, epochs=1, verbose=0, callbacks=[keras_sb.InfoBatch()])
        other = batched_with_ids(x[:500], y[:500])
        with pytest.raises(ValueError, match="score table has 1400 rows"):
            model.fit(other, epochs=1, verbose=0, callbacks=[keras_sb.InfoBatch()])

    def test_plain_keras_model(self, digits):
        x, y, _, _ = digits
        model = compile_model(keras.Model(*mlp()))
        with pytest.raises(ValueError, match="keras_sb.SelectiveBackpropModel"):
            model.fit(x, y, epochs=1, verbose=0, callbacks=[keras_sb.InfoBatch()])

    def test_one_table_callback_at_a_time(self, digits):
        x, y, _, _ = digits
        model = compile_model(keras_sb.SelectiveBackpropModel(*mlp()))
        train = batched_with_ids(x, y)
        with pytest.raises(ValueError, match="at most one of StaleSelection"):
            model.fit(train, epochs=1, verbose=0, callbacks=[
                keras_sb.InfoBatch(), keras_sb.StaleSelection(3)])


class TestSavingAndResuming:
    def test_table_survives_save_and_load(self, tmp_path):
        x, y = regression_data(500)
        model, _, _ = frozen_model(len(x), seed=7)
        model.fit(drawn_pipeline(x, y, 50, model), epochs=2, verbose=0,
                  callbacks=[keras_sb.InfoBatch(anneal=1.0)])
        path = os.path.join(tmp_path, "model.keras")
        model.save(path)
        loaded = keras.saving.load_model(path)
        for saved, restored in zip(model.selection_state.score_table,
                                   loaded.selection_state.score_table):
            np.testing.assert_array_equal(numpy(saved.value), numpy(restored.value))
        assert loaded.selection_state.counters()["draw_seed"] == \
            model.selection_state.counters()["draw_seed"]
        history = loaded.fit(drawn_pipeline(x, y, 50, loaded), epochs=1,
                             verbose=0, callbacks=[keras_sb.InfoBatch(anneal=1.0)])
        assert history.history["kept_fraction"][0] < 0.9  # The scores were kept.

    def test_resumed_run_prunes_as_an_uninterrupted_one(self, tmp_path):
        """BackupAndRestore: the epochs after the interruption keep the same
        examples as in a run that was not interrupted (the draws follow the
        saved table, draw seed and epoch count)."""
        x, y = regression_data(800)

        def run(callbacks, seed):
            keras.utils.set_random_seed(seed)  # Draws a new model's seed.
            model, _, _ = frozen_model(len(x))
            kept = KeptSets()
            try:
                model.fit(drawn_pipeline(x, y, 80, model), epochs=5, verbose=0,
                          callbacks=[keras_sb.InfoBatch(anneal=1.0), kept,
                                     *callbacks])
            except RuntimeError:
                pass
            return kept.kept

        class Interrupt(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                if epoch == 2:
                    raise RuntimeError("interrupted")

        uninterrupted = run([], seed=0)
        backup = os.path.join(tmp_path, "backup")
        interrupted = run([keras.callbacks.BackupAndRestore(backup), Interrupt()],
                          seed=0)
        assert sorted(interrupted) == [0, 1, 2]
        resumed = run([keras.callbacks.BackupAndRestore(backup)], seed=1)
        assert sorted(resumed) == [3, 4]
        for epoch in (3, 4):
            assert resumed[epoch].mean() < 0.9
            np.testing.assert_array_equal(resumed[epoch], uninterrupted[epoch])


def test_train_on_batch_after_pruning_selects_again(digits):
    """The pruned step belongs to the `fit` with the callback: afterwards
    `train_on_batch` (no ids) runs the selective step."""
    x, y, _, _ = digits
    model = compile_model(keras_sb.SelectiveBackpropModel(*mlp(), start=0))
    train = keras_sb.data.selective_pipeline(
        tf.data.Dataset.from_tensor_slices((x, y)), model, batch_size=100)
    model.fit(train, epochs=1, verbose=0, callbacks=[keras_sb.InfoBatch()])
    logs = model.train_on_batch(x[:100], y[:100], return_dict=True)
    assert logs["selected_fraction"] < 1.0
