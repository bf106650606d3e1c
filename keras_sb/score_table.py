"""The score table: one row per training example, indexed by example id.

`SelectionState.score_table` holds it as variables, and the train steps
write it as pure functions of its values (this module). Its columns are
what stale selection and pruning draw from (each example's last loss and
selection probability, the epoch of that score) and what the per-example
report (`keras_sb.report`) reads (how often each example was selected and
backpropagated).
"""

from typing import NamedTuple

from keras import ops


class ScoreTable(NamedTuple):
    """The score table: one row per example id, as variables
    (`SelectionState.score_table`) or as their values.

    Attributes:
        loss: float32 `(n,)`, each example's last loss (NaN until scored).
        probability: float32 `(n,)`, its last selection (or keep)
            probability (1 until scored).
        epoch: int32 `(n,)`, the epoch of its last score (`NOT_SCORED`).
        selected: int32 `(n,)`, how many times it was selected (or kept).
        backprops: int32 `(n,)`, how many times it was in a backward step.
    """

    loss: object
    probability: object
    epoch: object
    selected: object = None
    backprops: object = None


def valid_example_ids(example_ids, table_size):
    """Whether each id indexes a row of a table of `table_size` examples."""
    return ops.logical_and(example_ids >= 0, example_ids < table_size)


def _safe_ids(example_ids, table_size):
    return ops.clip(example_ids, 0, table_size - 1)


def stored_probabilities(table, example_ids):
    """Stored selection probabilities of `example_ids`.

    An invalid id (outside the table) gets probability 1: the example is
    trained on, and the model reports the bad id at the end of the epoch.

    Args:
        table: a `ScoreTable` (or a tuple in its order) of tensors `(n,)`.
        example_ids: int32 tensor `(batch_size,)`.
    """
    table = ScoreTable(*table)
    size = ops.shape(table.probability)[0]
    stored = ops.take(table.probability, _safe_ids(example_ids, size), axis=0)
    return ops.where(valid_example_ids(example_ids, size), stored, 1.0)


def record_scores(table, example_ids, losses, probabilities, epoch, mask=None):
    """Writes scores into the table (a pure function: returns the new table).

    Rows of invalid ids, and rows where `mask` is False, are left as they
    were; so are the counts.

    Args:
        table: a `ScoreTable` (or a tuple in its order) of tensors `(n,)`.
        example_ids: int32 tensor `(batch_size,)`.
        losses: float tensor `(batch_size,)`.
        probabilities: float tensor `(batch_size,)`.
        epoch: int32 scalar, the epoch the scores come from.
        mask: optional bool tensor `(batch_size,)` of rows to write.

    Returns:
        The updated `ScoreTable`.
    """
    table = ScoreTable(*table)
    size = ops.shape(table.loss)[0]
    write = valid_example_ids(example_ids, size)
    if mask is not None:
        write = ops.logical_and(write, mask)
    indices = ops.expand_dims(_safe_ids(example_ids, size), -1)
    epochs = ops.broadcast_to(ops.cast(epoch, "int32"), ops.shape(example_ids))
    written = {}
    for name, values in (("loss", losses), ("probability", probabilities),
                         ("epoch", epochs)):
        column = getattr(table, name)
        values = ops.where(write, ops.cast(values, column.dtype),
                           ops.take(column, indices[:, 0], axis=0))
        written[name] = ops.scatter_update(column, indices, values)
    return table._replace(**written)


def add_counts(column, example_ids, mask=None):
    """Adds 1 to the count `column` at each id where `mask` is True (a
    pure function; an id that repeats counts each time, invalid ids not).

    Args:
        column: int32 tensor `(n,)`, e.g. `ScoreTable.selected`.
        example_ids: int32 tensor `(batch_size,)`.
        mask: optional bool tensor `(batch_size,)` (None: every row).
    """
    size = ops.shape(column)[0]
    counted = valid_example_ids(example_ids, size)
    if mask is not None:
        counted = ops.logical_and(counted, mask)
    # A row of zeros where the id is not counted: `scatter` sums repeats.
    added = ops.scatter(ops.expand_dims(_safe_ids(example_ids, size), -1),
                        ops.cast(counted, column.dtype), (size,))
    return column + added
