"""Learning rate schedules that follow epochs of data, not optimizer steps.

A Keras `LearningRateSchedule` is evaluated at `optimizer.iterations`, the
number of optimizer (backward) steps. Selective-Backprop and data pruning
make fewer of them per epoch than plain training, so a schedule sized for
plain training (`decay_steps=epochs * steps_per_epoch`) would cover several
times more epochs: after the planned epochs a cosine decay has not decayed.
`EpochSchedule` evaluates it at the epochs of data done instead.

Where the progress comes from: the model's selection state counts the
completed epochs (`epochs_completed`), the examples the train step consumed
this epoch (`epoch_scored`) and how many the epoch goes over (`epoch_size`,
set at each epoch start; see `keras_sb.callbacks.SelectionWindow`).
`epoch_progress` combines them.

On JAX, the optimizer updates the weights inside its own
`keras.StatelessScope` (`optimizer.stateless_apply`), which holds only the
optimizer's and the trainable variables: reading the selection state from
there would read trace-time constants. So the train step reads the progress
in its own scope, over the whole training state, and hands it to the
schedule (`bind_progress`, called by `keras_sb.step.prepare_backward_step`),
and takes it back when the step ends (`train_step_scope`), so that no traced
value outlives the step.
"""

import contextlib
import sys
import warnings
import weakref

import keras
from keras import ops

from keras_sb import _keras_compat


@keras.saving.register_keras_serializable(package="keras_sb")
class EpochSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """A learning rate schedule that follows the epochs of data done.

    Wraps a Keras learning rate schedule sized for plain training (in
    optimizer steps, with `steps_per_epoch` steps per epoch) and evaluates
    it at `progress * steps_per_epoch`, where `progress` is the number of
    epochs of data done: completed epochs plus the fraction of the current
    one. A `keras_sb.SelectiveBackpropModel` makes fewer optimizer steps per
    epoch than plain training (it trains on the selected examples only), so
    the bare schedule, which counts optimizer steps, would run several times
    slower; wrapped, it reaches the end of its decay at the end of the
    planned epochs, as in plain training.

    In a plain `keras.Model` (or any model without a selection state) the
    wrapper evaluates the schedule at the optimizer step, so training is
    exactly that with the bare schedule.

    The fraction of the current epoch is known where `fit` can tell how many
    examples an epoch goes over: each epoch but the first of data of unknown
    length, and every epoch of arrays, of datasets of known length or with
    `steps_per_epoch`. Otherwise the learning rate moves at epoch ends only.
    Outside `fit` (`train_on_batch`) it stays at the last epoch end's value.

    Args:
        schedule: a `keras.optimizers.schedules.LearningRateSchedule`, sized
            for plain training: its `step` is an optimizer step of plain
            training (e.g. `CosineDecay(..., decay_steps=epochs *
            steps_per_epoch)`).
        steps_per_epoch: optimizer steps per epoch of plain training (batches
            per epoch, e.g. `math.ceil(len(x_train) / batch_size)`).

    Example:

    ```python
    import math
    import keras
    import keras_sb

    epochs, batch_size = 30, 128
    steps_per_epoch = math.ceil(len(x_train) / batch_size)
    schedule = keras.optimizers.schedules.CosineDecay(
        0.1, decay_steps=epochs * steps_per_epoch)

    model = keras_sb.SelectiveBackpropModel(inputs, outputs, beta=2.0)
    model.compile(
        optimizer=keras.optimizers.SGD(
            learning_rate=keras_sb.EpochSchedule(schedule, steps_per_epoch),
            momentum=0.9),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    model.fit(x_train, y_train, batch_size=batch_size, epochs=epochs)
    # The learning rate decayed to 0 over the 30 epochs.
    ```
    """

    def __init__(self, schedule, steps_per_epoch):
        if not isinstance(schedule,
                          keras.optimizers.schedules.LearningRateSchedule):
            raise TypeError(
                "EpochSchedule wraps a "
                "`keras.optimizers.schedules.LearningRateSchedule`. "
                f"Received: schedule={schedule!r}"
            )
        if isinstance(schedule, EpochSchedule):
            raise ValueError(
                "The schedule is an EpochSchedule already: it follows epochs "
                "of data. Pass it to the optimizer as it is."
            )
        if (isinstance(steps_per_epoch, bool)
                or not isinstance(steps_per_epoch, (int, float))
                or not steps_per_epoch > 0):
            raise ValueError(
                "`steps_per_epoch` must be a positive number: the optimizer "
                "steps of an epoch of plain training. Received: "
                f"steps_per_epoch={steps_per_epoch!r}"
            )
        self.schedule = schedule
        self.steps_per_epoch = steps_per_epoch
        self._model = None  # A weak reference to the model (`bind_to_model`).
        self._progress = None  # The train step's progress (`bind_progress`).

    def __call__(self, step):
        progress = self._current_progress()
        if progress is None:
            return self.schedule(step)
        return self.schedule(
            ops.multiply(progress, float(self.steps_per_epoch)))

    def _current_progress(self):
        """The epochs done: the train step's where it handed it over, else
        the bound model's state, else None (the optimizer step counts)."""
        if self._progress is not None:
            return self._progress
        model = None if self._model is None else self._model()
        state = getattr(model, "selection_state", None)
        return None if state is None else epoch_progress(state)

    def get_config(self):
        return {
            "schedule": keras.saving.serialize_keras_object(self.schedule),
            "steps_per_epoch": self.steps_per_epoch,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["schedule"] = keras.saving.deserialize_keras_object(
            config["schedule"])
        return cls(**config)


def epoch_progress(state):
    """Epochs of data done, as a float32 scalar tensor.

    `epochs_completed + min(epoch_scored / epoch_size, 1)`: the completed
    epochs plus the fraction of the current epoch's examples that the train
    step consumed; just `epochs_completed` where the epoch's size is not
    known (`epoch_size` 0).

    Args:
        state: a `keras_sb.SelectionState` (`model.selection_state`). Its
            variables are read through `.value`, so inside a
            `keras.StatelessScope` the scope's values are read.
    """
    completed = ops.cast(state.epochs_completed.value, "float32")
    scored = ops.cast(state.epoch_scored.value, "float32")
    size = ops.cast(state.epoch_size.value, "float32")
    fraction = ops.minimum(ops.divide_no_nan(scored, size), 1.0)
    return completed + ops.where(size > 0, fraction, 0.0)


def epoch_schedule_of(model):
    """The `EpochSchedule` of `model`'s optimizer, or None."""
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None:
        return None
    schedule = _keras_compat.optimizer_learning_rate(optimizer)
    return schedule if isinstance(schedule, EpochSchedule) else None


def bind_to_model(model):
    """Lets the optimizer's `EpochSchedule` (if any) read the progress from
    `model`'s selection state outside the train step (callbacks reading
    `model.optimizer.learning_rate`). Holds a weak reference."""
    schedule = epoch_schedule_of(model)
    if schedule is not None:
        schedule._model = weakref.ref(model)


def bind_progress(model):
    """Hands the current progress to the optimizer's `EpochSchedule`.

    Called inside the train step, before any backward step, in the scope
    that holds the whole training state (see the module's docstring). The
    progress read then is that before the step's batch, as
    `optimizer.iterations` is before the step's update.
    """
    schedule = epoch_schedule_of(model)
    if schedule is not None:
        schedule._model = weakref.ref(model)
        schedule._progress = epoch_progress(model.selection_state)


def unbind_progress(model):
    """Takes back the progress `bind_progress` handed over: the schedule
    reads the model's state again."""
    schedule = epoch_schedule_of(model)
    if schedule is not None:
        schedule._progress = None


@contextlib.contextmanager
def train_step_scope(model):
    """Context of one (traced) train step: the progress handed to the
    schedule inside it does not outlive it (a JAX tracer kept there would
    break every later read of the learning rate)."""
    try:
        yield
    finally:
        unbind_progress(model)


# Models warned about a step-based schedule (once each).
_warned_models = weakref.WeakSet()


def warn_if_step_schedule(model):
    """Warns (once per model) when the optimizer's learning rate is a
    schedule of optimizer steps, which selection makes fewer per epoch.

    Called by `fit`; the warning points at the `fit` call.
    """
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None or model in _warned_models:
        return
    schedule = _keras_compat.optimizer_learning_rate(optimizer)
    if (not isinstance(schedule,
                       keras.optimizers.schedules.LearningRateSchedule)
            or isinstance(schedule, EpochSchedule)):
        return
    _warned_models.add(model)
    name = type(schedule).__name__
    keras_name = f"keras.optimizers.schedules.{name}"
    if not hasattr(keras.optimizers.schedules, name):
        keras_name = name
    warnings.warn(
        f"The optimizer's learning rate is a {keras_name}, which counts "
        "optimizer (backward) steps, and selection makes fewer of them per "
        f"epoch than plain training: sized for plain training (e.g. "
        "`decay_steps=epochs * steps_per_epoch`), it would cover several "
        "times more epochs than planned. To follow the epochs of data "
        "instead, wrap it: `keras_sb.EpochSchedule(schedule, "
        "steps_per_epoch=...)` with the steps per epoch of plain training.",
        stacklevel=_caller_stacklevel(),
    )


def _caller_stacklevel():
    """The `stacklevel` of the first caller outside keras-sb and Keras, for
    a warning issued by the function that calls this one."""
    level, frame = 1, sys._getframe(1)
    while frame is not None and frame.f_globals.get(
            "__name__", "").split(".")[0] in ("keras_sb", "keras"):
        frame = frame.f_back
        level += 1
    return level
