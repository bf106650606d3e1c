"""What keras-sb needs to know about `fit`'s training data before training:
its batch size, the structure of its batches, how many examples carry ids,
and which `StaleFilter` draws its stale epochs."""

import collections.abc
import types

import keras

from keras_sb import _keras_compat
from keras_sb.data.array_pipeline import ArrayPipeline
from keras_sb.data.example_ids import NUM_EXAMPLES_ATTRIBUTE
from keras_sb.data.stale_filtering import STALE_FILTER_ATTRIBUTE


def find_stale_filter(x):
    """The `StaleFilter` applied to the training data `x`, or None."""
    if isinstance(x, ArrayPipeline):
        return x.stale_filter
    return _keras_compat.find_in_dataset_chain(x, STALE_FILTER_ATTRIBUTE)


def count_examples(x):
    """Number of distinct examples (ids) behind training data with ids.

    Known for an `ArrayPipeline` with ids and for `tf.data` datasets derived
    from `with_example_ids` by element-wise transformations (shuffle, map,
    batch, prefetch, ...); None otherwise.
    """
    if isinstance(x, ArrayPipeline):
        return len(x.images) if x.example_ids else None
    # Walk back through the chain of transformations to `with_example_ids`.
    return _keras_compat.find_in_dataset_chain(x, NUM_EXAMPLES_ATTRIBUTE)


def peek_structure(x):
    """Structure of one training batch of `x`, without consuming `fit`'s data.

    Returns None when it cannot be known without reading an iterator.
    """
    if _is_tf_dataset(x):
        return x.element_spec
    if isinstance(x, keras.utils.PyDataset):
        return x[0]
    if isinstance(x, (types.GeneratorType, collections.abc.Iterator)):
        return None
    return x  # Arrays or tensors: a batch has their structure.


def _first_leaf(structure):
    leaves = [leaf for leaf in keras.tree.flatten(structure) if leaf is not None]
    return leaves[0] if leaves else None


def _size_of_batch(batch):
    """Number of examples in a batch (None for a structure of no tensors)."""
    leaf = _first_leaf(batch)
    return None if leaf is None else int(leaf.shape[0])


def peek_generator(generator):
    """The batch size of a Python generator's first batch, without losing it.

    Args:
        generator: a Python generator of batches, as `fit` takes.

    Returns:
        Tuple `(batch_size, batches)`: the first batch's size (None for an
        empty generator) and a generator of all the batches, the first one
        included, to use instead of `generator`.
    """
    first = next(generator, None)
    if first is None:
        return None, generator

    def batches():
        yield first
        yield from generator

    return _size_of_batch(first), batches()


def batch_size_of(x, batch_size=None):
    """The batch size `fit` will train with, as far as it can be known.

    Args:
        x: the `x` argument of `fit`: arrays or tensors (or a structure of
            them), a `tf.data.Dataset`, a `keras.utils.PyDataset`, or another
            iterable.
        batch_size: the `batch_size` argument of `fit`.

    Returns:
        An int, or None if the batch size cannot be known before training
        (for example a Python generator: see `peek_generator`).
    """
    if batch_size is not None:
        return int(batch_size)
    if isinstance(x, keras.utils.PyDataset):
        return _size_of_batch(x[0])
    if _is_tf_dataset(x):
        leaf = _first_leaf(x.element_spec)
        if leaf is not None and leaf.shape.rank and leaf.shape[0] is not None:
            return int(leaf.shape[0])
        # The batch dimension is dynamic: the pipeline's own `batch` tells it
        # without reading data (a read refills a whole shuffle buffer); else
        # peek.
        from_chain = _keras_compat.batch_size_in_chain(x)
        if from_chain is not None:
            return from_chain
        for element in x.take(1):
            return _size_of_batch(element)
        return None
    leaf = _first_leaf(x)
    if leaf is not None and hasattr(leaf, "shape") and len(leaf.shape):
        # Arrays: Keras's default batch size is 32.
        return min(32, int(leaf.shape[0]))
    return None


def _is_tf_dataset(x):
    try:
        import tensorflow as tf
    except ImportError:
        return False
    return isinstance(x, tf.data.Dataset)
