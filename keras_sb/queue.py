"""The pending queue of selected examples, as pure functions on tensors.

Selected examples wait in a fixed-capacity queue (one buffer per input,
target and weight tensor, each of shape `(capacity, ...)`) until the queue
holds a full backprop batch; that batch is trained on and the queue starts
again from empty. All shapes are static, so the code compiles with XLA.

`drain` moves all selected examples of one scored batch through the queue: it
fills the queue from the batch, runs the backward step each time the queue is
full, and leaves the remainder queued. Where the batch can fill the queue at
most once (a batch no larger than the queue, the default), that is one
conditional backward step and no loop. The queue never holds more than its
capacity, whatever the batch size, so no selected example is ever dropped.
The loop threads an optional `carry` (on JAX, the values of the variables the
backward step updates) through the backward steps, so it stays a pure
function on backends without in-place updates.

`drain_synchronized` does the same for data-parallel replicas that each keep
their own queue and must take every backward step together.
"""

from typing import NamedTuple

from keras import ops

from keras_sb import selection


class Drained(NamedTuple):
    """What `drain` leaves: the queue, its size, the backward steps run and
    the final carry."""

    queue: list
    size: object
    steps: object
    carry: object


class SynchronizedDrain(NamedTuple):
    """What `drain_synchronized` leaves: the queue, its size, the backward
    steps run, the examples trained on over all replicas, and the selected
    examples of this replica that found no room."""

    queue: list
    size: object
    steps: object
    trained: object
    dropped: object


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
        A `Drained`: the queue left after the batch, its size
        (`< capacity`), the number of backward steps run and the final
        carry.
    """
    capacity = ops.shape(queue[0])[0]
    order = selection.selected_first_order(selected)
    num_selected = ops.sum(ops.cast(selected, "int32"))
    zero = ops.convert_to_tensor(0, dtype="int32")

    def move_and_train(consumed, size, steps, queue, carry):
        queue, size, consumed = enqueue(
            list(queue), size, batch, order, consumed, num_selected
        )
        is_full = size >= capacity
        ran, carry = backward_if_full(is_full, queue, carry)
        size = ops.where(is_full, zero, size)
        return (consumed, size, steps + ran, queue, carry)

    loop = (zero, ops.cast(size, "int32"), zero, list(queue), carry)
    most_steps = max_backward_steps(ops.shape(order)[0], capacity)
    if most_steps is not None and most_steps <= MAX_UNROLLED_STEPS:
        # Unrolled: no loop, whose predicate an accelerator would send back
        # to the host at every iteration.
        for _ in range(most_steps):
            loop = move_and_train(*loop)
        consumed, size, steps, queue, carry = loop
        # What the last full queue left of the batch fits (see
        # `max_backward_steps`).
        queue, size, _ = enqueue(list(queue), size, batch, order, consumed,
                                 num_selected)
        return Drained(list(queue), size, steps, carry)

    def not_done(consumed, size, steps, queue, carry):
        return consumed < num_selected

    _, size, steps, queue, carry = ops.while_loop(not_done, move_and_train,
                                                  loop)
    return Drained(list(queue), size, steps, carry)


# Backward steps per batch up to which `drain` unrolls its loop. Each
# unrolled step is a copy of the backward pass in the compiled program.
MAX_UNROLLED_STEPS = 1


def max_backward_steps(batch_size, capacity):
    """The most backward steps one batch can fill the queue for, or None
    when the batch size is not known statically.

    A queue holding at most `capacity - 1` examples fills at most
    `ceil(batch_size / capacity)` times while taking `batch_size` more, and
    what is left after the last time it fills is under `capacity`.
    """
    if not isinstance(batch_size, int) or not isinstance(capacity, int):
        return None
    return -(-batch_size // capacity)


def pop_front(queue, size, count):
    """Removes the first `count` examples of the queue; the rest move up.

    Args:
        queue: list of tensors, each `(capacity, ...)`.
        size: int32 scalar, number of examples in the queue.
        count: int32 scalar in `[0, size]`.

    Returns:
        Tuple `(queue, size)`.
    """
    capacity = ops.shape(queue[0])[0]
    source = ops.minimum(ops.arange(capacity, dtype="int32") + count,
                         capacity - 1)
    return [ops.take(buffer, source, axis=0) for buffer in queue], size - count


def drain_synchronized(queue, size, batch, selected, batch_rows, iterations,
                       decide, backward):
    """`drain` for data-parallel replicas that each keep their own queue.

    A backward step trains every replica at once (its gradients are summed
    across replicas), so all replicas must agree on when it runs, and every
    replica must call `decide` and `backward` equally often. Each replica's
    queue holds `batch_rows` examples per backward step and has room for
    more (its capacity), so a replica whose queue is full can keep
    selecting while the others fill theirs. A backward step runs when every
    replica has `batch_rows` examples queued, or when some replica has a
    full queue and selected examples that do not fit; then replicas with
    fewer than `batch_rows` train on what they have (the missing rows get
    weight 0, `mask`), so no selected example is ever dropped.

    The loop is unrolled `iterations` times (a backward step inside a
    compiled loop cannot synchronize replicas on every strategy). With
    `capacity >= batch_rows`, `ceil(batch_size / batch_rows) + 1` iterations
    always queue the whole batch; `dropped` counts what did not fit, and is
    0 unless `iterations` is too small.

    Args:
        queue: list of tensors, each `(capacity, ...)`.
        size: int32 scalar, examples in the queue, at most `capacity`.
        batch: list of tensors matching `queue`, each `(batch_size, ...)`.
        selected: bool tensor `(batch_size,)`.
        batch_rows: int, examples per backward step on each replica.
        iterations: int, how often to try to queue and train.
        decide: callable `(ready, stuck, rows) -> (run, trained)` that
            combines the flags of all replicas: `ready` (this replica has a
            full backward batch), `stuck` (its queue is full and selected
            examples wait), `rows` (examples it would train on); it returns
            whether the backward step runs (the same on every replica) and
            the number of examples all replicas would train on.
        backward: callable `(run, head, mask) -> ran` that runs one backward
            step on the queue's first `batch_rows` rows `head` where `mask`
            is true, when `run` holds, and returns int32 1 if it ran.

    Returns:
        A `SynchronizedDrain`: the queue left, its size, the backward
        steps run, the examples trained on over all replicas, and the
        selected examples of this replica that found no room.
    """
    capacity = ops.shape(queue[0])[0]
    order = selection.selected_first_order(selected)
    num_selected = ops.sum(ops.cast(selected, "int32"))
    zero = ops.convert_to_tensor(0, dtype="int32")
    size = ops.cast(size, "int32")
    consumed, steps, trained = zero, zero, zero
    rows = ops.arange(batch_rows, dtype="int32")
    for _ in range(iterations):
        queue, size, consumed = enqueue(
            list(queue), size, batch, order, consumed, num_selected
        )
        ready = size >= batch_rows
        stuck = ops.logical_and(size >= capacity, consumed < num_selected)
        local_rows = ops.minimum(size, batch_rows)
        run, all_rows = decide(ready, stuck, local_rows)
        head = [buffer[:batch_rows] for buffer in queue]
        steps = steps + backward(run, head, rows < size)
        trained = trained + ops.where(run, all_rows, zero)
        queue, size = pop_front(queue, size, ops.where(run, local_rows, zero))
    return SynchronizedDrain(list(queue), size, steps, trained,
                             num_selected - consumed)
