"""Example ids: `with_example_ids` and `keep_example_ids` on their own."""

import pytest

import keras_sb

tf = pytest.importorskip("tensorflow")


class TestWithExampleIds:
    def test_with_example_ids_errors(self):
        with pytest.raises(ValueError, match="infinite"):
            keras_sb.data.with_example_ids(tf.data.Dataset.range(3).repeat())
        with pytest.raises(ValueError, match="no ids"):
            keras_sb.data.keep_example_ids(lambda x: x)(tf.constant(1))


def ids_by_value(dataset):
    """`{value: id}` over one pass of a dataset of scalars with ids."""
    return {int(e["data"]): int(e["example_id"]) for e in dataset}


class TestShuffledBeforeIds:
    """Ids given after a reshuffling `shuffle` would change every epoch."""

    @pytest.mark.parametrize("make", [
        lambda ds: keras_sb.data.with_example_ids(ds.shuffle(10)),
        lambda ds: ds.shuffle(10, seed=0).apply(keras_sb.data.with_example_ids),
        # Further upstream, through other transformations.
        lambda ds: keras_sb.data.with_example_ids(
            ds.shuffle(10).map(lambda v: v * 2).take(8).prefetch(2)),
        # Through `interleave`, as after `Dataset.list_files` (which
        # shuffles the files every epoch by default).
        lambda ds: keras_sb.data.with_example_ids(
            ds.shuffle(10).interleave(tf.data.Dataset.from_tensors)),
        # A fixed shuffle cannot fix the order of a reshuffled input.
        lambda ds: keras_sb.data.with_example_ids(
            ds.shuffle(10).shuffle(10, seed=1, reshuffle_each_iteration=False)),
    ])
    def test_raises(self, make):
        with pytest.raises(ValueError,
                           match="reshuffled every epoch.*before `shuffle`"):
            make(tf.data.Dataset.range(10))

    def test_one_order_for_every_epoch_is_fine(self):
        data = tf.data.Dataset.range(20)
        for fixed in (data.shuffle(20, seed=0, reshuffle_each_iteration=False),
                      data.shuffle(20).cache()):
            with_ids = keras_sb.data.with_example_ids(fixed)
            first = ids_by_value(with_ids)
            assert sorted(first) == list(range(20))
            assert first != {v: v for v in range(20)}  # Shuffled once.
            assert ids_by_value(with_ids) == first  # The next epoch.

    def test_ids_shuffled_afterwards_follow_their_examples(self):
        shuffled = keras_sb.data.with_example_ids(
            tf.data.Dataset.range(20)).shuffle(20)
        orders = [[int(e["example_id"]) for e in shuffled] for _ in range(2)]
        assert orders[0] != orders[1]
        for _ in range(2):
            assert ids_by_value(shuffled) == {v: v for v in range(20)}
