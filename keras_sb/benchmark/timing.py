"""Callbacks that time training and record learning curves."""

import time

import keras
import numpy as np


def wait_for_device(model):
    """Blocks until the training steps dispatched so far have run.

    JAX (and TensorFlow on a GPU) return from a step before the device has
    finished it; reading a value the last step wrote waits for it, so that
    wall-clock times are not carried over into the next measurement.
    """
    keras.ops.convert_to_numpy(model.optimizer.iterations)


class EpochTimer(keras.callbacks.Callback):
    """Records the wall-clock seconds of each epoch in `times` (waiting for
    the device at the end of each epoch)."""

    def __init__(self):
        super().__init__()
        self.times = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        wait_for_device(self.model)
        self.times.append(time.perf_counter() - self._start)


class LearningCurve(keras.callbacks.Callback):
    """Records, per epoch: training seconds (validation excluded),
    examples backpropagated, validation accuracy, and the loss and accuracy
    logged in training (None where not finite: stale epochs log NaN); for
    the pruning methods (`keras_sb.InfoBatch`, `keras_sb.RandomSubset`) also
    the `kept_fraction` and `rescaling` they log."""

    def __init__(self, examples_per_epoch, progress=None):
        super().__init__()
        self.examples_per_epoch = examples_per_epoch
        self.progress = progress
        self.points = []
        self._seconds = 0.0
        self._backprops = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = time.perf_counter()
        self._test_seconds = 0.0

    def on_test_begin(self, logs=None):
        wait_for_device(self.model)
        self._test_start = time.perf_counter()

    def on_test_end(self, logs=None):
        self._test_seconds += time.perf_counter() - self._test_start

    def on_epoch_end(self, epoch, logs=None):
        wait_for_device(self.model)
        self._seconds += (time.perf_counter() - self._epoch_start
                          - self._test_seconds)
        if "backprops" in logs:
            self._backprops = int(logs["backprops"])
        else:
            self._backprops += self.examples_per_epoch
        self.points.append({
            "epoch": epoch + 1,
            "seconds": self._seconds,
            "backprops": self._backprops,
            "test_accuracy": float(logs["val_accuracy"]),
            "selected_fraction": float(logs.get("selected_fraction", 1.0)),
            "train_loss": _finite_or_none(logs.get("loss")),
            "train_accuracy": _finite_or_none(logs.get("accuracy")),
        })
        for key in ("kept_fraction", "rescaling"):
            if key in logs:
                self.points[-1][key] = _finite_or_none(logs[key])
        if self.progress is not None:
            self.progress.add(1)


def _finite_or_none(value):
    """`value` as a float, or None when it is missing or not finite (stale
    epochs log NaN metrics; JSON has no NaN)."""
    if value is None:
        return None
    value = float(value)
    return value if np.isfinite(value) else None
