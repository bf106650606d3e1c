"""TensorFlow glue: the backward step under `tf.GradientTape`, `tf.cond`.

TensorFlow updates variables in place inside the compiled step, so the loop
carry of the backward steps is empty.

Under a `tf.distribute` strategy Keras runs the train step once per replica.
The replicas exchange losses and flags with the replica context's
collectives, and take the backward step together with
`synchronized_run_if`. An optimizer step synchronizes replicas with
`merge_call`, which fails inside a conditional branch ("merge_call called
while defining a new graph"); so the predicate is decided in the replicas
and the branch is taken in cross-replica context, around a new
`call_for_each_replica` (the pattern of Keras 2's `LossScaleOptimizer`).
"""

import itertools

import tensorflow as tf

from keras_sb import _keras_compat
from keras_sb import scoring


def train_step(model, data):
    """`Model.train_step(data)` as the TensorFlow trainer calls it."""
    # A called `tf.function` may start before its inputs exist. The step's
    # updates that read no data (counters, the seed) would then run in the
    # call that finds the end of data of unknown length, a step of no batch.
    # (Variables the first call creates, such as the metrics', are created
    # outside the dependency, so that they can be lifted out of the step.)
    inputs = [tensor for tensor in tf.nest.flatten(data) if tensor is not None]
    with tf.variable_creator_scope(_without_control_dependencies):
        with tf.control_dependencies(inputs):
            logs = model._selective_train_step(data)
    strategy = tf.distribute.get_strategy()
    if (isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
            and _keras_compat.in_multi_worker_mode(strategy)):
        # Keras 3.15 averages the logs of several workers with
        # `strategy.reduce("MEAN", value, axis=0)`, which fails on scalars.
        logs = {name: tf.reshape(value, (1,)) for name, value in logs.items()}
    return logs


def _without_control_dependencies(next_creator, **kwargs):
    with tf.control_dependencies(None):
        return next_creator(**kwargs)


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


def replica_info():
    """`(num_replicas, replica_id)` of the replica this code runs in.

    `(1, 0)` outside a strategy's replicas. `replica_id` may be a tensor.
    """
    context = tf.distribute.get_replica_context()
    if context is None:
        return 1, 0
    return context.num_replicas_in_sync, context.replica_id_in_sync_group


def num_replicas(model):
    """Replicas that `model.fit` trains on (those of its strategy)."""
    return model.distribute_strategy.num_replicas_in_sync


def variable_scope(model):
    """Context in which to create variables of `model` (its strategy's)."""
    return model.distribute_strategy.scope()


def all_gather(value):
    """`value` of every replica, concatenated along the first axis."""
    return tf.distribute.get_replica_context().all_gather(value, axis=0)


def all_reduce_sum(value):
    """Sum of `value` over the replicas."""
    return tf.distribute.get_replica_context().all_reduce("sum", value)


def synchronized_run_if(condition, fn, args):
    """Runs `fn(*args)` on every replica at once when `condition` holds.

    `condition` must be the same on every replica; `fn` may synchronize the
    replicas (an optimizer step does: the all-reduce of gradients, and the
    update of mirrored variables such as the optimizer's step counter, which
    uses `merge_call` even where the all-reduce does not). So the
    conditional is built in cross-replica context and calls `fn` for each
    replica inside its branch.

    Returns:
        int32 tensor, 1 if `fn` ran, else 0.
    """
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return run_if(condition, lambda carry: fn(*args) or (), ())[0]
    flat_args = tf.nest.flatten(args)

    def in_each_replica(*flat):
        fn(*tf.nest.pack_sequence_as(args, list(flat)))

    def cross_replica(strategy, condition, *flat):
        predicate = strategy.experimental_local_results(condition)[0]

        def run():
            strategy.extended.call_for_each_replica(in_each_replica, args=flat)
            return tf.constant(1, tf.int32)

        return tf.cond(predicate, run, lambda: tf.constant(0, tf.int32))

    return context.merge_call(cross_replica, args=(condition, *flat_args))


def local_batch(strategy, batch):
    """The first local replica's part of a (distributed) batch."""
    return tf.nest.map_structure(
        lambda value: strategy.experimental_local_results(value)[0], batch
    )


def _local_spec(spec):
    """The spec of one replica's part of a distributed value's spec."""
    value_specs = getattr(spec, "_value_specs", None)
    return value_specs[0] if value_specs else spec


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
        return iterator, tf.nest.map_structure(_local_spec, iterator.element_spec)
    iterator = iter(iterator)
    first = next(iterator)
    return itertools.chain([first], iterator), first


def compile_function(fn, static_argnames=()):
    """`fn` as it is: it runs eagerly (Keras's adapter for a `PyDataset`
    calls it from a generator, outside any graph)."""
    return fn
