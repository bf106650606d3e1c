"""The layout of the queue of selected examples: which buffers, how big.

A batch `(x, y, sample_weight)` (plus importance weights for strategies that
reweight, and example ids for stale selection) is queued as a flat list of
tensors, one buffer each. Its per-example shapes and dtypes (the
`signature`) and the number of rows of a backward step fix the queue's
buffers, which are made once from the first batch's structure and kept while
batches keep that structure.
"""

from typing import NamedTuple

import keras
from keras import ops

from keras_sb import backend
from keras_sb import data as data_utils
from keras_sb.state import example_signature


def present_leaves(structure):
    """The non-None leaves of a structure, flattened: what is queued."""
    return [leaf for leaf in keras.tree.flatten(structure) if leaf is not None]


def fill_leaves(structure, leaves):
    """Inverse of `present_leaves`: puts `leaves` back where `structure` has
    non-None leaves."""
    leaves = iter(leaves)
    flat = [None if leaf is None else next(leaves)
            for leaf in keras.tree.flatten(structure)]
    return keras.tree.pack_sequence_as(structure, flat)


class QueuedBatch(NamedTuple):
    """Rows of the queue, unpacked into what a backward step trains on.

    Attributes:
        x, y, sample_weight: as the batches were queued.
        trained_weight: `sample_weight` times the importance weights
            (strategies that reweight) and the mask of rows to train on.
        example_ids: int32 ids of the rows, or None.
    """

    x: object
    y: object
    sample_weight: object
    trained_weight: object
    example_ids: object


def queued_batch(model, rows, structure, has_ids, mask=None):
    """Unpacks rows of the queue into what a backward step trains on.

    Args:
        model: the `SelectiveBackpropModel` whose queue it is.
        rows: the queue's buffers (or their first rows).
        structure: `(x, y, sample_weight)` of the batches queued.
        has_ids: whether the last buffer holds example ids.
        mask: optional float weights of the rows (0 for rows to ignore).

    Returns:
        A `QueuedBatch`.
    """
    rows = list(rows)
    example_ids = rows.pop() if has_ids else None
    weights = rows.pop() if model.strategy.reweights else None
    x, y, sample_weight = fill_leaves(structure, rows)
    if mask is not None:
        weights = mask if weights is None else mask * ops.cast(weights, mask.dtype)
    trained_weight = sample_weight
    if weights is not None:
        trained_weight = apply_row_weights(sample_weight, weights)
    return QueuedBatch(x, y, sample_weight, trained_weight, example_ids)


def apply_row_weights(sample_weight, weights):
    def scale(w):
        w = ops.cast(w, weights.dtype)
        return w * ops.reshape(weights, (-1,) + (1,) * (len(w.shape) - 1))

    if sample_weight is None:
        return weights
    return keras.tree.map_structure(scale, sample_weight)


def queue_signature(model, x, y, sample_weight, example_ids=None):
    """The per-example `(shape, dtype)` of each buffer the batch needs."""
    signature = [
        example_signature(leaf)
        for leaf in present_leaves((x, y, sample_weight))
    ]
    if model.strategy.reweights:
        signature.append(((), "float32"))
    if model._uses_example_ids(example_ids):
        signature.append(((), "int32"))
    return signature


def check_queue_signature(model, x, y, sample_weight, example_ids):
    """Raises a clear error when a batch does not fit the queue's buffers."""
    signature = queue_signature(model, x, y, sample_weight, example_ids)
    expected = model.selection_state.queue_signature
    if signature != expected:
        raise ValueError(
            "The training batches changed their per-example shapes or "
            "dtypes: the queue of selected examples holds "
            f"{expected}, this batch has {signature}. "
            "SelectiveBackpropModel queues selected examples in "
            "fixed-size buffers, so every input, target and sample weight "
            "needs the same shape apart from the batch dimension in all "
            "batches. Pad variable-length data to a fixed length."
        )


def prepare_queue(model, structure):
    """Creates the model's queue for batches of this structure.

    Args:
        model: a `SelectiveBackpropModel`.
        structure: one training batch, or its specs (one replica's part).

    Returns:
        True if it made a new queue, False if the current one fits.
    """
    data, example_ids = data_utils.split_example_ids(structure)
    if example_ids is not None and len(example_ids.shape) != 1:
        raise ValueError(
            "A training batch must carry one example id per example, but "
            f"its ids have shape {tuple(example_ids.shape)}. Call "
            "`keras_sb.data.with_example_ids` on the dataset of single "
            "examples, before batching."
        )
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    if example_ids is not None and model._step_settings.class_weight is not None:
        # The column of the weights the step makes (`structure` may be
        # specs, which the step's ops cannot take).
        sample_weight = keras.KerasTensor((None,), "float32")
    signature = queue_signature(model, x, y, sample_weight, example_ids)
    state = model.selection_state
    replicas = backend.num_replicas(model)
    batch_size = model.backprop_batch_size
    if batch_size is None:
        # The batches here are those of one replica.
        local = present_leaves(data)[0].shape[0]
        batch_size = None if local is None else local * replicas
    if batch_size is None:
        raise ValueError(
            "Could not tell the batch size of the training data, which is "
            "the default backprop batch size. Pass "
            "`backprop_batch_size=` to SelectiveBackpropModel."
        )
    if batch_size % replicas:
        raise ValueError(
            f"The backprop batch size ({batch_size}) must be a multiple "
            f"of the number of replicas ({replicas}): each replica trains "
            "on an equal share of each backward step. Pass "
            "`backprop_batch_size=` to SelectiveBackpropModel."
        )
    rows = batch_size // replicas
    # With several replicas each queue has room for a second backward
    # batch, so a replica can go on selecting while the others catch up
    # (see `queue.drain_synchronized`).
    capacity = rows if replicas == 1 else 2 * rows
    layout = (signature, capacity, rows)
    current = (state.queue_signature, state.queue_capacity,
               state.queue_batch_rows)
    if current == layout:
        return False
    with backend.variable_scope(model):
        state.build_queue(signature, capacity, batch_rows=rows)
    return True
