"""Scoring: per-example losses from the loss the user compiled.

Selective-Backprop ranks examples by their own loss, so it needs one loss
value per example where Keras computes one value per batch. Rather than
hard-coding a loss, `per_example_loss` evaluates the model's compiled loss
(`model.compile(loss=...)`: strings, functions or `keras.losses.Loss`
objects, one per output, with `loss_weights`, `sample_weight` and
`class_weight`) with each loss's batch reduction switched off, and averages
what is left over the non-batch axes (time steps, pixels): over the entries
a mask leaves (a `Masking` layer's, a loss's `ignore_class`), so padding does
not lower an example's loss. Without a mask, for the default
`"sum_over_batch_size"` reduction the mean of the per-example values is the
batch loss Keras reports.
"""

import contextlib

import keras
from keras import ops

from keras_sb import _keras_compat


class PerExampleLossError(ValueError):
    """A compiled loss cannot give one value per example."""


def _per_example(loss_fn):
    """Wraps a `keras.losses.Loss` to return per-example values `(batch,)`."""

    def call(y_true, y_pred, sample_weight=None):
        reduction = loss_fn.reduction
        loss_fn.reduction = "none"
        try:
            values = loss_fn(y_true, y_pred, sample_weight)
        finally:
            loss_fn.reduction = reduction
        if len(values.shape) == 0:
            raise PerExampleLossError(
                f"The loss {loss_fn.name!r} returned a single value for the "
                "whole batch, but SelectiveBackpropModel needs one value per "
                "example to choose which examples to train on. Make the "
                "loss's `call` return one value per example (do not reduce "
                "over the batch axis; Keras applies the reduction), or pass a "
                "per-example function such as `keras.losses."
                "sparse_categorical_crossentropy` to `compile`."
            )
        if len(values.shape) > 1:
            axes = tuple(range(1, len(values.shape)))
            mask = _loss_mask(loss_fn, y_true, y_pred)
            if mask is None:
                return ops.mean(values, axis=axes)
            # Masked entries are 0 in `values`: the mean of the others.
            valid = ops.sum(ops.cast(mask, values.dtype), axis=axes)
            values = ops.divide_no_nan(ops.sum(values, axis=axes), valid)
        return values

    return call


def _loss_mask(loss_fn, y_true, y_pred):
    """The mask `loss_fn` applies to its unreduced values, or None: that of
    the predictions (`Masking`) and that of the loss (`ignore_class`), as
    `keras.losses.Loss.__call__` combines them."""
    masks = [_keras_compat.get_keras_mask(y_pred),
             _keras_compat.get_keras_mask(loss_fn.call(y_true, y_pred))]
    masks = [mask for mask in masks if mask is not None]
    if not masks:
        return None
    return masks[0] if len(masks) == 1 else ops.logical_and(*masks)


@contextlib.contextmanager
def preserved_loss_trackers(compile_loss):
    """Leaves the per-output loss metrics of `compile_loss` as they were.

    A multi-output model's compiled loss updates one `<output>_loss` metric
    per output on every call. The logs must show the losses of the scoring
    pass over all examples only, so the backward step's call runs inside this
    context, which restores the metrics' variables afterwards.
    """
    variables = _loss_tracker_variables(compile_loss)
    values = [ops.copy(v.value) for v in variables]
    yield
    for variable, value in zip(variables, values):
        variable.assign(value)


def _loss_tracker_variables(compile_loss):
    return [v for m in getattr(compile_loss, "metrics", []) for v in m.variables]


def per_example_loss(compile_loss, y_true, y_pred, sample_weight=None):
    """One loss value per example, from a model's compiled loss.

    Args:
        compile_loss: the model's compiled loss (`model._compile_loss`),
            already built by a call on data of the same structure.
        y_true: targets, as passed to the model's loss.
        y_pred: predictions of the model.
        sample_weight: optional sample weights (from `sample_weight` or
            `class_weight`); they multiply the per-example losses.

    Returns:
        float32 tensor of shape `(batch_size,)`: the sum over outputs of
        `loss_weight * loss` of each example.

    Raises:
        PerExampleLossError: if the model was compiled without a loss, or a
            loss reduces over the batch by itself.
    """
    if compile_loss is None:
        raise PerExampleLossError(
            "SelectiveBackpropModel selects examples by their loss, so it "
            "needs a loss: pass `loss=` to `model.compile()`. It ranks "
            "examples by that compiled loss, per example; an override of "
            "`compute_loss` is not used for the ranking."
        )
    # The loss metrics' updates go to a scope that is then dropped: no
    # variable is assigned, so this also works inside a conditional branch of
    # a stateless (JAX) step.
    trackers = _loss_tracker_variables(compile_loss)
    with _keras_compat.replaced_flat_losses(compile_loss, _per_example):
        with keras.StatelessScope(state_mapping=[(v, v.value) for v in trackers]):
            values = compile_loss(y_true, y_pred, sample_weight)
    return ops.cast(values, "float32")
