"""Every use of a private Keras or tf.data API, in one place.

keras-sb pins Keras 3.15.x (`setup.py`): each function here was written
against Keras 3.15 (and tf.data of TensorFlow 2.21) and names what it relies
on, so that a Keras upgrade is checked here first.
"""

# --- tf.data -------------------------------------------------------------


def _dataset_chain(dataset):
    """`dataset` and the datasets it was made from, nearest first, through
    unary transformations (TensorFlow 2.21: `_input_dataset`)."""
    while dataset is not None:
        yield dataset
        dataset = getattr(dataset, "_input_dataset", None)


def find_in_dataset_chain(dataset, attribute):
    """`attribute` of `dataset` or of the nearest dataset it was made from,
    or None (see `_dataset_chain`)."""
    for link in _dataset_chain(dataset):
        found = getattr(link, attribute, None)
        if found is not None:
            return found
    return None
