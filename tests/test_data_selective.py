"""`keras_sb.data.selective_pipeline`: ids that follow their examples, the
draws made before `map_fn`, full batches in drawn epochs, training with
`fit`, and loud errors. The NumPy path needs no TensorFlow (JAX too)."""

import keras
import numpy as np
import pytest
from conftest import frozen_model
from keras import ops

import keras_sb
from keras_sb.data import PADDING_ID
from keras_sb.data import selective_pipeline

try:
    import tensorflow as tf
except ImportError:
    tf = None

needs_tf = pytest.mark.skipif(tf is None, reason="needs TensorFlow (tf.data)")
KINDS = [pytest.param("tf", marks=needs_tf), "arrays"]


def examples(n, features=4):
    """`(x, y, w)` arrays in which every part tells the example's number:
    `x = {"x": [i, ...], "id": i}`, `y = 10 i`, `w = i / 1000`."""
    ids = np.arange(n, dtype="int32")
    x = {"x": np.repeat(ids[:, None], features, 1).astype("float32"), "id": ids}
    return x, (10 * ids).astype("float32"), (ids / 1000).astype("float32")


def source(kind, arrays):
    """The data `selective_pipeline` takes: a tf.data.Dataset of single
    examples, or the arrays themselves."""
    if kind == "tf":
        return tf.data.Dataset.from_tensor_slices(arrays)
    return arrays


def one_epoch(train):
    """The batches of one epoch, as NumPy, as `fit` would read them."""
    if isinstance(train, keras.utils.PyDataset):
        batches = [train[i] for i in range(len(train))]
        train.on_epoch_end()
        return batches
    return [keras.tree.map_structure(np.asarray, batch) for batch in train]


def check_rows_follow_ids(batch, offset=0.0):
    """Every real row of a batch is the example of its id."""
    (x, y, w), ids = batch["data"], batch["example_id"]
    real = ids != PADDING_ID
    ids = ids[real]
    np.testing.assert_array_equal(x["id"][real], ids)
    np.testing.assert_array_equal(x["x"][real], np.repeat(
        ids[:, None] + offset, x["x"].shape[1], 1))
    np.testing.assert_array_equal(y[real], 10 * ids)
    np.testing.assert_allclose(w[real], ids / 1000)
    return ids


class TestSelectivePipeline:
    @pytest.mark.parametrize("kind", KINDS)
    def test_every_example_once_per_epoch_with_its_own_id(self, kind):
        model, _, _ = frozen_model(50)
        train = selective_pipeline(source(kind, examples(50)), model, 16,
                                   seed=0)
        if kind == "arrays":
            assert isinstance(train, keras.utils.PyDataset)
        orders = []
        for _ in range(2):
            batches = one_epoch(train)
            assert [len(b["example_id"]) for b in batches] == [16, 16, 16, 2]
            order = np.concatenate([check_rows_follow_ids(b) for b in batches])
            assert sorted(order) == list(range(50))
            orders.append(order.tolist())
        assert orders[0] != orders[1]  # Reshuffled every epoch.
        assert orders[0] != list(range(50))
        assert keras_sb.data.count_examples(train) == 50
        assert keras_sb.data.find_stale_filter(train).model is model

    @pytest.mark.parametrize("kind", KINDS)
    def test_map_fn_maps_exactly_the_kept_examples(self, kind):
        model, _, _ = frozen_model(60)
        mapped = []

        def record(ids):
            mapped.extend(np.atleast_1d(np.asarray(ids)).tolist())
            return ids

        def mark(x, y, w):
            # tf.data: one example, in a traced function; arrays: a batch.
            if kind == "tf":
                ids = tf.py_function(record, [x["id"]], tf.int32)
                ids.set_shape(x["id"].shape)
            else:
                ids = record(x["id"])
            return {"x": x["x"] + 1000, "id": ids}, y, w

        train = selective_pipeline(source(kind, examples(60)), model, 8,
                                   map_fn=mark, seed=1)
        draws = keras_sb.data.find_stale_filter(train)
        # Epoch 0 passes every example; epoch 1 keeps the odd ids only.
        draws.begin_epoch(False, epoch=0)
        batches = one_epoch(train)
        ids = np.concatenate([check_rows_follow_ids(b, 1000) for b in batches])
        assert sorted(mapped) == sorted(ids) == list(range(60))
        assert [len(b["example_id"]) for b in batches][-1] == 4

        mapped.clear()
        draws.begin_epoch(True, epoch=1, probabilities=np.tile([0.0, 1.0], 30))
        batches = one_epoch(train)
        ids = np.concatenate([check_rows_follow_ids(b, 1000) for b in batches])
        assert sorted(ids) == list(range(1, 60, 2))
        assert sorted(mapped) == list(range(1, 60, 2))  # Never the skipped.
        # 30 kept: 4 full batches, the last one padded from 6 to 8 rows.
        assert len(batches) == 4
        for batch in batches:
            for leaf in keras.tree.flatten(batch):
                assert leaf.shape[0] == 8
        last = batches[-1]
        padding = last["example_id"] == PADDING_ID
        assert padding.sum() == 2
        for leaf in keras.tree.flatten(last["data"]):
            assert not np.any(leaf[padding])  # Zeros, after `map_fn`.

    def test_arrays_same_seed_same_epochs(self):
        model, _, _ = frozen_model(30)
        first, again = (selective_pipeline(examples(30)[:2], model, 7, seed=5)
                        for _ in range(2))
        for _ in range(2):
            ids = [np.concatenate([b["example_id"] for b in one_epoch(p)])
                   for p in (first, again)]
            np.testing.assert_array_equal(*ids)
        unshuffled = selective_pipeline(examples(30)[:2], model, 7,
                                        shuffle_buffer=0)
        np.testing.assert_array_equal(
            np.concatenate([b["example_id"] for b in one_epoch(unshuffled)]),
            np.arange(30))

    @pytest.mark.parametrize("kind", KINDS)
    def test_fit_with_stale_selection(self, kind):
        """A fresh epoch stores every example's own loss under its id
        (through shuffling and `map_fn`); the stale epoch after it trains
        only on its draws, in fewer steps."""
        n, batch_size = 400, 40
        rng = np.random.default_rng(0)
        features = rng.normal(size=(n, 4)).astype("float32")
        # Frozen model: the loss of an example is exactly y ** 2.
        y = rng.permutation(np.linspace(0.1, 3.0, n)).astype("float32")
        x = {"x": features, "id": np.arange(n, dtype="int32")}
        model, counter, _ = frozen_model(n, seed=2)

        def augment(x, y):  # Works on an example and on a batch alike.
            return {"x": x["x"] * 2.0 + 1.0, "id": x["id"]}, y

        train = selective_pipeline(source(kind, (x, y)), model, batch_size,
                                   map_fn=augment, seed=3)
        steps = []

        class Steps(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                steps.append(0)

            def on_train_batch_end(self, batch, logs=None):
                steps[-1] += 1

        history = model.fit(train, epochs=2, verbose=0, callbacks=[
            keras_sb.StaleSelection(2), Steps()])
        losses, _, scored = (ops.convert_to_numpy(column.value) for column in
                             model.selection_state.score_table[:3])
        np.testing.assert_allclose(losses, y ** 2, rtol=1e-5)
        assert (scored >= 0).all()
        kept = round(history.history["selected_fraction"][1] * n)
        assert steps[0] == n // batch_size
        assert 0 < kept < n and steps[1] == -(-kept // batch_size)
        counters = model.selection_state.counters()
        assert counters["invalid_example_ids"] == 0
        assert ops.convert_to_numpy(counter.counts.value).sum() == counters["backprops"]


class TestErrors:
    @pytest.mark.parametrize("kind", KINDS)
    def test_bad_arguments(self, kind):
        model, _, _ = frozen_model(10)
        data = source(kind, examples(10))
        with pytest.raises(ValueError, match="Received: batch_size=0"):
            selective_pipeline(data, model, 0)
        with pytest.raises(ValueError, match="Received: map_fn=3"):
            selective_pipeline(data, model, 4, map_fn=3)
        with pytest.raises(ValueError, match="Received: shuffle_buffer=-1"):
            selective_pipeline(data, model, 4, shuffle_buffer=-1)
        with pytest.raises(ValueError, match="Received: seed='a'"):
            selective_pipeline(data, model, 4, seed="a")
        plain = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
        with pytest.raises(ValueError,
                           match="SelectiveBackpropModel.*Received: model="):
            selective_pipeline(data, plain, 4)

    def test_arrays_of_different_lengths(self):
        model, _, _ = frozen_model(10)
        x, y, w = examples(10)
        for data in ((x, y[:9]), (x, y, w[:3]),
                     ({"x": x["x"][:5], "id": x["id"]}, y)):
            with pytest.raises(ValueError,
                               match="same first dimension.*Received: data"):
                selective_pipeline(data, model, 4)
        with pytest.raises(ValueError, match="Received: data of 1 items"):
            selective_pipeline((x["x"],), model, 4)
        with pytest.raises(ValueError, match="Received: data of type str"):
            selective_pipeline("train", model, 4)

    def test_map_fn_must_return_examples(self):
        model, _, _ = frozen_model(10)
        train = selective_pipeline(examples(10)[:2], model, 4,
                                   map_fn=lambda x, y: x)
        with pytest.raises(ValueError, match="`map_fn` returns must be"):
            train[0]

    @needs_tf
    def test_tf_data_mistakes(self):
        model, _, _ = frozen_model(10)
        data = tf.data.Dataset.from_tensor_slices(examples(10))
        with pytest.raises(ValueError, match="ids itself.*Received: data whose"):
            selective_pipeline(keras_sb.data.with_example_ids(data), model, 4)
        with pytest.raises(ValueError, match=r"Received: data made by `batch\(4\)`"):
            selective_pipeline(data.batch(4), model, 4)
        with pytest.raises(ValueError, match="reshuffled every epoch.*unshuffled"):
            selective_pipeline(data.shuffle(10), model, 4)
        with pytest.raises(ValueError, match="must be `\\(x, y\\)`.*Received"):
            selective_pipeline(tf.data.Dataset.range(10), model, 4)
        with pytest.raises(ValueError, match="`map_fn` returns must be"):
            selective_pipeline(data, model, 4, map_fn=lambda x, y, w: x)
        with pytest.raises(ValueError, match="infinite"):
            selective_pipeline(data.repeat(), model, 4)
