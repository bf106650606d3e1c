"""Stale selection: reuse stored scores, so skipped examples cost nothing.

Selective-Backprop runs a forward pass on every example to decide which ones
to train on. Stale selection (the paper's "Stale-SB") scores every example
only in one epoch of every `staleness`; in the epochs between, each example's
stored selection probability decides whether it is trained on, so a skipped
example costs neither a forward nor a backward pass.

The scores live in a table indexed by example id (`SelectionState.score_table`:
loss, probability, epoch scored), so the data must carry stable ids
(`keras_sb.data.with_example_ids`, or `example_ids=True` in the pipelines).
Fresh epochs write the inference-mode loss and selection probability of
every example; in stale epochs each example is drawn with the probability of
the last fresh epoch (by `keras_sb.data.stale_filter` in the input pipeline,
before augmentation and batching, or else in the train step), drawn examples
go straight into the queue of the backward step, and its training-mode
losses refresh their loss and epoch (not their probability: training-mode
losses are not comparable with the inference-mode losses the percentiles are
taken over).

The table and its pure functions are `keras_sb.score_table`; this module
holds the `StaleSelection` callback that marks epochs fresh or stale.
"""

import keras
import numpy as np

from keras_sb import selection


def is_stale_epoch(epoch, last_fresh_epoch, staleness):
    """Whether `epoch` reuses the scores of the fresh epoch `last_fresh_epoch`.

    With `staleness = n`, one epoch of every `n` is fresh: epochs
    `f + 1, ..., f + n - 1` after a fresh epoch `f` are stale.

    Args:
        epoch: index of the epoch (over the model's life).
        last_fresh_epoch: index of the last fresh epoch, or -1 if none.
        staleness: `n >= 1`; 1 makes every epoch fresh.
    """
    return last_fresh_epoch >= 0 and 0 < epoch - last_fresh_epoch < staleness


def raise_on_invalid_ids(state):
    """Raises if the epoch that ends saw example ids outside the score
    table (the train step counts them)."""
    invalid = int(state.invalid_example_ids.numpy())
    if invalid:
        state.invalid_example_ids.assign(0)
        raise ValueError(
            f"{invalid} training examples this epoch had an example id "
            f"outside the score table (ids 0 to {state.score_table_size - 1})"
            ". Their scores were not stored. The ids must number the "
            "examples of the training data from 0: make them with "
            "`keras_sb.data.with_example_ids` on the whole training set, "
            "or pass the right `num_examples` to the callback."
        )


class StaleSelection(keras.callbacks.Callback):
    """Scores examples only every `staleness` epochs (the paper's Stale-SB).

    Pass it to `fit` of a `SelectiveBackpropModel` whose training data carry
    example ids (`keras_sb.data.with_example_ids`, or `example_ids=True` in
    `keras_sb.data.training_pipeline` / `ArrayPipeline`). One epoch of every
    `staleness` is fresh: every example is scored by the selection forward
    pass and its loss and selection probability are stored in the model's
    score table. In the other (stale) epochs no selection forward pass runs:
    each example is selected with the probability stored by the last fresh
    epoch, selected examples are trained on in full backprop batches, and
    their training-mode losses are stored as their latest loss. Epochs before
    selection starts (priming) are fresh. The draws are made by
    `keras_sb.data.stale_filter` where the training data pass through one
    (skipped examples are then not even augmented or batched), else in the
    train step.

    The score table has one row per example, is saved with the model and
    restored by `BackupAndRestore`; which epoch was last fresh is stored
    with it, so resumed training keeps the cycle.

    In stale epochs the logged `loss` is the training-mode loss of the
    examples trained on (there is no forward pass over the others), and the
    other compiled metrics are not computed: they are logged as NaN. Validation
    is unaffected.

    Args:
        staleness: `n >= 1`: one fresh epoch, then `n - 1` stale ones. The
            paper uses 3; 1 turns stale selection off.
        num_examples: number of distinct examples (ids `0 ... n - 1`). Leave
            None to take it from data made by `with_example_ids` or
            `ArrayPipeline`.

    Example:

    ```python
    # Stale epochs drawn in the pipeline (`keras_sb.data.stale_filter`):
    train = keras_sb.data.training_pipeline(raw_train, 128, stale_model=model)
    model.fit(train, epochs=30,
              callbacks=[keras_sb.StaleSelection(staleness=3)])
    ```
    """

    def __init__(self, staleness=3, num_examples=None):
        super().__init__()
        if not selection.is_integer(staleness) or staleness < 1:
            raise ValueError(
                f"`staleness` must be an int >= 1. Received: staleness={staleness!r}"
            )
        if num_examples is not None and (
                not selection.is_integer(num_examples) or num_examples < 1):
            raise ValueError(
                "`num_examples` must be None or an int >= 1. "
                f"Received: num_examples={num_examples!r}"
            )
        self.staleness = int(staleness)
        self.num_examples = None if num_examples is None else int(num_examples)
        self._stale = False

    def on_train_begin(self, logs=None):
        if getattr(self.model, "selection_state", None) is None or (
            self.model.selection_state.score_table is None
        ):
            raise ValueError(
                "StaleSelection is a callback for `fit` of a "
                "keras_sb.SelectiveBackpropModel. Received a model of type "
                f"{type(self.model).__name__}."
            )

    def on_epoch_begin(self, epoch, logs=None):
        state = self.model.selection_state
        counters = state.counters()
        self._epoch = counters["epochs_completed"]
        step = counters["scored_batches"]
        selecting = counters["selection_start"] <= step < counters["selection_end"]
        self._stale = selecting and is_stale_epoch(
            self._epoch, counters["last_fresh_epoch"], self.staleness
        )
        if selecting and not self._stale:
            state.last_fresh_epoch.assign(self._epoch)
        self.model.fit_session.begin_epoch(self._stale, self._epoch)

    def on_epoch_end(self, epoch, logs=None):
        state = self.model.selection_state
        session = self.model.fit_session
        kept_fraction = session.kept_fraction()
        if self._stale and kept_fraction is not None and logs is not None:
            # The model saw only the examples the pipeline kept.
            logs["selected_fraction"] = kept_fraction
        raise_on_invalid_ids(state)
        if not self._stale and session.covers_whole_data:
            # A fresh epoch over the whole data scores every row once.
            epochs = keras.ops.convert_to_numpy(state.score_table.epoch.value)
            missing = int(np.sum(epochs != self._epoch))
            if missing:
                raise ValueError(
                    f"{missing} of the {len(epochs)} rows of the score table "
                    "were not scored in this epoch, which went over the whole "
                    "training data: the data have fewer distinct example ids "
                    "than the table has rows. `num_examples` (or the data the "
                    "table was made for) does not match this dataset."
                )

    def on_train_end(self, logs=None):
        # `fit` closes its session, which switches back to the fresh step.
        self._stale = False

    def get_config(self):
        return {"staleness": self.staleness, "num_examples": self.num_examples}
