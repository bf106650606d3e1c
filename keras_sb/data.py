"""Data pipeline helpers: what keras-sb needs to know about training data."""

import keras


def _first_leaf(structure):
    leaves = [leaf for leaf in keras.tree.flatten(structure) if leaf is not None]
    return leaves[0] if leaves else None


def batch_size_of(x, batch_size=None):
    """The batch size `fit` will train with, as far as it can be known.

    Args:
        x: the `x` argument of `fit`: arrays or tensors (or a structure of
            them), a `tf.data.Dataset`, a `keras.utils.PyDataset`, or another
            iterable.
        batch_size: the `batch_size` argument of `fit`.

    Returns:
        An int, or None if the batch size cannot be known before training
        (for example a Python generator).
    """
    if batch_size is not None:
        return int(batch_size)
    if isinstance(x, keras.utils.PyDataset):
        leaf = _first_leaf(x[0])
        return None if leaf is None else int(leaf.shape[0])
    if _is_tf_dataset(x):
        leaf = _first_leaf(x.element_spec)
        if leaf is not None and leaf.shape.rank and leaf.shape[0] is not None:
            return int(leaf.shape[0])
        for element in x.take(1):  # The batch dimension is dynamic: peek.
            return int(_first_leaf(element).shape[0])
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
