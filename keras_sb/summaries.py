"""TensorBoard summaries of what selection does, epoch by epoch."""

import importlib.util
import os

import keras
import numpy as np


class SelectionSummaries(keras.callbacks.Callback):
    """Writes what selection did in each epoch to TensorBoard.

    A `fit` callback of a `SelectiveBackpropModel`, for any of its methods
    (the paper's rule and the other strategies, stale selection, `InfoBatch`
    and `RandomSubset`). At the end of each epoch it writes, under the tag
    prefix `selection/`:

    - histograms `selection/loss` and `selection/probability`: with example
      ids (a score table), the losses and the selection (or keep)
      probabilities of the examples scored in the epoch; without ids, the
      losses of the model's loss history (the last `history_size` scored)
      and the probabilities the strategy gives them;
    - scalars `selection/selected_fraction` (the kept fraction for pruning),
      `selection/backprops` (over the model's life), `selection/queued`
      (selected examples waiting for a backward step).

    It writes to `log_dir/train`, next to the epoch logs of
    `keras.callbacks.TensorBoard(log_dir)`, which puts the same run's loss
    and metrics there: use the two together and TensorBoard shows them as
    one run. It needs TensorFlow and TensorBoard installed (as Keras's
    TensorBoard callback does), with any Keras backend.

    Args:
        log_dir: the TensorBoard log directory of the run.
        histogram_freq: write the histograms every this many epochs
            (0: never); the scalars are written every epoch.

    Example:

    ```python
    model.fit(train, epochs=20, callbacks=[
        keras.callbacks.TensorBoard("logs"),
        keras_sb.SelectionSummaries("logs"),
    ])
    # Then: tensorboard --logdir logs
    ```
    """

    def __init__(self, log_dir="logs", histogram_freq=1):
        super().__init__()
        if not isinstance(histogram_freq, int) or histogram_freq < 0:
            raise ValueError(
                "`histogram_freq` must be an int >= 0. Received: "
                f"histogram_freq={histogram_freq!r}"
            )
        self.log_dir = os.fspath(log_dir)
        self.histogram_freq = histogram_freq
        self._writer = None
        self._epoch = 0

    def on_train_begin(self, logs=None):
        if getattr(self.model, "selection_state", None) is None:
            raise ValueError(
                "SelectionSummaries is a callback for `fit` of a "
                "keras_sb.SelectiveBackpropModel. Received a model of type "
                f"{type(self.model).__name__}."
            )
        self._writer = _summary_module().create_file_writer(
            os.path.join(self.log_dir, "train"))

    def on_epoch_begin(self, epoch, logs=None):
        # The model's own epoch count: `SelectionWindow` advances it at the
        # epoch's end, before this callback runs.
        self._epoch = int(self.model.selection_state.epochs_completed.numpy())

    def on_epoch_end(self, epoch, logs=None):
        summary = _summary_module()
        state = self.model.selection_state
        counters = state.counters()
        logs = logs or {}
        fraction = logs.get("kept_fraction", logs.get("selected_fraction"))
        with self._writer.as_default(step=epoch):
            if fraction is not None:
                summary.scalar("selection/selected_fraction", float(fraction))
            summary.scalar("selection/backprops", counters["backprops"])
            summary.scalar("selection/queued", counters["queue_size"])
            if self.histogram_freq and epoch % self.histogram_freq == 0:
                losses, probabilities = epoch_scores(self.model, self._epoch)
                if len(losses):
                    summary.histogram("selection/loss", losses)
                    summary.histogram("selection/probability", probabilities)
        self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def get_config(self):
        return {"log_dir": self.log_dir, "histogram_freq": self.histogram_freq}


def epoch_scores(model, epoch):
    """The finite losses scored in epoch `epoch` and their probabilities.

    From the score table (the examples whose last score is from `epoch`)
    where the model has one, else from the loss history.

    Returns:
        Tuple of float32 NumPy arrays `(losses, probabilities)`.
    """
    state = model.selection_state
    if state.score_table is not None:
        table = state.score_table
        scored = keras.ops.convert_to_numpy(table.epoch.value) == epoch
        losses = keras.ops.convert_to_numpy(table.loss.value)[scored]
        probabilities = keras.ops.convert_to_numpy(
            table.probability.value)[scored]
        finite = np.isfinite(losses)
        return losses[finite], probabilities[finite]
    history = keras.ops.convert_to_numpy(state.loss_history.value)
    losses = history[np.isfinite(history)]
    if not len(losses):
        return losses, losses
    probabilities = model.strategy.probabilities(
        keras.ops.convert_to_tensor(losses),
        keras.ops.convert_to_tensor(history))
    return losses, keras.ops.convert_to_numpy(probabilities).astype("float32")


def _summary_module():
    """`tf.summary`, whose summary ops the `tensorboard` package provides."""
    try:
        import tensorflow as tf
    except ImportError:
        tf = None
    if tf is None or importlib.util.find_spec("tensorboard") is None:
        raise ImportError(
            "SelectionSummaries writes TensorBoard event files with "
            "`tf.summary`, as `keras.callbacks.TensorBoard` does: install "
            "`tensorflow` (or `tensorflow-cpu`) and `tensorboard`."
        )
    return tf.summary
