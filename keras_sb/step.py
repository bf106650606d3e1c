"""The selective train step, as functions of the model.

`train_step` runs inside the compiled train step of every backend (on JAX
inside a `keras.StatelessScope`, see `keras_sb.backend.jax`), with Keras
variables and ops only:

1. scoring: an inference-mode forward pass over the whole batch, its loss
   and metrics (what the logs report), and per-example losses
   (`keras_sb.scoring`);
2. selection: the losses join the history and each example is drawn with
   the strategy's probability (`draw_selection`);
3. queue and backward steps (`keras_sb.backward`);
4. the logs' counters (`selection_logs`).

A stale epoch (`keras_sb.StaleSelection`) skips 1: each example is drawn
with the probability stored in the score table (`stale_train_step`). An
epoch of data pruning (`keras_sb.pruning`) trains on every kept example
without a queue (`keras_sb.pruned_step`).
"""

from typing import NamedTuple

import keras
from keras import ops

from keras_sb import _keras_compat
from keras_sb import backend
from keras_sb import backward
from keras_sb import pruned_step
from keras_sb import data as data_utils
from keras_sb import epoch_schedule
from keras_sb import scoring
from keras_sb import selection
from keras_sb import score_table
from keras_sb.queue_layout import present_leaves


class StepSettings(NamedTuple):
    """What the compiled step depends on besides the data; a change makes
    a new train function.

    Attributes:
        stale_epoch: whether this is a stale epoch (`stale_train_step`).
        pipeline_draws: whether `keras_sb.data.stale_filter` drew the
            examples of stale epochs in the input pipeline.
        class_weight: `fit`'s `class_weight` where the step applies it (to
            batches with example ids), else None.
        pruning: whether the epochs prune the data (`keras_sb.pruning`):
            every kept example is trained on (`pruned_step.train_step`).
        rescale: whether kept examples weigh `1 / keep probability`.
    """

    stale_epoch: bool = False
    pipeline_draws: bool = False
    class_weight: dict | None = None
    pruning: bool = False
    rescale: bool = False


def train_step(model, data):
    """One selective train step on a batch; returns the logs.

    Args:
        model: a compiled `SelectiveBackpropModel`.
        data: the batch as `fit` passes it (with example ids where the
            data carry them).
    """
    data, example_ids = data_utils.split_example_ids(data)
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    sample_weight = batch_class_weights(model, y, sample_weight,
                                        example_ids is not None)
    if not model._uses_example_ids(example_ids):
        example_ids = None
    else:
        example_ids = ops.cast(example_ids, "int32")
    if model._step_settings.pruning:
        return pruned_step.train_step(model, x, y, sample_weight, example_ids)
    if model._step_settings.stale_epoch:
        return stale_train_step(model, x, y, sample_weight, example_ids)
    state = model.selection_state

    # 1. Scoring: inference-mode forward pass over the whole batch. Its
    #    loss and metrics are what the logs report.
    y_pred = forward(model, x, training=False)
    prepare_backward_step(model)
    loss = model._compute_loss(
        x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=False
    )
    batch_size = ops.shape(present_leaves(x)[0])[0]
    model._loss_tracker.update_state(
        _keras_compat.unscale_loss_for_distribution(loss),
        sample_weight=batch_size,
    )
    logs = model.compute_metrics(x, y, y_pred, sample_weight=sample_weight)
    losses = scoring.per_example_loss(
        model._compile_loss, y, y_pred, sample_weight
    )

    # 2. Selection; with example ids, the scores go into the table.
    selected, probabilities = draw_selection(model, losses)
    if example_ids is not None:
        count_invalid_ids(model, example_ids)
        table = score_table.record_scores(
            table_values(state), example_ids, losses, probabilities,
            state.epochs_completed.value,
        )
        assign_table(state, table)
        add_counts(state.score_table.selected, example_ids, selected)

    # 3. Queue the selected examples; a backward step per full queue.
    backward.queue_and_train(model, x, y, sample_weight, example_ids,
                             selected, probabilities)
    return selection_logs(model, logs, batch_size, selected)


def stale_train_step(model, x, y, sample_weight, example_ids):
    """The step of a stale epoch: no selection forward pass.

    Each example is selected with the probability stored in the score
    table; selected examples are queued as in a fresh epoch, and each
    backward step stores the training-mode losses of the examples it
    trained on.
    """
    state = model.selection_state
    if example_ids is None:
        raise ValueError(
            "A stale epoch needs training batches with example ids."
        )
    prepare_backward_step(model)
    table = table_values(state)
    probabilities = score_table.stored_probabilities(table, example_ids)
    probabilities = ops.where(selecting(state), probabilities, 1.0)
    pipeline_draws = model._step_settings.pipeline_draws
    if pipeline_draws:
        # `keras_sb.data.stale_filter` drew these examples already; rows
        # it added to fill the last batch are not examples.
        selected = ops.not_equal(example_ids, data_utils.PADDING_ID)
        count_invalid_ids(model, ops.where(selected, example_ids, 0))
    else:
        count_invalid_ids(model, example_ids)
        selected = selection.bernoulli(probabilities, state.seed_generator)
    add_counts(state.score_table.selected, example_ids, selected)
    zero = ops.convert_to_tensor(0.0, dtype="float32")
    scores = backward.queue_and_train(
        model, x, y, sample_weight, example_ids, selected, probabilities,
        scores=backward.StaleScores(table, zero, zero),
    )
    assign_table(state, scores.table)
    model._loss_tracker.update_state(
        ops.divide_no_nan(scores.loss_sum, scores.loss_count),
        sample_weight=scores.loss_count,
    )
    # Only the loss of the examples trained on is known (NaN, not 0,
    # while none was trained on); the compiled metrics would need a
    # forward pass over all examples.
    nan = ops.convert_to_tensor(float("nan"))
    logs = {name: nan for name in model.get_metrics_result()}
    logs["loss"] = ops.where(model._loss_tracker.count.value > 0,
                             model._loss_tracker.result(), nan)
    batch_size = ops.shape(example_ids)[0]
    if pipeline_draws:
        batch_size = ops.sum(ops.cast(selected, "int32"))
    return selection_logs(model, logs, batch_size, selected)


def table_values(state):
    """The values of the score table's score columns; its counts, which
    `add_counts` and the backward steps update, as `()` (nothing to
    carry through a loop)."""
    table = state.score_table
    return score_table.ScoreTable(table.loss.value, table.probability.value,
                                  table.epoch.value, (), ())


def assign_table(state, table):
    """Writes the columns of `table` (a `ScoreTable`) that hold values."""
    for column, value in zip(state.score_table, table):
        if value is not None and not isinstance(value, tuple):
            column.assign(value)


def add_counts(column, example_ids, mask):
    """Adds 1 to the count variable `column` of the score table (e.g.
    `state.score_table.selected`) for each example of the `mask`."""
    column.assign(score_table.add_counts(column.value, example_ids, mask))


def forward(model, x, training):
    """The model's forward pass, with `training` where `call` takes it."""
    if model._call_has_training_arg:
        return model(x, training=training)
    return model(x)


def prepare_backward_step(model):
    """Checks there is something to train; builds the optimizer; hands
    the epochs done to an `EpochSchedule`."""
    if not model.trainable_weights:
        raise ValueError(
            f"The model {model.name!r} has no trainable weights, so there "
            "is nothing to backpropagate."
        )
    if not model.optimizer.built:
        # Built here, not on its first use inside the queue's loop (on
        # JAX Keras builds it before training).
        model.optimizer.build(model.trainable_variables)
    # The epochs done, read here where the whole training state is in
    # scope, for an `EpochSchedule` (the optimizer's own scope on JAX
    # holds only its and the trainable variables).
    epoch_schedule.bind_progress(model)


def batch_class_weights(model, y, sample_weight, has_ids):
    """Sample weights of a batch with ids from `fit`'s `class_weight`,
    which Keras's data adapter cannot apply to batches with ids."""
    class_weight = model._step_settings.class_weight
    if not has_ids or class_weight is None:
        return sample_weight
    if sample_weight is not None:
        raise ValueError(
            "You cannot use `class_weight` and `sample_weight` at the same "
            "time."
        )
    return data_utils.class_weight_to_sample_weights(y, class_weight)


def count_invalid_ids(model, example_ids):
    """Counts ids outside the score table (`StaleSelection` reports them)."""
    state = model.selection_state
    valid = score_table.valid_example_ids(example_ids, state.score_table_size)
    state.invalid_example_ids.assign_add(
        ops.sum(ops.cast(ops.logical_not(valid), "int32"))
    )


def selecting(state):
    """Whether selection is on at the current step (a bool tensor)."""
    step = state.scored_batches.value
    return ops.logical_and(
        step >= state.selection_start.value, step < state.selection_end.value
    )


def draw_selection(model, losses):
    """Updates the loss history and draws the selected examples.

    Returns:
        Tuple `(selected, probabilities)`: a bool mask and the float32
        probabilities it was drawn with.
    """
    state = model.selection_state
    replicas, replica_id = backend.replica_info()
    # Every replica ranks against the same history: that of the losses
    # of all replicas (the global batch).
    scored = losses if replicas == 1 else backend.all_gather(losses)
    history, position = selection.append_to_history(
        state.loss_history.value, state.history_position.value, scored
    )
    state.loss_history.assign(history)
    state.history_position.assign(position)
    finite = ops.isfinite(losses)
    probabilities = ops.cast(
        model.strategy.probabilities(ops.where(finite, losses, 0.0), history),
        "float32",
    )
    # Outside the window, and for examples whose loss is not finite (as
    # plain Keras would), every example is trained on.
    keep = ops.logical_or(ops.logical_not(selecting(state)),
                          ops.logical_not(finite))
    probabilities = ops.where(keep, 1.0, probabilities)
    selected = selection.bernoulli(
        probabilities, state.seed_generator, stream=replica_id,
        num_streams=replicas,
    )
    return selected, probabilities


def selection_logs(model, logs, batch_size, selected):
    """Updates the counters behind the logs and adds their values."""
    state = model.selection_state
    num_selected = ops.sum(ops.cast(selected, "int32"))
    if backend.replica_info()[0] > 1:
        # The counters of every replica count all replicas' examples.
        counts = backend.all_reduce_sum(ops.stack([
            ops.cast(batch_size, "int32"), num_selected,
        ]))
        batch_size, num_selected = counts[0], counts[1]
    state.scored_batches.assign_add(1)
    state.epoch_scored.assign_add(ops.cast(batch_size, "int32"))
    state.epoch_selected.assign_add(num_selected)
    state.selected_total.assign_add(num_selected)
    logs["selected_fraction"] = ops.divide_no_nan(
        ops.cast(state.epoch_selected.value, "float32"),
        ops.cast(state.epoch_scored.value, "float32"),
    )
    # A tensor (a variable itself fails in the logs of `run_eagerly`).
    logs["backprops"] = ops.copy(state.backprops.value)
    return logs
