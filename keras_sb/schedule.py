"""When selection is on: the `start` / `end` window, as pure functions.

Outside the window the model trains on every example (the paper primes the
network with one epoch of plain training; Composer's SelectiveBackprop starts
half-way through training). A point in training is given as:

- an `int`: a number of training batches (steps), counted over the model's
  whole life, e.g. `500`;
- a string `"<n>ep"`: after `n` epochs of the model's life, e.g. `"1ep"`;
- a `float` in `[0, 1]`: that fraction of the current `fit` call's
  `epochs`, e.g. `0.5` for half-way. Keras counts a `fit`'s epochs from 0
  to `epochs`, also with `initial_epoch`: `start=0.5` with `epochs=4` and
  `initial_epoch=2` is reached at the first epoch of that `fit`.

Inside the compiled train step the window is two integer thresholds on the
number of batches scored so far, held in variables; the `fit` loop moves the
thresholds at the start of each epoch (`window_thresholds`), so switching
selection on or off never retraces the step.
"""

import math
import re

import numpy as np

from keras_sb import selection

NEVER = int(np.iinfo(np.int32).max)

_EPOCHS = re.compile(r"^\s*(\d+(?:\.\d*)?)\s*(?:ep|epoch|epochs)\s*$")


def parse_time(name, value):
    """Validates a point in training; returns `(amount, unit)` or None.

    Args:
        name: argument name, for error messages.
        value: None, an int (steps), a float in [0, 1] (fraction of the fit)
            or a string like `"1ep"` (epochs).

    Returns:
        None for None, else `(amount, unit)` with unit one of `"steps"`,
        `"epochs"`, `"fraction"`.
    """
    if value is None:
        return None
    if selection.is_integer(value) and value >= 0:
        return int(value), "steps"
    if selection.is_real(value) and 0.0 <= value <= 1.0:
        return float(value), "fraction"
    if isinstance(value, str) and _EPOCHS.match(value):
        return float(_EPOCHS.match(value).group(1)), "epochs"
    raise ValueError(
        f"`{name}` must be None, a number of steps (int >= 0), a fraction of "
        "training (float in [0, 1]) or a number of epochs (a string such as "
        f"'1ep'). Received: {name}={value!r}"
    )


def check_window(start, end):
    """Raises a ValueError if `end` (see `parse_time`) is 0 or not after
    `start`.

    Points in different units (steps, epochs, fractions of the fit) are
    compared when training reaches them, not here.
    """
    if end is not None and end[0] == 0:
        raise ValueError(
            "`end` must be after the start of training: selection would "
            f"never be on. Received: end={format_time(end)!r}"
        )
    if start is None or end is None or start[1] != end[1]:
        return
    if end[0] <= start[0]:
        raise ValueError(
            "`end` must come after `start`: selection would never be on. "
            f"Received: start={format_time(start)!r}, end={format_time(end)!r}"
        )


def time_to_step(time, *, step, epoch, epochs, epochs_completed, steps_per_epoch):
    """The scored-batch count at which a point in training is reached.

    Called at the start of an epoch, with the position of the training then.

    Args:
        time: output of `parse_time`, not None.
        step: batches scored so far, over the model's life.
        epoch: index of the epoch about to start, as `fit` counts it.
        epochs: the `epochs` argument of the current `fit` call.
        epochs_completed: epochs completed so far, over the model's life.
        steps_per_epoch: batches per epoch, or None if unknown; then the
            answer is exact only at epoch boundaries (the window is
            re-evaluated at each epoch start).

    Returns:
        An int: the threshold. `<= step` means the point is reached already;
        `NEVER` means not within the epochs ahead as far as can be known now.
    """
    amount, unit = time
    if unit == "steps":
        return amount
    if unit == "epochs":
        epochs_to_go = amount - epochs_completed
    else:
        epochs_to_go = amount * epochs - epoch
    if epochs_to_go <= 0:
        return 0
    if steps_per_epoch is None:
        return NEVER
    return min(NEVER, step + math.ceil(epochs_to_go * steps_per_epoch))


def window_thresholds(start, end, **position):
    """Both thresholds of the window `[start, end)` at a position in training.

    Args:
        start: parsed start (None means from the beginning).
        end: parsed end (None means never).
        **position: the keyword arguments of `time_to_step` but `time`.

    Returns:
        `(start_step, end_step)`; selection is on while
        `start_step <= scored batches < end_step`.
    """
    start_step = 0 if start is None else time_to_step(start, **position)
    end_step = NEVER if end is None else time_to_step(end, **position)
    return start_step, end_step


def initial_thresholds(start, end):
    """Thresholds before any `fit` has placed the window.

    Steps are absolute; epochs and fractions are only known inside `fit`, so
    without it (`train_on_batch`) selection is on from the first batch.
    """
    start_step = start[0] if start is not None and start[1] == "steps" else 0
    end_step = end[0] if end is not None and end[1] == "steps" else NEVER
    return start_step, end_step


def format_time(time):
    """Inverse of `parse_time`, for `get_config`."""
    if time is None:
        return None
    amount, unit = time
    if unit == "epochs":
        return f"{amount:g}ep"
    return amount
