"""Every use of a private Keras or tf.data API, in one place.

keras-sb pins Keras 3.15.x (`setup.py`): each function here was written
against Keras 3.15 (and tf.data of TensorFlow 2.21) and names what it relies
on, so that a Keras upgrade is checked here first.
"""

# --- Keras ---------------------------------------------------------------

import contextlib
import sys

from keras.src.backend import get_keras_mask  # noqa: F401 (re-exported)
from keras.src.losses.loss import unscale_loss_for_distribution  # noqa: F401
from keras.src.models.functional import Functional  # noqa: F401
from keras.src.trainers.data_adapters import data_adapter_utils

# `get_keras_mask` (the mask Keras attaches to a tensor),
# `unscale_loss_for_distribution` (the loss as logged under a strategy),
# `Functional` (the class of functional models) are private in Keras 3.15;
# they are imported from here only.


def is_sparse_data(leaf):
    """Whether `leaf` is a sparse TensorFlow, JAX or SciPy array (Keras 3.15:
    `data_adapter_utils.is_*_sparse`)."""
    return bool(
        data_adapter_utils.is_tensorflow_sparse(leaf)
        or data_adapter_utils.is_jax_sparse(leaf)
        or data_adapter_utils.is_scipy_sparse(leaf)
    )


@contextlib.contextmanager
def replaced_flat_losses(compile_loss, replace):
    """Calls of `compile_loss` use `replace(loss_fn)` for each output's loss
    function inside the context (Keras 3.15: `CompileLoss._flat_losses`, a
    list of named tuples with a `loss` field)."""
    flat_losses = compile_loss._flat_losses
    compile_loss._flat_losses = [
        entry._replace(loss=replace(entry.loss)) for entry in flat_losses
    ]
    try:
        yield
    finally:
        compile_loss._flat_losses = flat_losses


def first_batch(epoch_iterator):
    """One batch of a Keras epoch iterator, read as Keras does (`fit` resets
    the iterator next).

    A `PyDataset` is indexed directly: starting its worker threads for one
    batch and stopping them again let batches made for that aborted epoch
    (in the order of its shuffle) leak into the first real epoch. Keras 3.15:
    `EpochIterator.data_adapter`, `PyDatasetAdapter.py_dataset` and
    `_standardize_batch`.
    """
    adapter = getattr(epoch_iterator, "data_adapter", None)
    py_dataset = getattr(adapter, "py_dataset", None)
    if py_dataset is not None and hasattr(adapter, "_standardize_batch"):
        return adapter._standardize_batch(py_dataset[0])
    for _, _, batches in epoch_iterator:
        if isinstance(batches, (list, tuple)):
            return batches[0]
        return next(batches)


def element_spec_of(epoch_iterator):
    """The `element_spec` of the `tf.data.Dataset` a Keras epoch iterator
    reads, or None for other data (Keras 3.15: `TFDatasetAdapter._dataset`).
    Reading it consumes no data."""
    adapter = getattr(epoch_iterator, "data_adapter", None)
    dataset = getattr(adapter, "_dataset", None)
    return getattr(dataset, "element_spec", None)


def forget_epoch_length(epoch_iterator):
    """Lets each epoch of `epoch_iterator` run until the data run out.

    Keras fixes an epoch's length after the first epoch of data of unknown
    length (Keras 3.15: `EpochIterator._num_batches`).
    """
    epoch_iterator._num_batches = None


def cloning_source(cls):
    """The model that `keras.models.clone_model` is cloning into a new `cls`,
    or None.

    Keras clones a functional model by calling its class with only
    `(inputs, outputs, name=...)`, so a clone would get the default selection
    options, silently. This finds the model being cloned in the calling
    frame of Keras's `_clone_functional_model` (past the `__init__` frames of
    subclasses), so that the clone gets its options, as `get_config` would
    give them. Relies on Keras 3.15's cloning code (a test checks it).
    """
    frame = sys._getframe(2)
    while frame is not None and frame.f_code.co_name == "__init__":
        frame = frame.f_back
    if (frame is None or frame.f_code.co_name != "_clone_functional_model"
            or not frame.f_globals.get("__name__", "").startswith("keras.")):
        return None
    source = frame.f_locals.get("model")
    return source if type(source) is cls else None


@contextlib.contextmanager
def sublayer_hidden(model, layer):
    """`model.layers` leaves out `layer` inside the context (Keras 3.15:
    `Layer._layers`, the list that `layers` is made from). Saving still
    finds it under the path it always had."""
    hidden = any(sublayer is layer for sublayer in model._layers)
    if hidden:
        model._layers.remove(layer)
    try:
        yield
    finally:
        if hidden:
            model._layers.insert(0, layer)


def in_multi_worker_mode(strategy):
    """Whether a `tf.distribute` strategy spans several workers (TensorFlow
    2.21: `strategy.extended._in_multi_worker_mode()`)."""
    return strategy.extended._in_multi_worker_mode()


def optimizer_learning_rate(optimizer):
    """The learning rate an optimizer was given: a variable, a
    `LearningRateSchedule` or a callable (Keras 3.15: `_learning_rate`,
    which the public `learning_rate` evaluates; a `LossScaleOptimizer`
    holds it in its `inner_optimizer`)."""
    while hasattr(optimizer, "inner_optimizer"):
        optimizer = optimizer.inner_optimizer
    return getattr(optimizer, "_learning_rate", None)


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


def batch_size_in_chain(dataset):
    """The `batch_size` of the nearest `batch` / `padded_batch` a dataset was
    made from, or None where it cannot be read without reading data.

    TensorFlow 2.21: `_batch_size` of `_BatchDataset` and
    `_PaddedBatchDataset` (see `_dataset_chain`); a transformation that
    regroups examples (`unbatch`, `rebatch`, windows) in between gives None.
    """
    tf = sys.modules.get("tensorflow")
    if tf is None or not isinstance(dataset, tf.data.Dataset):
        return None
    regrouping = ("Unbatch", "Rebatch", "Window", "FlatMap", "Interleave",
                  "GroupByWindow", "Scan")
    for link in _dataset_chain(dataset):
        name = type(link).__name__
        if any(word in name for word in regrouping):
            return None
        batch_size = getattr(link, "_batch_size", None)
        if batch_size is not None and "Batch" in name:
            value = tf.get_static_value(batch_size)
            return None if value is None else int(value)
    return None


def reshuffling_shuffle_in_chain(dataset):
    """The nearest `shuffle` that `dataset` was made from and that reshuffles
    every epoch, or None (see `_dataset_chain`).

    TensorFlow 2.21: `_ShuffleDataset._reshuffle_each_iteration` (True,
    False, or None, which tf.data treats as True); `Dataset.list_files`
    shuffles that way by default. A `cache` in between replays its first
    epoch's order in every epoch (TensorFlow 2.21: `CacheDataset`), so the
    walk stops there.
    """
    tf = sys.modules.get("tensorflow")
    if tf is None or not isinstance(dataset, tf.data.Dataset):
        return None
    for link in _dataset_chain(dataset):
        name = type(link).__name__
        if name == "CacheDataset":
            return None
        if "ShuffleDataset" in name and hasattr(link, "_reshuffle_each_iteration"):
            reshuffle = link._reshuffle_each_iteration
            if reshuffle is None or bool(reshuffle):
                return link
    return None
