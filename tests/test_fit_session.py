"""`fit`'s preparation (`keras_sb.fit_session`): what it reads of the data."""

import numpy as np
import pytest
import tensorflow as tf
from conftest import mlp

import keras
import keras_sb


def _counted_pipeline(counter, num_examples=3000, drop_remainder=False):
    """A shuffled, batched pipeline whose `map` counts the elements read
    upstream of the shuffle buffer."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(num_examples, 64)).astype("float32")
    y = rng.integers(0, 10, num_examples).astype("int32")

    def count(features, label):
        counter.assign_add(1)
        return features, label

    return (tf.data.Dataset.from_tensor_slices((x, y)).map(count)
            .shuffle(num_examples).batch(128, drop_remainder=drop_remainder))


def _elements_read(model, drop_remainder):
    """Elements read by one `fit` and then by three more."""
    counter = tf.Variable(0, dtype=tf.int64)
    dataset = _counted_pipeline(counter, drop_remainder=drop_remainder)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    model.fit(dataset, epochs=1, verbose=0)
    first = int(counter.numpy())
    for _ in range(3):
        model.fit(dataset, epochs=1, verbose=0)
    return first, int(counter.numpy()) - first


@pytest.mark.parametrize("drop_remainder", [False, True])
def test_fit_reads_no_more_of_the_pipeline_than_plain_keras(drop_remainder):
    # With an unknown batch dimension the batch size used to be found by
    # reading a batch, which refilled the whole shuffle buffer every `fit`.
    keras.utils.set_random_seed(0)
    plain = _elements_read(keras.Model(*mlp()), drop_remainder)
    keras.utils.set_random_seed(0)
    selective = _elements_read(
        keras_sb.SelectiveBackpropModel(*mlp(), beta=1.0, start=0),
        drop_remainder)
    assert selective == plain
    assert plain[1] == 3 * 3000


def test_batch_size_of_a_batched_pipeline_is_the_default_backprop_batch():
    counter = tf.Variable(0, dtype=tf.int64)
    model = keras_sb.SelectiveBackpropModel(*mlp(), beta=1.0, start=0)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    model.fit(_counted_pipeline(counter, num_examples=300).prefetch(2),
              epochs=1, verbose=0)
    assert model.backprop_batch_size == 128


def test_history_smaller_than_a_pipeline_batch_is_an_error():
    counter = tf.Variable(0, dtype=tf.int64)
    model = keras_sb.SelectiveBackpropModel(*mlp(), history_size=100)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match="history_size"):
        model.fit(_counted_pipeline(counter, num_examples=300), verbose=0)
    assert int(counter.numpy()) == 0  # Refused before reading any data.
