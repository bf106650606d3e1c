"""The train step of an epoch of data pruning (`keras_sb.pruning`).

No scoring pass and no queue: every example of the batch that the epoch
keeps is trained on in one backward step, weighted by `1 / keep probability`
where the method rescales, and its training-mode loss becomes its score.
Where the input pipeline drew the kept examples (`keras_sb.data.stale_filter`)
the batch holds only those, plus padding rows (`PADDING_ID`) in the last
batch; otherwise the step draws them from the stored probabilities and
trains on the whole batch with the skipped rows weighted 0.
"""

from keras import ops

from keras_sb import backend
from keras_sb import data as data_utils
from keras_sb import scoring
from keras_sb import selection
from keras_sb import score_table
from keras_sb import step
from keras_sb.queue_layout import apply_row_weights


def train_step(model, x, y, sample_weight, example_ids):
    """One step of a pruned epoch; returns the logs.

    Args:
        model: a compiled `SelectiveBackpropModel` with a score table.
        x, y, sample_weight: the batch.
        example_ids: int32 ids of its examples.
    """
    if example_ids is None:
        raise ValueError("A pruned epoch needs training batches with example ids.")
    state = model.selection_state
    step.prepare_backward_step(model)
    table = step.table_values(state)
    probabilities = score_table.stored_probabilities(table, example_ids)
    if model._step_settings.pipeline_draws:
        kept = ops.not_equal(example_ids, data_utils.PADDING_ID)
        step.count_invalid_ids(model, ops.where(kept, example_ids, 0))
    else:
        step.count_invalid_ids(model, example_ids)
        kept = selection.bernoulli(probabilities, state.seed_generator)
    row_weights = ops.cast(kept, "float32")
    if model._step_settings.rescale:
        row_weights = row_weights / probabilities
    training, y_pred = backend.backward_step(
        model, backend.training_state(model), x, y,
        apply_row_weights(sample_weight, row_weights),
        return_predictions=True,
    )
    backend.restore_training_state(model, training)

    # The scores: training-mode losses, before the rescaling.
    losses = scoring.per_example_loss(model._compile_loss, y, y_pred,
                                      sample_weight)
    table = score_table.record_scores(table, example_ids, losses,
                                      probabilities,
                                      state.epochs_completed.value, mask=kept)
    step.assign_table(state, table)
    step.add_counts(state.score_table.selected, example_ids, kept)
    step.add_counts(state.score_table.backprops, example_ids, kept)

    num_kept = ops.sum(ops.cast(kept, "int32"))
    trained = ops.logical_and(kept, ops.isfinite(losses))
    model._loss_tracker.update_state(
        ops.divide_no_nan(ops.sum(ops.where(trained, losses, 0.0)),
                          ops.sum(ops.cast(trained, "float32"))),
        sample_weight=num_kept,
    )
    logs = model.compute_metrics(
        x, y, y_pred,
        sample_weight=apply_row_weights(sample_weight,
                                        ops.cast(kept, "float32")),
    )
    state.backprops.assign_add(num_kept)
    batch_size = ops.shape(example_ids)[0]
    if model._step_settings.pipeline_draws:
        batch_size = num_kept
    return step.selection_logs(model, logs, batch_size, kept)
