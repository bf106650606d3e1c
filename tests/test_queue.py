"""The pending queue: every selected example is trained on exactly once."""

import threading

import numpy as np
import pytest
from keras import ops

from keras_sb import queue as queue_ops


def numpy(x):
    return ops.convert_to_numpy(x)


def run_stream(batches, selections, capacity):
    """Drains a stream of batches through one queue, eagerly.

    The backward step is a pure function of the loop's carry (as on JAX): it
    writes each full queue into a log carried through the loop.

    Returns the list of backward batches (as numpy arrays of example ids)
    and the queue left at the end.
    """
    max_steps = sum(len(ids) for ids in batches) // capacity + 1

    def backward_if_full(is_full, queue, carry):
        steps, log = carry
        ran = ops.cast(is_full, "int32")
        row = ops.logical_and(is_full, ops.arange(max_steps) == steps)
        log = ops.where(ops.expand_dims(row, 1), ops.expand_dims(queue[0], 0), log)
        return ran, (steps + ran, log)

    queue = [ops.zeros((capacity,), "int32"), ops.zeros((capacity, 2), "float32")]
    size = ops.convert_to_tensor(0, "int32")
    carry = (ops.convert_to_tensor(0, "int32"),
             ops.zeros((max_steps, capacity), "int32"))
    total_steps = 0
    for ids, selected in zip(batches, selections):
        batch = [ops.array(ids, "int32"),
                 ops.array(np.stack([ids, -ids], axis=1), "float32")]
        queue, size, steps, carry = queue_ops.drain(
            queue, size, batch, ops.array(selected), backward_if_full, carry)
        size_value = int(numpy(size))
        assert 0 <= size_value < capacity
        total_steps += int(numpy(steps))
        # The second buffer moved in step with the first.
        np.testing.assert_array_equal(
            numpy(queue[1])[:size_value, 0], numpy(queue[0])[:size_value])
    logged_steps, log = carry
    assert total_steps == int(numpy(logged_steps))
    backward_batches = list(numpy(log)[:total_steps])
    pending = numpy(queue[0])[: int(numpy(size))]
    return backward_batches, pending


@pytest.mark.parametrize("batch_size,capacity", [(16, 16), (16, 5), (7, 16),
                                                 (32, 1), (9, 9)])
@pytest.mark.parametrize("rate", [0.0, 0.3, 1.0])
def test_each_selected_example_is_trained_once_in_order(batch_size, capacity, rate):
    rng = np.random.default_rng(int(100 * rate) + batch_size + capacity)
    batches, selections = [], []
    next_id = 0
    for _ in range(12):
        size = int(rng.integers(1, batch_size + 1))  # Smaller last batches too.
        batches.append(np.arange(next_id, next_id + size))
        selections.append(rng.random(size) < rate)
        next_id += size
    backward, pending = run_stream(batches, selections, capacity)

    selected_ids = np.concatenate([b[s] for b, s in zip(batches, selections)])
    for step in backward:
        assert len(step) == capacity  # Exactly one full backprop batch.
    trained = np.concatenate(backward + [pending]) if backward else pending
    # Conservation: selected = backpropagated + pending, first in first out.
    np.testing.assert_array_equal(trained, selected_ids)
    assert len(backward) == len(selected_ids) // capacity
    assert len(pending) == len(selected_ids) % capacity


def test_nothing_selected_runs_no_step():
    backward, pending = run_stream([np.arange(8)] * 3, [np.zeros(8, bool)] * 3, 4)
    assert backward == [] and len(pending) == 0


def test_enqueue_moves_only_what_fits():
    queue = [ops.full((4,), -1)]
    order = ops.array([2, 0, 1], "int32")  # Example 2 then 0 are selected.
    batch = [ops.array([10, 11, 12])]
    new_queue, size, consumed = queue_ops.enqueue(
        queue, ops.convert_to_tensor(3, "int32"), batch, order,
        ops.convert_to_tensor(0, "int32"), ops.convert_to_tensor(2, "int32"))
    assert numpy(new_queue[0]).tolist() == [-1, -1, -1, 12]
    assert int(numpy(size)) == 4 and int(numpy(consumed)) == 1


def run_replicas(selections, batch_rows, capacity, iterations):
    """Drains per-replica streams through `drain_synchronized`, one thread
    per replica; `decide` exchanges the replicas' flags at a barrier, as an
    all-reduce would.

    `selections[r][t]` is replica r's selection mask at step t; example ids
    are `1000 * r + position in the stream`. Returns, per replica, the
    backward batches (the ids trained on), the ids left queued, the number
    of rows trained on (over all replicas, per the step's result) and the
    number dropped.
    """
    replicas = len(selections)
    barrier = threading.Barrier(replicas)
    flags = [None] * replicas
    results = [None] * replicas
    errors = []

    def replica(index):
        try:
            queue = [ops.zeros((capacity,), "int32")]
            size = ops.convert_to_tensor(0, "int32")
            trained_batches, trained, dropped = [], 0, 0
            offset = 0

            def decide(ready, stuck, rows):
                flags[index] = (bool(numpy(ready)), bool(numpy(stuck)),
                                int(numpy(rows)))
                barrier.wait()
                seen = list(flags)
                barrier.wait()
                run = all(f[0] for f in seen) or any(f[1] for f in seen)
                return (ops.convert_to_tensor(run),
                        ops.convert_to_tensor(sum(f[2] for f in seen), "int32"))

            def backward(run, head, mask):
                if bool(numpy(run)):
                    trained_batches.append(numpy(head[0])[numpy(mask)])
                return ops.convert_to_tensor(int(bool(numpy(run))), "int32")

            for selected in selections[index]:
                ids = 1000 * index + offset + np.arange(len(selected))
                offset += len(selected)
                queue, size, _, rows, lost = queue_ops.drain_synchronized(
                    queue, size, [ops.array(ids, "int32")],
                    ops.array(selected), batch_rows, iterations, decide,
                    backward)
                trained += int(numpy(rows))
                dropped += int(numpy(lost))
            pending = numpy(queue[0])[:int(numpy(size))]
            results[index] = (trained_batches, pending, trained, dropped)
        except Exception as error:  # Reported by the test's thread.
            errors.append(error)
            barrier.abort()

    threads = [threading.Thread(target=replica, args=(r,))
               for r in range(replicas)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    if errors:
        raise errors[0]
    return results


@pytest.mark.parametrize("rates", [(0.3, 0.3), (0.9, 0.1), (1.0, 0.0)])
@pytest.mark.parametrize("batch_size,batch_rows", [(8, 8), (12, 5)])
def test_replicas_train_each_selected_example_once_and_together(
        rates, batch_size, batch_rows):
    """Two replicas selecting at different rates: each replica's selected
    examples are trained on once, in order, or are still queued; every
    backward step runs on both replicas; rows beyond a replica's queue are
    masked (padding); nothing is dropped."""
    rng = np.random.default_rng(int(10 * rates[0]) + batch_size)
    steps = 12
    selections = [[rng.random(batch_size) < rate for _ in range(steps)]
                  for rate in rates]
    iterations = -(-batch_size // batch_rows) + 1
    results = run_replicas(selections, batch_rows, 2 * batch_rows, iterations)

    backward_steps = {len(batches) for batches, _, _, _ in results}
    assert len(backward_steps) == 1  # The replicas stepped together.
    trained_rows = 0
    for index, (batches, pending, trained, dropped) in enumerate(results):
        assert dropped == 0
        selected_ids = 1000 * index + np.flatnonzero(
            np.concatenate(selections[index]))
        done = np.concatenate(batches + [pending]).astype(int)
        np.testing.assert_array_equal(done, selected_ids)
        assert all(len(batch) <= batch_rows for batch in batches)
        trained_rows += sum(len(batch) for batch in batches)
    # Every replica computed the same total of rows trained on.
    assert {trained for _, _, trained, _ in results} == {trained_rows}
    if rates == (1.0, 0.0):
        assert trained_rows < backward_steps.pop() * 2 * batch_rows  # padded


def test_too_few_iterations_count_what_is_dropped():
    selections = [[np.ones(12, bool)] * 3, [np.zeros(12, bool)] * 3]
    results = run_replicas(selections, batch_rows=4, capacity=8, iterations=2)
    batches, pending, _, dropped = results[0]
    trained = sum(len(batch) for batch in batches)
    assert dropped > 0
    assert trained + len(pending) + dropped == 36
