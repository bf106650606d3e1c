"""Selection strategies: how per-example losses become selection probabilities.

A strategy is a small stateless object. For each training batch the model
calls `strategy.probabilities(losses, history)` with the per-example losses of
the selection forward pass and the history of recent losses (the batch's
finite losses already appended, empty slots NaN), draws one Bernoulli
variable per example, and queues the selected examples for the backward
pass. A strategy that corrects for its sampling bias also returns
`importance_weights`, which multiply the sample weights of the selected
examples in the backward pass.

Three strategies ship with keras-sb:

- `BiggestLosers`: the rule of the Selective-Backprop paper (the default).
- `UniformSubset`: a uniform random subset at a fixed rate, the control that
  any loss-based method has to beat.
- `LossProportional`: loss-proportional importance sampling with optional
  unbiased re-weighting, in the spirit of Katharopoulos & Fleuret (2018).

To write your own, subclass `SelectionStrategy`, implement `probabilities`
(with `keras.ops`, so it runs inside the compiled train step), and register
the class with `keras.saving.register_keras_serializable` so that models
using it can be saved and loaded.
"""

import keras
from keras import ops

from keras_sb import selection


class SelectionStrategy:
    """Base class of selection strategies.

    Subclasses implement `probabilities` and `get_config`.

    Example:

    ```python
    @keras.saving.register_keras_serializable(package="my_project")
    class Threshold(keras_sb.strategies.SelectionStrategy):
        def __init__(self, threshold):
            self.threshold = threshold

        def probabilities(self, losses, history):
            return keras.ops.cast(losses > self.threshold, "float32")

        def get_config(self):
            return {"threshold": self.threshold}

    model = keras_sb.SelectiveBackpropModel(
        inputs, outputs, strategy=Threshold(0.5))
    ```
    """

    def probabilities(self, losses, history):
        """Selection probability of each example of a batch.

        Args:
            losses: float32 tensor `(batch_size,)` of per-example losses from
                the inference-mode forward pass. Always finite: the model
                selects examples with a non-finite loss by itself.
            history: float32 tensor `(history_size,)` of recent finite
                losses, the current batch included; NaN in empty slots.

        Returns:
            float tensor `(batch_size,)` with values in `[0, 1]`.
        """
        raise NotImplementedError(
            f"{type(self).__name__} must implement `probabilities`."
        )

    reweights = False
    """Whether `importance_weights` returns weights (set True if it does)."""

    def importance_weights(self, probabilities):
        """Weights of the selected examples in the backward pass.

        Only called when `reweights` is True.

        Args:
            probabilities: the final selection probabilities of the batch.

        Returns:
            A float tensor `(batch_size,)`.
        """
        raise NotImplementedError(
            f"{type(self).__name__} sets `reweights` but does not implement "
            "`importance_weights`."
        )

    def expected_fraction(self):
        """Expected fraction of examples selected, if known in advance."""
        return None

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        arguments = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({arguments})"


@keras.saving.register_keras_serializable(package="keras_sb")
class BiggestLosers(SelectionStrategy):
    """The selection rule of Selective-Backprop (Jiang et al., 2019).

    Each example is selected with probability
    `max(min_probability, pct ** beta)`, where `pct` is the fraction of the
    recent loss history strictly below the example's loss. Since `pct` is
    about uniform, the expected selected fraction is `1 / (beta + 1)` without
    a floor: 50%, 33% and 25% for `beta` = 1, 2 and 3.

    Args:
        beta: selectivity, a number `>= 0`. Defaults to 3 (the authors'
            released code), or to the value that gives `target_fraction`.
        min_probability: floor of the selection probability, in `[0, 1]`.
            With 0 (the default, as in the paper) the lowest loss of the
            history is never selected.
        target_fraction: instead of `beta`, the fraction of examples to
            select on average, in `(min_probability, 1]`; `beta` is then set
            so that the expected fraction is this value.

    Example:

    >>> BiggestLosers(target_fraction=0.25).beta
    3.0
    """

    def __init__(self, beta=None, min_probability=0.0, target_fraction=None):
        selection.check_fraction("min_probability", min_probability)
        if target_fraction is not None:
            if beta is not None:
                raise ValueError(
                    "Pass either `beta` or `target_fraction`, not both. "
                    f"Received: beta={beta}, target_fraction={target_fraction}"
                )
            selection.check_fraction(
                "target_fraction", target_fraction, low_open=True
            )
            beta = selection.beta_for_fraction(target_fraction, min_probability)
        elif beta is None:
            beta = 3.0
        if (
            not selection.is_real(beta)
            or not beta >= 0
            or beta == float("inf")
        ):
            raise ValueError(
                f"`beta` must be a finite number >= 0. Received: beta={beta!r}"
            )
        self.beta = float(beta)
        self.min_probability = float(min_probability)
        self.target_fraction = (None if target_fraction is None
                                else float(target_fraction))

    def probabilities(self, losses, history):
        lower, upper = selection.percentile_range(losses, history)
        return selection.biggest_losers_probability(
            lower, self.beta, self.min_probability, upper_percentile=upper
        )

    def expected_fraction(self):
        return selection.expected_selected_fraction(
            self.beta, self.min_probability
        )

    def get_config(self):
        if self.target_fraction is not None:
            return {
                "min_probability": self.min_probability,
                "target_fraction": self.target_fraction,
            }
        return {"beta": self.beta, "min_probability": self.min_probability}


@keras.saving.register_keras_serializable(package="keras_sb")
class UniformSubset(SelectionStrategy):
    """Selects every example with the same probability `fraction`.

    The control for loss-based selection: same number of backward passes,
    no information from the losses.

    Args:
        fraction: probability of selecting each example, in `(0, 1]`.

    Example:

    ```python
    # The same backprop budget as BiggestLosers(beta=2), chosen at random.
    strategy = keras_sb.strategies.UniformSubset(fraction=1 / 3)
    ```
    """

    def __init__(self, fraction):
        selection.check_fraction("fraction", fraction, low_open=True)
        self.fraction = float(fraction)

    def probabilities(self, losses, history):
        return ops.full(ops.shape(losses), self.fraction, dtype="float32")

    def expected_fraction(self):
        return self.fraction

    def get_config(self):
        return {"fraction": self.fraction}


@keras.saving.register_keras_serializable(package="keras_sb")
class LossProportional(SelectionStrategy):
    """Loss-proportional importance sampling (Katharopoulos & Fleuret-like).

    Each example is selected with probability
    `min(1, fraction * loss / mean_loss)`, where `mean_loss` is the mean of the
    loss history, so that about `fraction` of the examples are selected. With
    `reweight=True`, selected examples are weighted by
    `mean(probabilities) / probability` in the backward pass, which makes the
    expected gradient equal to the gradient over all examples (the unbiased
    estimator of importance sampling).

    Args:
        fraction: target fraction of examples to select, in `(0, 1]`.
        reweight: whether to apply the unbiased importance weights.

    Example:

    ```python
    strategy = keras_sb.strategies.LossProportional(fraction=0.33)
    ```
    """

    def __init__(self, fraction, reweight=True):
        selection.check_fraction("fraction", fraction, low_open=True)
        if not isinstance(reweight, bool):
            raise ValueError(
                f"`reweight` must be a bool. Received: reweight={reweight!r}"
            )
        self.fraction = float(fraction)
        self.reweight = reweight

    def probabilities(self, losses, history):
        finite = ops.isfinite(history)
        total = ops.sum(ops.where(finite, history, 0.0))
        mean_loss = ops.divide_no_nan(total, ops.sum(ops.cast(finite, "float32")))
        scaled = ops.divide_no_nan(
            self.fraction * ops.maximum(ops.cast(losses, "float32"), 0.0),
            mean_loss,
        )
        uniform = ops.full(ops.shape(scaled), self.fraction, dtype="float32")
        return ops.minimum(1.0, ops.where(mean_loss > 0, scaled, uniform))

    @property
    def reweights(self):
        return self.reweight

    def importance_weights(self, probabilities):
        return ops.divide_no_nan(ops.mean(probabilities), probabilities)

    def expected_fraction(self):
        return self.fraction

    def get_config(self):
        return {"fraction": self.fraction, "reweight": self.reweight}


def get(identifier):
    """Returns a strategy from an instance, a config dict or None (default)."""
    if identifier is None:
        return BiggestLosers()
    if isinstance(identifier, SelectionStrategy):
        return identifier
    if isinstance(identifier, dict):
        strategy = keras.saving.deserialize_keras_object(identifier)
        if isinstance(strategy, SelectionStrategy):
            return strategy
    raise ValueError(
        "`strategy` must be a `keras_sb.strategies.SelectionStrategy`. "
        f"Received: strategy={identifier!r}"
    )
