"""The queue and the backward step on several replicas of a strategy.

Each replica queues its own selected examples; the replicas decide together
when to take a backward step (`queue.drain_synchronized`), which then trains
every replica on its queue, with the usual all-reduce of gradients.
"""

from keras import ops

from keras_sb import backend
from keras_sb import queue as queue_ops
from keras_sb.queue_layout import queued_batch


def queue_and_train(model, structure, batch, selected, has_ids):
    """`backward.queue_and_train` on one of several replicas.

    Args:
        model: a `SelectiveBackpropModel` under a `tf.distribute` strategy.
        structure: `(x, y, sample_weight)` of this replica's batch.
        batch: the flat list of tensors to queue (see `queue_layout`).
        selected: bool tensor, this replica's selected examples.
        has_ids: whether the last tensor of `batch` holds example ids.
    """
    state = model.selection_state
    replicas, _ = backend.replica_info()
    rows = state.queue_batch_rows
    local_batch = selected.shape[0]
    fit_batch_size = model.fit_session and model.fit_session.batch_size
    if local_batch is None and fit_batch_size:
        local_batch = -(-fit_batch_size // replicas)
    iterations = 1 + -(-(local_batch or rows) // rows)

    def decide(ready, stuck, local_rows):
        flags = backend.all_reduce_sum(ops.stack([
            ops.cast(ready, "int32"), ops.cast(stuck, "int32"), local_rows,
        ]))
        return ops.logical_or(flags[0] >= replicas, flags[1] > 0), flags[2]

    def train(head, mask):
        # Rows beyond a replica's queue (when another replica's queue
        # overflows) get weight 0.
        rows_batch = queued_batch(model, head, structure, has_ids, mask=mask)
        backend.backward_step(model, (), rows_batch.x, rows_batch.y,
                              rows_batch.trained_weight)

    def backward(run, head, mask):
        return backend.synchronized_run_if(
            run, train, (head, ops.cast(mask, "float32"))
        )

    drained = queue_ops.drain_synchronized(
        [buffer.value for buffer in state.queue],
        state.queue_size.value, batch, selected, rows, iterations,
        decide, backward,
    )
    for buffer, value in zip(state.queue, drained.queue):
        buffer.assign(value)
    state.queue_size.assign(drained.size)
    state.backprops.assign_add(drained.trained)
    state.padded_examples.assign_add(
        drained.steps * rows * replicas - drained.trained)
    state.dropped_examples.assign_add(backend.all_reduce_sum(drained.dropped))
