"""TensorFlow glue: the backward step under `tf.GradientTape`, `tf.cond`.

TensorFlow updates variables in place inside the compiled step, so the loop
carry of the backward steps is empty.
"""

import itertools

import tensorflow as tf

from keras_sb import scoring

STATELESS_STEP = False


def train_step(model, data):
    """`Model.train_step(data)` as the TensorFlow trainer calls it."""
    return model._selective_train_step(data)


def training_state(model):
    """Nothing to carry: the backward step updates variables in place."""
    return ()


def restore_training_state(model, carry):
    """Nothing to restore (see `training_state`)."""


def backward_step(model, carry, x, y, sample_weight, return_predictions=False):
    """One training step of `model` on exactly the batch `(x, y, weights)`.

    A training-mode forward pass, the compiled loss (mean over the batch, with
    the model's regularization losses), loss scaling for mixed precision,
    gradients and one optimizer update: what `keras.Model.train_step` does,
    minus the logging, which the selection pass already did over all
    examples.

    Returns:
        `carry`, unchanged; with `return_predictions`, `(carry, y_pred)`
        where `y_pred` are the training-mode predictions.
    """
    with tf.GradientTape() as tape:
        if model._call_has_training_arg:
            y_pred = model(x, training=True)
        else:
            y_pred = model(x)
        with scoring.preserved_loss_trackers(model._compile_loss):
            loss = model._compute_loss(
                x=x, y=y, y_pred=y_pred, sample_weight=sample_weight,
                training=True,
            )
        loss = model.optimizer.scale_loss(loss)
    trainable_weights = model.trainable_weights
    gradients = tape.gradient(loss, trainable_weights)
    model.optimizer.apply_gradients(zip(gradients, trainable_weights))
    if return_predictions:
        return carry, tf.nest.map_structure(tf.stop_gradient, y_pred)
    return carry


def run_if(condition, fn, carry):
    """Runs `fn(carry)` for its side effects when `condition` holds.

    Returns:
        Tuple `(runs, carry)`: int32 tensor 1 if `fn` ran, else 0 (depending
        on it keeps the branch in the graph's data flow), and the carry.
    """

    def run():
        return tf.constant(1, tf.int32), fn(carry)

    return tf.cond(condition, run, lambda: (tf.constant(0, tf.int32), carry))


def peek_batch_structure(iterator):
    """Structure of the batches of `iterator`, and an iterator to use instead.

    For `tf.data` iterators this is their `element_spec` (no batch is
    consumed). Other iterables (as `train_on_batch` passes) are peeked: the
    first batch is read and chained back in front.

    Returns:
        Tuple `(iterator, structure)`; the leaves of `structure` have
        `.shape` and `.dtype`.
    """
    if isinstance(iterator, (tf.data.Iterator, tf.distribute.DistributedIterator)):
        return iterator, iterator.element_spec
    iterator = iter(iterator)
    first = next(iterator)
    return itertools.chain([first], iterator), first
