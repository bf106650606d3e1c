"""Queue the selected examples of a batch; a backward step per full queue.

Functions of the model, called inside its compiled train step (`step.py`).
The backward step itself is the backend's (`keras_sb.backend`); several
replicas of a strategy go through `replicas.py` instead.
"""

from typing import NamedTuple

from keras import ops

from keras_sb import backend
from keras_sb import queue as queue_ops
from keras_sb import replicas
from keras_sb import scoring
from keras_sb import score_table
from keras_sb.queue_layout import check_queue_signature
from keras_sb.queue_layout import present_leaves
from keras_sb.queue_layout import queued_batch


class StaleScores(NamedTuple):
    """What the backward steps of a stale epoch refresh, as a loop carry.

    Attributes:
        table: the score table's values (`score_table.ScoreTable`).
        loss_sum: float32 sum of the training-mode losses stored.
        loss_count: float32 number of them.
    """

    table: score_table.ScoreTable
    loss_sum: object
    loss_count: object


def queue_and_train(model, x, y, sample_weight, example_ids, selected,
                    probabilities, scores=None):
    """Queues the selected examples and trains on each full queue.

    Args:
        model: a `SelectiveBackpropModel`.
        x, y, sample_weight: the batch.
        example_ids: int32 ids of its examples, or None.
        selected: bool tensor `(batch_size,)`.
        probabilities: the examples' selection probabilities.
        scores: in stale epochs, the `StaleScores` that backward steps
            refresh; None in fresh epochs.

    Returns:
        `scores` after the backward steps (None in fresh epochs).
    """
    state = model.selection_state
    check_queue_signature(model, x, y, sample_weight, example_ids)
    batch = present_leaves((x, y, sample_weight))
    if model.strategy.reweights:
        batch.append(model.strategy.importance_weights(probabilities))
    if example_ids is not None:
        batch.append(example_ids)
    if backend.replica_info()[0] > 1:
        replicas.queue_and_train(model, (x, y, sample_weight), batch, selected,
                                 has_ids=example_ids is not None)
        return None
    refresh = scores is not None
    has_ids = example_ids is not None
    # Each example's backprop count, updated by the backward steps.
    counts = state.score_table.backprops.value if has_ids else ()
    drained = queue_ops.drain(
        [buffer.value for buffer in state.queue],
        state.queue_size.value,
        batch,
        selected,
        lambda is_full, queue, carry: _backward_if_full(
            model, is_full, queue, carry, (x, y, sample_weight), has_ids,
            refresh,
        ),
        carry=(backend.training_state(model), scores if refresh else (),
               counts),
    )
    training, scores, counts = drained.carry
    backend.restore_training_state(model, training)
    if has_ids:
        state.score_table.backprops.assign(counts)
    for buffer, value in zip(state.queue, drained.queue):
        buffer.assign(value)
    state.queue_size.assign(drained.size)
    state.backprops.assign_add(drained.steps * state.queue_batch_rows)
    return scores if refresh else None


def _backward_if_full(model, is_full, queue, carry, structure, has_ids,
                      refresh):
    """Trains on a full queue; counts the backprops of its examples (with
    ids); in stale epochs also refreshes their scores (`refresh_scores`)."""

    def step(carry):
        batch = queued_batch(model, queue, structure, has_ids)
        training, scores, counts = carry
        if has_ids:
            counts = score_table.add_counts(counts, batch.example_ids)
        if not refresh:
            training = backend.backward_step(
                model, training, batch.x, batch.y, batch.trained_weight
            )
            return training, scores, counts
        training, y_pred = backend.backward_step(
            model, training, batch.x, batch.y, batch.trained_weight,
            return_predictions=True,
        )
        losses = scoring.per_example_loss(
            model._compile_loss, batch.y, y_pred, batch.sample_weight
        )
        return (training,
                refresh_scores(model, scores, batch.example_ids, losses),
                counts)

    return backend.run_if(is_full, step, carry)


def refresh_scores(model, scores, example_ids, losses):
    """Stores the training-mode losses of a stale epoch's backward step:
    a pure function on the carried `StaleScores`.

    The selection probabilities stay those of the last fresh epoch.
    Training-mode losses are not comparable with the inference-mode
    losses of the history (BatchNorm uses batch statistics, dropout is
    on, and a stale epoch sees only the selected, high losses): ranked
    against it, they would lower the selected fraction of the next stale
    epoch.
    """
    table = score_table.record_scores(
        scores.table, example_ids, losses,
        score_table.stored_probabilities(scores.table, example_ids),
        model.selection_state.epochs_completed.value,
    )
    finite = ops.isfinite(losses)
    return StaleScores(
        table,
        scores.loss_sum + ops.sum(ops.where(finite, losses, 0.0)),
        scores.loss_count + ops.sum(ops.cast(finite, "float32")),
    )
