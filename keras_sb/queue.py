"""The pending queue of selected examples, as pure functions on tensors.

Selected examples wait in a fixed-capacity queue (one buffer per input,
target and weight tensor, each of shape `(capacity, ...)`) until the queue
holds a full backprop batch; that batch is trained on and the queue starts
again from empty. All shapes are static, so the code compiles with XLA.

`drain` moves all selected examples of one scored batch through the queue: it
fills the queue from the batch, runs the backward step each time the queue is
full, and leaves the remainder queued. The queue never holds more than its
capacity, whatever the batch size, so no selected example is ever dropped.
The loop threads an optional `carry` (on JAX, the values of the variables the
backward step updates) through the backward steps, so it stays a pure
function on backends without in-place updates.
"""

from keras import ops

from keras_sb import selection


def enqueue(queue, size, batch, order, consumed, num_selected):
    """Moves selected examples from a batch into the free slots of the queue.

    Args:
        queue: list of tensors, each of shape `(capacity, ...)`.
        size: int32 scalar, number of examples in the queue.
        batch: list of tensors matching `queue`, each `(batch_size, ...)`.
        order: int32 `(batch_size,)`, a permutation of the batch that puts
            the selected examples first (see
            `selection.selected_first_order`).
        consumed: int32 scalar, how many selected examples of this batch were
            moved already.
        num_selected: int32 scalar, number of selected examples in the batch.

    Returns:
        Tuple `(queue, size, consumed)` after moving as many examples as fit.
    """
    capacity = ops.shape(queue[0])[0]
    batch_size = ops.shape(order)[0]
    moved = ops.minimum(capacity - size, num_selected - consumed)
    slots = ops.arange(capacity, dtype="int32")
    writes = ops.logical_and(slots >= size, slots < size + moved)
    source = ops.take(
        order, ops.clip(consumed + slots - size, 0, batch_size - 1), axis=0
    )
    new_queue = []
    for buffer, values in zip(queue, batch):
        incoming = ops.cast(ops.take(values, source, axis=0), buffer.dtype)
        mask = ops.reshape(writes, (-1,) + (1,) * (len(buffer.shape) - 1))
        new_queue.append(ops.where(mask, incoming, buffer))
    return new_queue, size + moved, consumed + moved


def drain(queue, size, batch, selected, backward_if_full, carry=()):
    """Queues the selected examples of a batch, training on each full queue.

    Args:
        queue: list of tensors, each `(capacity, ...)`: the queue's contents.
        size: int32 scalar, number of examples in the queue (`< capacity`).
        batch: list of tensors matching `queue`, each `(batch_size, ...)`.
        selected: bool tensor `(batch_size,)`.
        backward_if_full: callable `(is_full, queue, carry) -> (ran, carry)`
            that runs one backward step on `queue` when `is_full` is true and
            returns the number of steps it ran (int32, 0 or 1) and the carry
            after it. It must not run any step when `is_full` is false.
        carry: a structure of tensors passed through `backward_if_full`.

    Returns:
        Tuple `(queue, size, steps, carry)`: the queue left after the batch,
        its size (`< capacity`), the number of backward steps run and the
        final carry.
    """
    capacity = ops.shape(queue[0])[0]
    order = selection.selected_first_order(selected)
    num_selected = ops.sum(ops.cast(selected, "int32"))
    zero = ops.convert_to_tensor(0, dtype="int32")

    def not_done(consumed, size, steps, queue, carry):
        return consumed < num_selected

    def move_and_train(consumed, size, steps, queue, carry):
        queue, size, consumed = enqueue(
            list(queue), size, batch, order, consumed, num_selected
        )
        is_full = size >= capacity
        ran, carry = backward_if_full(is_full, queue, carry)
        size = ops.where(is_full, zero, size)
        return (consumed, size, steps + ran, queue, carry)

    _, size, steps, queue, carry = ops.while_loop(
        not_done,
        move_and_train,
        (zero, ops.cast(size, "int32"), zero, list(queue), carry),
    )
    return list(queue), size, steps, carry
