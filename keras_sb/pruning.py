"""Data pruning per epoch: InfoBatch, and a uniform random subset.

Both train, in each epoch, on a subset of the training data drawn at the
start of the epoch from one keep probability per example, and run no scoring
forward pass: every example that reaches the model is trained on. With
`keras_sb.data.selective_pipeline` (or any pipeline through
`keras_sb.data.stale_filter`) the draws are made in the input pipeline, so a
pruned example is not read, augmented or batched.

- `InfoBatch` (Qin et al., ICLR 2024): examples whose last training loss is
  below the mean are kept with probability `1 - prune_ratio`, the others
  always; kept low-loss examples weigh `1 / (1 - prune_ratio)` in the loss,
  so the expected gradient is that of full training. The last epochs train
  on everything.
- `RandomSubset`: a fresh uniform random subset of each epoch (RS2, Okanovic
  et al. 2024), the control a pruning method must beat.

The pure functions (`infobatch_probabilities`, `is_pruned_epoch`) hold the
rules; the callbacks hand their probabilities to the model each epoch.
"""

import math

import keras
import numpy as np

from keras_sb import selection
from keras_sb import stale


def infobatch_probabilities(scores, prune_ratio):
    """Keep probability of each example under InfoBatch's rule.

    Args:
        scores: float array `(n,)`, each example's last training loss (NaN
            for an example not scored yet).
        prune_ratio: fraction of the below-mean examples to prune, in
            `[0, 1)`.

    Returns:
        float32 array `(n,)`: `1 - prune_ratio` for examples whose score is
        below the mean of the scored examples, 1 for the others (and for
        every example before any is scored).

    Example:

    >>> infobatch_probabilities(np.array([1.0, 2.0, 6.0, np.nan]), 0.5)
    array([0.5, 0.5, 1. , 1. ], dtype=float32)
    """
    scores = np.asarray(scores, "float32")
    probabilities = np.ones(scores.shape, "float32")
    scored = np.isfinite(scores)
    if scored.any():
        mean = scores[scored].mean(dtype="float64")
        well_learned = scored & (scores < mean)
        probabilities[well_learned] = 1.0 - prune_ratio
    return probabilities


def is_pruned_epoch(epoch, epochs, anneal):
    """Whether epoch `epoch` (0-based) of a `fit` of `epochs` epochs prunes:
    the epochs from `anneal * epochs` on train on every example."""
    return epoch < anneal * epochs


def _check_num_examples(num_examples):
    if num_examples is not None and (
            not selection.is_integer(num_examples) or num_examples < 1):
        raise ValueError(
            "`num_examples` must be None or an int >= 1. "
            f"Received: num_examples={num_examples!r}"
        )
    return None if num_examples is None else int(num_examples)


class EpochPruning(keras.callbacks.Callback):
    """Base class of the pruning callbacks: trains each epoch on the examples
    drawn with `keep_probabilities`.

    A subclass implements `keep_probabilities(epoch, scores)`; it sets
    `rescale` if kept examples weigh `1 / probability` in the loss.

    The model's score table (`SelectionState.score_table`, one row per
    example id) holds each example's last training loss and its keep
    probability of the current epoch; it is saved with the model and
    restored by `BackupAndRestore`. The draws of an epoch depend only on the
    table, the model's saved draw seed and the epoch, so a resumed run
    prunes as an uninterrupted one would.

    Logs, per epoch: `kept_fraction` (fraction of the training examples
    trained on) and `rescaling` (the largest loss weight applied, 1 where
    none). The metrics are those of the training-mode forward pass over the
    examples trained on, as in plain Keras.

    Args:
        num_examples: number of distinct examples (ids `0 ... n - 1`). Leave
            None to take it from the data.
    """

    rescale = False

    def __init__(self, num_examples=None):
        super().__init__()
        self.num_examples = _check_num_examples(num_examples)
        self._probabilities = None

    def keep_probabilities(self, epoch, scores):
        """The keep probability of each example in epoch `epoch` of this
        `fit`, from the `scores` (float32 `(n,)`, NaN: not scored)."""
        raise NotImplementedError

    def on_train_begin(self, logs=None):
        if getattr(self.model, "selection_state", None) is None or (
            self.model.selection_state.score_table is None
        ):
            raise ValueError(
                f"{type(self).__name__} is a callback for `fit` of a "
                "keras_sb.SelectiveBackpropModel. Received a model of type "
                f"{type(self.model).__name__}."
            )

    def on_epoch_begin(self, epoch, logs=None):
        table = self.model.selection_state.score_table
        scores = keras.ops.convert_to_numpy(table.loss.value)
        probabilities = np.asarray(self.keep_probabilities(epoch, scores),
                                   "float32")
        table.probability.assign(probabilities)
        self._probabilities = probabilities
        self.model.fit_session.begin_pruned_epoch(probabilities)

    def on_epoch_end(self, epoch, logs=None):
        stale.raise_on_invalid_ids(self.model.selection_state)
        if logs is None:
            return
        kept = self.model.fit_session.kept_fraction()
        if kept is None or math.isnan(kept):
            kept = logs.get("selected_fraction", float("nan"))
        logs["kept_fraction"] = float(kept)
        logs["selected_fraction"] = float(kept)
        rescaling = 1.0
        if self.rescale and self._probabilities is not None:
            rescaling = float(1.0 / self._probabilities.min())
        logs["rescaling"] = rescaling


class InfoBatch(EpochPruning):
    """InfoBatch: prunes part of the well-learned examples of each epoch,
    and rescales the rest (Qin et al., ICLR 2024).

    Pass it to `fit` of a `keras_sb.SelectiveBackpropModel` (its selection
    options are not used) whose training data carry example ids, best made
    by `keras_sb.data.selective_pipeline`, which skips pruned examples in the
    input pipeline. Each example's score is the per-example loss of its last
    training forward pass (the one its backward pass uses; no extra forward
    pass). At the start of each epoch, examples scored below the mean score
    are kept with probability `1 - prune_ratio` and weigh
    `1 / (1 - prune_ratio)` in the loss (times any `sample_weight` or
    `class_weight`); every other example is kept with weight 1. Examples not
    scored yet are kept, so the first epoch trains on everything. The epochs
    from `anneal * epochs` on train on every example, unweighted. A pruned
    example keeps its old score.

    Use a learning-rate schedule that follows epochs
    (`keras_sb.EpochSchedule`): pruned epochs have fewer steps.

    Args:
        prune_ratio: fraction of the below-mean examples pruned each epoch,
            in `[0, 1)`. Defaults to 0.5.
        anneal: fraction of the epochs of `fit` that prune, in `(0, 1]`;
            the rest train on every example. Defaults to 0.875.
        num_examples: number of distinct examples (ids `0 ... n - 1`). Leave
            None to take it from the data.

    Example:

    ```python
    model = keras_sb.SelectiveBackpropModel(inputs, outputs)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    train = keras_sb.data.selective_pipeline(raw_train, model, batch_size=128)
    model.fit(train, epochs=30, callbacks=[keras_sb.InfoBatch()])
    ```
    """

    rescale = True

    def __init__(self, prune_ratio=0.5, anneal=0.875, num_examples=None):
        super().__init__(num_examples)
        if (isinstance(prune_ratio, bool)
                or not isinstance(prune_ratio, (int, float, np.number))
                or not 0.0 <= prune_ratio < 1.0):
            raise ValueError(
                "`prune_ratio` must be a number in [0, 1). "
                f"Received: prune_ratio={prune_ratio!r}"
            )
        if (isinstance(anneal, bool)
                or not isinstance(anneal, (int, float, np.number))
                or not 0.0 < anneal <= 1.0):
            raise ValueError(
                "`anneal` must be a number in (0, 1]. "
                f"Received: anneal={anneal!r}"
            )
        self.prune_ratio = float(prune_ratio)
        self.anneal = float(anneal)

    def keep_probabilities(self, epoch, scores):
        if not is_pruned_epoch(epoch, self.params.get("epochs") or epoch + 1,
                               self.anneal):
            return np.ones(np.shape(scores), "float32")
        return infobatch_probabilities(scores, self.prune_ratio)

    def get_config(self):
        return {"prune_ratio": self.prune_ratio, "anneal": self.anneal,
                "num_examples": self.num_examples}


class RandomSubset(EpochPruning):
    """Trains each epoch on a fresh uniform random subset of the data.

    The control a pruning method must beat (RS2, Okanovic et al. 2024): no
    scores, no rescaling. Pass it to `fit` of a
    `keras_sb.SelectiveBackpropModel` whose training data carry example ids
    (`keras_sb.data.selective_pipeline`).

    Args:
        kept_fraction: fraction of the examples kept in each epoch, in
            `(0, 1]`; or a sequence of fractions, one per epoch of `fit`
            (epochs past its end keep the last).
        num_examples: number of distinct examples (ids `0 ... n - 1`). Leave
            None to take it from the data.

    Example:

    ```python
    train = keras_sb.data.selective_pipeline(raw_train, model, batch_size=128)
    model.fit(train, epochs=30, callbacks=[keras_sb.RandomSubset(0.7)])
    ```
    """

    def __init__(self, kept_fraction, num_examples=None):
        super().__init__(num_examples)
        fractions = (list(kept_fraction)
                     if isinstance(kept_fraction, (list, tuple, np.ndarray))
                     else [kept_fraction])
        if not fractions or any(
                isinstance(f, bool) or not isinstance(f, (int, float, np.number))
                or not 0.0 < f <= 1.0 for f in fractions):
            raise ValueError(
                "`kept_fraction` must be a number in (0, 1] or a non-empty "
                f"sequence of them. Received: kept_fraction={kept_fraction!r}"
            )
        self.kept_fraction = [float(f) for f in fractions]

    def keep_probabilities(self, epoch, scores):
        fraction = self.kept_fraction[min(epoch, len(self.kept_fraction) - 1)]
        return np.full(np.shape(scores), fraction, "float32")

    def get_config(self):
        fraction = self.kept_fraction
        return {"kept_fraction": fraction[0] if len(fraction) == 1 else fraction,
                "num_examples": self.num_examples}
