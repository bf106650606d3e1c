"""What the model reads from `fit`'s data before training: the number of
examples with ids, the stale filter, the first batch of a generator."""

import numpy as np
import pytest
from conftest import frozen_model

from keras_sb import data

tf = pytest.importorskip("tensorflow")


def test_count_examples_through_transformations():
    with_ids = data.with_example_ids(tf.data.Dataset.range(10))
    batches = (with_ids.shuffle(10).map(lambda element: element)
               .batch(3).prefetch(1))
    assert data.count_examples(batches) == 10
    assert data.count_examples(tf.data.Dataset.range(10).batch(3)) is None
    images = np.zeros((6, 2, 2, 3), "uint8")
    assert data.count_examples(data.ArrayPipeline(images, np.arange(6), 2)) is None
    assert data.count_examples(data.ArrayPipeline(
        images, np.arange(6), 2, example_ids=True)) == 6


def test_find_stale_filter_through_transformations():
    model, _, _ = frozen_model(10)
    draws = data.stale_filter(model, seed=0)
    with_ids = data.with_example_ids(tf.data.Dataset.range(10))
    batches = (with_ids.apply(draws).batch(4).apply(draws.pad_batches(4))
               .prefetch(1))
    assert data.find_stale_filter(batches) is draws
    assert data.find_stale_filter(with_ids.batch(4)) is None


def test_peek_generator_keeps_the_first_batch():
    batches = [(np.zeros((4, 2)), np.zeros(4)), (np.ones((4, 2)), np.ones(4)),
               (np.ones((1, 2)), np.ones(1))]
    size, generator = data.peek_generator(iter(batches))
    assert size == 4
    assert [len(y) for _, y in generator] == [4, 4, 1]
    empty = iter([])
    assert data.peek_generator(empty) == (None, empty)
