"""`keras_sb.data.stale_filter` on its own, without training: which examples
each epoch keeps, and the padding of stale epochs' last batches (training
with it: test_stale.py)."""

import numpy as np
import pytest
from conftest import frozen_model

import keras_sb

tf = pytest.importorskip("tensorflow")


def kept_ids(dataset):
    """The example ids a (filtered) dataset yields in one pass, padding
    rows excluded, and the sizes of its batches."""
    ids, sizes = [], []
    for element in dataset:
        batch_ids = np.atleast_1d(element["example_id"].numpy())
        sizes.append(len(batch_ids))
        ids.extend(batch_ids[batch_ids != keras_sb.data.PADDING_ID])
    return np.array(ids), sizes


class TestStaleFilter:
    """`keras_sb.data.stale_filter`: stale epochs drawn in the input
    pipeline, before augmentation and batching."""

    def test_filter_keeps_each_id_with_its_probability_whatever_the_order(self):
        num_examples = 4000
        model, _, _ = frozen_model(num_examples)
        model.selection_state.build_score_table(num_examples)
        draws = keras_sb.data.stale_filter(model, seed=7)
        ids = tf.data.Dataset.range(num_examples)
        dataset = keras_sb.data.with_example_ids(ids)
        probabilities = np.random.default_rng(0).permutation(
            np.linspace(0.0, 1.0, num_examples)).astype("float32")

        draws.begin_epoch(False, epoch=0)
        assert len(kept_ids(dataset.apply(draws))[0]) == num_examples

        draws.begin_epoch(True, epoch=1, probabilities=probabilities)
        kept, _ = kept_ids(dataset.apply(draws))
        assert draws.kept_fraction() == pytest.approx(len(kept) / num_examples)
        # The same draws through another order and parallel augmentation.
        shuffled = (dataset.shuffle(num_examples, seed=3).apply(draws)
                    .map(lambda e: e, num_parallel_calls=4))
        np.testing.assert_array_equal(np.sort(kept_ids(shuffled)[0]), kept)
        is_kept = np.isin(np.arange(num_examples), kept)
        assert not is_kept[probabilities == 0].any()
        assert is_kept[probabilities == 1].all()
        z = (is_kept.sum() - probabilities.sum()) / np.sqrt(
            np.sum(probabilities * (1 - probabilities)))
        assert abs(z) < 4, z
        for low, high in [(0.0, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, 1.01)]:
            band = (probabilities >= low) & (probabilities < high)
            spread = np.sqrt(np.sum(probabilities[band] * (1 - probabilities[band])))
            assert abs(is_kept[band].sum() - probabilities[band].sum()) < 4 * spread

        # Another epoch draws afresh.
        draws.begin_epoch(True, epoch=2, probabilities=probabilities)
        again = np.isin(np.arange(num_examples), kept_ids(dataset.apply(draws))[0])
        middle = (probabilities > 0.2) & (probabilities < 0.8)
        assert (again[middle] != is_kept[middle]).mean() > 0.25

    def test_elements_of_different_shapes(self):
        model, _, _ = frozen_model(300)
        draws = keras_sb.data.stale_filter(model, seed=0)
        ragged = keras_sb.data.with_example_ids(
            tf.data.Dataset.range(300).map(lambda i: tf.zeros([i % 3])))
        probabilities = np.tile([0.0, 1.0, 0.5], 100)
        draws.begin_epoch(True, epoch=1, probabilities=probabilities)
        kept, _ = kept_ids(ragged.apply(draws))
        same_shape = keras_sb.data.with_example_ids(tf.data.Dataset.range(300))
        np.testing.assert_array_equal(kept, kept_ids(same_shape.apply(draws))[0])
        assert set(kept % 3) == {1, 2} and 100 < len(kept) < 200

    def test_padding_fills_only_the_last_batch_of_stale_epochs(self):
        model, _, _ = frozen_model(100)
        draws = keras_sb.data.stale_filter(model, seed=0)
        batches = (keras_sb.data.with_example_ids(tf.data.Dataset.range(100))
                   .apply(draws).batch(32).apply(draws.pad_batches(32)))
        draws.begin_epoch(False, epoch=0)
        ids, sizes = kept_ids(batches)
        assert sizes == [32, 32, 32, 4] and len(ids) == 100
        draws.begin_epoch(True, epoch=1, probabilities=np.full(100, 0.5))
        ids, sizes = kept_ids(batches)
        assert set(sizes) == {32} and 0 < len(ids) < 100
        assert len(sizes) == -(-len(ids) // 32)
