"""The callbacks `SelectiveBackpropModel.fit` adds to the user's.

- `SelectionWindow` (first in the list): moves the selection window at each
  epoch start, counts epochs and sets their size, logs `backprops` as an
  int, and warns about epochs that trained nothing selectively;
- `SelectionProgbar` (in place of Keras's progress bar): shows `backprops`
  as a whole number, and lets epochs of filtered data differ in length.
"""

import warnings

import keras

from keras_sb import schedule


class SelectionWindow(keras.callbacks.Callback):
    """Places the selection window (`start`, `end`) at each epoch start.

    Added by `SelectiveBackpropModel.fit` in front of the user's callbacks;
    it also counts completed epochs, the unit of `start="1ep"`, and sets
    how many examples each epoch goes over (`epoch_size`, 0 where not
    known), which `keras_sb.EpochSchedule` follows.

    Args:
        start: when selection starts, as parsed by `schedule.parse_time`.
        end: when it stops again (parsed), or None.
    """

    def __init__(self, start, end):
        super().__init__()
        self._window = (start, end)
        self._epoch_scored = 0  # None: the epoch's count is not kept yet.

    def on_train_begin(self, logs=None):
        self._dropped = int(self.model.selection_state.dropped_examples.numpy())
        self._warned_bypass = False

    def on_epoch_begin(self, epoch, logs=None):
        state = self.model.selection_state
        counters = state.counters()
        start_step, end_step = schedule.window_thresholds(
            *self._window,
            step=counters["scored_batches"],
            epoch=epoch,
            epochs=self.params.get("epochs") or epoch + 1,
            epochs_completed=counters["epochs_completed"],
            steps_per_epoch=self.params.get("steps"),
        )
        state.selection_start.assign(start_step)
        state.selection_end.assign(end_step)
        # Examples this epoch goes over, for `keras_sb.EpochSchedule`.
        session = getattr(self.model, "fit_session", None)
        state.epoch_size.assign(
            session.epoch_size(self.params.get("steps")) if session else 0)
        self._epoch_scored = None

    def on_test_begin(self, logs=None):
        # The validation at an epoch's end resets the epoch's counters.
        self._remember_epoch_scored()

    def _remember_epoch_scored(self):
        """Keeps the examples the epoch consumed (once per epoch, before
        validation resets them), the next epoch's size if none is known."""
        if self._epoch_scored is not None:
            return
        state = self.model.selection_state
        self._epoch_scored = int(state.epoch_scored.numpy())
        session = getattr(self.model, "fit_session", None)
        if session is not None:
            session.last_epoch_scored = self._epoch_scored

    def on_epoch_end(self, epoch, logs=None):
        _backprops_as_int(logs)
        state = self.model.selection_state
        self._remember_epoch_scored()
        state.epochs_completed.assign_add(1)
        # The epoch counts in `epochs_completed` now, not in its fraction.
        state.epoch_size.assign(0)
        if not self.model._selective_step_used and not self._warned_bypass:
            self._warned_bypass = True
            warnings.warn(
                f"{type(self.model).__name__} overrides `train_step` without "
                "calling `super().train_step(...)`: no example was scored or "
                "selected this epoch, and every example was trained on as in "
                "a plain keras.Model. Selective-Backprop runs in "
                "SelectiveBackpropModel.train_step; to customize the loss, "
                "compile a per-example `loss=` instead.",
                stacklevel=2,
            )
        dropped = int(state.dropped_examples.numpy())
        if dropped > self._dropped:
            warnings.warn(
                f"{dropped - self._dropped} selected examples found no room "
                "in their replica's queue this epoch and were not trained on. "
                "Set `backprop_batch_size` to at least the global batch size.",
                stacklevel=2,
            )
        self._dropped = dropped


def _backprops_as_int(logs):
    # Keras turns every logged value into a float; a count is an int (in
    # `history` and for the callbacks after this one). Epoch logs only: a
    # batch hook would stop Keras from dispatching batch hooks
    # asynchronously.
    if logs is not None and "backprops" in logs:
        logs["backprops"] = int(logs["backprops"])


class _WholeNumber(float):
    """A float that Keras's `Progbar` prints without decimals: it formats
    every value with `.4f` after dividing it by a count of 1."""

    def __truediv__(self, other):
        return _WholeNumber(float(self) / other)

    def __format__(self, spec):
        return str(int(self))


class SelectionProgbar(keras.callbacks.ProgbarLogger):
    """Keras's progress bar, with `backprops` as a whole number.

    Args:
        varying_epochs: whether epochs differ in their number of steps (data
            filtered by `keras_sb.data.stale_filter`): each epoch then counts
            its own steps, where Keras's holds every epoch to the first one's.
    """

    def __init__(self, varying_epochs=False):
        super().__init__()
        self.varying_epochs = varying_epochs

    def on_epoch_begin(self, epoch, logs=None):
        if self.varying_epochs:
            self.target = None
        super().on_epoch_begin(epoch, logs)

    def _update_progbar(self, batch, logs=None):
        super()._update_progbar(batch, _whole_backprops(logs))

    def _finalize_progbar(self, logs):
        super()._finalize_progbar(_whole_backprops(logs))


def _whole_backprops(logs):
    if not logs or "backprops" not in logs:
        return logs
    return {**logs, "backprops": _WholeNumber(logs["backprops"])}
