"""What one `fit` call shares between the model, its train step and the
callbacks.

`SelectiveBackpropModel.fit` opens a `FitSession` (as `model.fit_session`)
and closes it when `fit` returns or fails; `StaleSelection` starts each
epoch's draws through it. The functions below check `fit`'s arguments for
selection before Keras's `fit` starts.
"""

import contextlib
import types
import warnings

import keras
from keras import ops

from keras_sb import _keras_compat
from keras_sb import backend
from keras_sb import data as data_utils
from keras_sb import epoch_schedule
from keras_sb import pruning
from keras_sb import stale
from keras_sb.callbacks import SelectionProgbar
from keras_sb.callbacks import SelectionWindow


class FitSession:
    """The state of one `fit` call of a `SelectiveBackpropModel`.

    Args:
        model: the `SelectiveBackpropModel` being fit.
        batch_size: the batch size of the training data, when it is known
            before the first batch (None otherwise).
        steps_per_epoch: `fit`'s `steps_per_epoch`.
        stale_filter: the `keras_sb.data.StaleFilter` the training data pass
            through, when stale selection draws in the pipeline; else None.
        num_examples: the number of training examples, when the data tell
            it before training (`keras_sb.data.count_examples`); else None.
    """

    def __init__(self, model, batch_size=None, steps_per_epoch=None,
                 stale_filter=None, num_examples=None):
        self.model = model
        self.batch_size = batch_size
        self.steps_per_epoch = steps_per_epoch
        self.stale_filter = stale_filter
        self.num_examples = num_examples
        # Examples the train step consumed in the last epoch (set by
        # `SelectionWindow`), None before the first one ends.
        self.last_epoch_scored = None
        self._epoch_iterator = None

    @property
    def covers_whole_data(self):
        """Whether each epoch is one pass over the whole training data."""
        return not self.steps_per_epoch

    def epoch_size(self, steps=None):
        """Examples an epoch goes over, as far as known (0: not known).

        `steps_per_epoch` full batches where `fit` has them; else the
        training examples the data told (`num_examples`); else those the
        last epoch consumed; else `steps` full batches (`steps`: Keras's
        count of an epoch's batches, so at most a batch too many).
        `begin_epoch` of stale selection and pruning sets the size of an
        epoch whose examples are drawn in the input pipeline.
        """
        if self.steps_per_epoch and self.batch_size:
            return int(self.steps_per_epoch) * int(self.batch_size)
        if self.num_examples:
            return int(self.num_examples)
        if self.last_epoch_scored:
            return int(self.last_epoch_scored)
        if steps and self.batch_size:
            return int(steps) * int(self.batch_size)
        return 0

    def remember_epoch_iterator(self, iterator):
        """Keeps `fit`'s epoch iterator, whose length must be reset each
        epoch when the pipeline filters examples."""
        if self.stale_filter is not None and iterator is not None:
            if self._epoch_iterator is None:
                self._epoch_iterator = iterator

    def begin_pruned_epoch(self, probabilities):
        """Starts an epoch of data pruning (`keras_sb.pruning`) that keeps
        each example with its entry of `probabilities`."""
        if self.stale_filter is not None:
            epoch = int(self.model.selection_state.epochs_completed.numpy())
            self._begin_filter_epoch(True, epoch, probabilities)

    def _begin_filter_epoch(self, drawn, epoch, probabilities):
        """Hands an epoch's draws (or none) to the pipeline's filter."""
        self.stale_filter.begin_epoch(drawn, epoch, probabilities)
        if drawn:
            # The epoch goes over the kept examples (`EpochSchedule`).
            self.model.selection_state.epoch_size.assign(
                self.stale_filter.kept_count())
        if self._epoch_iterator is not None:
            # Each epoch of filtered data runs until the data run out.
            _keras_compat.forget_epoch_length(self._epoch_iterator)

    def begin_epoch(self, stale_epoch, epoch):
        """Starts epoch `epoch` (over the model's life) of stale selection.

        Args:
            stale_epoch: whether the epoch reuses stored scores.
            epoch: the epoch's index over the model's life.
        """
        if self.stale_filter is not None:
            probabilities = None
            if stale_epoch:
                probabilities = ops.convert_to_numpy(
                    self.model.selection_state.score_table.probability.value
                )
            self._begin_filter_epoch(stale_epoch, epoch, probabilities)
        self.model._use_stale_step(stale_epoch)

    def kept_fraction(self):
        """Fraction of the examples the pipeline kept this epoch, or None
        where the train step draws."""
        if self.stale_filter is None:
            return None
        return self.stale_filter.kept_fraction()

    @contextlib.contextmanager
    def warnings_filtered(self):
        """Keras's `fit` inside: without its warning that an epoch of
        filtered data ran out of data (each does, by design)."""
        with warnings.catch_warnings():
            if self.stale_filter is not None:
                warnings.filterwarnings(
                    "ignore", message="Your input ran out of data")
            yield

    def close(self):
        """Ends the session: the next `fit` starts with a fresh epoch, and
        `train_on_batch` selects (it has no pruned epochs)."""
        self.model._use_stale_step(False)
        self.model._change_step_settings(pruning=False, rescale=False)
        self._epoch_iterator = None


def open_session(model, x, batch_size, callbacks, verbose, class_weight,
                 steps_per_epoch):
    """Checks `fit`'s arguments for selection and opens its `FitSession`.

    Returns:
        Tuple `(x, callbacks, class_weight, session)`: the arguments to pass
        on to Keras's `fit`, and the session.
    """
    if isinstance(x, types.GeneratorType) and batch_size is None:
        # Its first batch tells the batch size; Keras reads it again.
        data_batch_size, x = data_utils.peek_generator(x)
    else:
        data_batch_size = data_utils.batch_size_of(x, batch_size)
    if data_batch_size is not None and data_batch_size > model.history_size:
        # A batch's losses join the history before they are ranked
        # against it: the history must hold a whole batch.
        raise ValueError(
            f"`history_size` must be at least the batch size "
            f"({data_batch_size}). Received: "
            f"history_size={model.history_size}"
        )
    if model.backprop_batch_size is None:
        model._fit_batch_size = data_batch_size
    callbacks, given = with_selection_callbacks(
        callbacks, SelectionWindow(model._options.start, model._options.end),
        model)
    table_callbacks = [c for c in given if isinstance(
        c, (stale.StaleSelection, pruning.EpochPruning))]
    if len(table_callbacks) > 1:
        raise ValueError(
            "Pass at most one of StaleSelection, InfoBatch and RandomSubset "
            "to `fit`: each decides which examples an epoch trains on. "
            f"Received: {[type(c).__name__ for c in table_callbacks]}"
        )
    table_callback = table_callbacks[0] if table_callbacks else None
    if table_callback is not None:
        if backend.num_replicas(model) > 1:
            raise ValueError(
                f"{type(table_callback).__name__} does not support training "
                "on several replicas of a tf.distribute strategy yet. Train "
                "without it, or on one replica."
            )
        prepare_score_table(model, x, table_callback)
    elif backend.num_replicas(model) == 1:
        prepare_report_table(model, x)
    pruning_callback = (table_callback if isinstance(
        table_callback, pruning.EpochPruning) else None)
    model._change_step_settings(
        pruning=pruning_callback is not None,
        rescale=pruning_callback is not None and pruning_callback.rescale)
    stale_filter = checked_stale_filter(
        model, x, table_callback, steps_per_epoch)
    if (verbose != 0 and isinstance(callbacks, list)
            and not any(isinstance(c, keras.callbacks.ProgbarLogger)
                        for c in callbacks)):
        callbacks.append(
            SelectionProgbar(varying_epochs=stale_filter is not None))
    class_weight = class_weight_for_keras(model, x, class_weight)
    session = FitSession(model, data_batch_size, steps_per_epoch, stale_filter,
                         num_examples=data_utils.count_examples(x))
    epoch_schedule.warn_if_step_schedule(model)
    epoch_schedule.bind_to_model(model)
    return x, callbacks, class_weight, session


def warn_if_nothing_trained(model, counters_before):
    """Warns when a `fit` selected examples but never filled a backprop
    batch (its weights did not change)."""
    counters = model.selection_state.counters()
    selected = counters["selected_total"] - counters_before["selected_total"]
    if selected and counters["backprops"] == counters_before["backprops"]:
        warnings.warn(
            f"This `fit` selected {selected} examples but ran no backward "
            f"step: {counters['queue_size']} examples wait in the queue "
            f"for a full backprop batch of {model.backprop_batch_size}. "
            "The weights did not change. Train for more steps, or pass a "
            "smaller `backprop_batch_size=` to SelectiveBackpropModel.",
            stacklevel=3,
        )


def class_weight_for_keras(model, x, class_weight):
    """`fit`'s `class_weight` for Keras's data adapter, which cannot apply
    it to batches with example ids: for those the train step turns it into
    sample weights (see `step.batch_class_weights`)."""
    in_step = None
    if class_weight and data_utils.has_example_ids(
            data_utils.peek_structure(x)):
        in_step, class_weight = dict(class_weight), None
    model._change_step_settings(class_weight=in_step)
    return class_weight


def with_selection_callbacks(callbacks, window, model):
    """`fit`'s callbacks with `window` first.

    Returns:
        Tuple `(callbacks, given)`: what to pass to Keras, and the list of
        callbacks in it.
    """
    if isinstance(callbacks, keras.callbacks.CallbackList):
        callbacks.callbacks.insert(0, window)
        window.set_model(model)
        return callbacks, callbacks.callbacks
    callbacks = [window] + list(callbacks or [])
    return callbacks, callbacks


def checked_stale_filter(model, x, table_callback, steps_per_epoch):
    """The `stale_filter` the training data pass through, checked, where
    `table_callback` (stale selection or pruning) uses it; sets the step's
    kind of draws."""
    stale_filter = data_utils.find_stale_filter(x)
    if stale_filter is not None and stale_filter.model is not model:
        raise ValueError(
            "The training data pass through a `keras_sb.data.stale_filter` "
            "made for another model. Make the filter with the model that "
            "trains on the data: `keras_sb.data.stale_filter(model)`."
        )
    if stale_filter is not None and table_callback is None:
        warnings.warn(
            "The training data pass through a `keras_sb.data.stale_filter` "
            "(as `selective_pipeline` makes them), but `fit` has no "
            "callback that draws examples in it: every epoch scores every "
            "example and selects in the train step. Pass "
            "`callbacks=[keras_sb.StaleSelection(3)]` for stale selection, "
            "or `keras_sb.InfoBatch()` for pruning.",
            stacklevel=4,
        )
        stale_filter = None  # No epoch draws: it passes every example.
    if stale_filter is None and isinstance(table_callback, pruning.EpochPruning):
        warnings.warn(
            f"{type(table_callback).__name__} draws the kept examples in the "
            "train step because the training data do not pass through a "
            "`keras_sb.data.stale_filter`: pruned examples are still read, "
            "augmented and passed through the model (with weight 0), so "
            "pruning saves no time. Make the data with "
            "`keras_sb.data.selective_pipeline(data, model, batch_size)`.",
            stacklevel=4,
        )
    if stale_filter is not None and steps_per_epoch:
        # Keras would keep one iterator across epochs: batches drawn for
        # one epoch (and padded) would reach the next.
        raise ValueError(
            "With `keras_sb.data.stale_filter` in the training data, each "
            "epoch is one pass over the data, as long as the filter lets "
            "it be: do not repeat the data, and leave `steps_per_epoch` "
            f"out. Received: steps_per_epoch={steps_per_epoch!r}"
        )
    model._change_step_settings(pipeline_draws=stale_filter is not None)
    return stale_filter


def prepare_score_table(model, x, callback):
    """Checks data for stale selection or pruning (`callback`) and creates
    the score table."""
    name = type(callback).__name__
    structure = data_utils.peek_structure(x)
    if structure is not None and not data_utils.has_example_ids(structure):
        raise ValueError(
            f"{name} needs training data whose examples carry stable ids: "
            "make them with `keras_sb.data.selective_pipeline(data, model, "
            "batch_size)`, or `keras_sb.data.with_example_ids` (before "
            "shuffling and augmenting), `keras_sb.data.training_pipeline("
            "..., example_ids=True)` or `ArrayPipeline(..., "
            "example_ids=True)`. The training batches have no `example_id`."
        )
    counted = data_utils.count_examples(x)
    num_examples = callback.num_examples or counted
    if callback.num_examples and counted and callback.num_examples != counted:
        raise ValueError(
            f"{name} was given num_examples={callback.num_examples}"
            f", but the training data have {counted} examples."
        )
    state = model.selection_state
    if state.score_table is not None:
        if num_examples and num_examples != state.score_table_size:
            raise ValueError(
                f"The model's score table has {state.score_table_size} "
                f"rows, but the training data have {num_examples} "
                f"examples. {name} stores one score per example of one "
                "training set; train on the data the table was made for."
            )
        return
    if num_examples is None:
        raise ValueError(
            "Could not tell how many examples the training data have. "
            f"Pass `num_examples=` to {name}."
        )
    state.build_score_table(int(num_examples))
    model.train_function = None  # Its state has new variables.


def prepare_report_table(model, x):
    """Creates the score table for training data with example ids and a
    known number of examples, so that the per-example report
    (`SelectiveBackpropModel.selection_report`) counts every example."""
    state = model.selection_state
    structure = data_utils.peek_structure(x)
    if structure is None or not data_utils.has_example_ids(structure):
        return
    num_examples = data_utils.count_examples(x)
    if state.score_table is not None:
        if num_examples and num_examples != state.score_table_size:
            warnings.warn(
                f"The model's per-example scores and counts are for "
                f"{state.score_table_size} examples, but this `fit`'s "
                f"training data have {num_examples}: ids of both data sets "
                "share the rows of `selection_report()`, and ids beyond "
                "its rows are not counted.",
                stacklevel=4,
            )
        return
    if not num_examples:
        return
    state.build_score_table(int(num_examples))
    model.train_function = None  # Its state has new variables.
