"""JAX glue: a stateless train step, `jax.lax.cond` around the backward step.

The JAX trainer passes the whole training state (trainable, non-trainable,
optimizer and metrics variables) into a jitted `train_step` and takes the new
state back. `train_step` runs the backend-neutral selective step inside one
`keras.StatelessScope` over that state, so the selection code reads and
assigns Keras variables exactly as on TensorFlow, and collects what it
assigned as the new state.

The backward step cannot assign variables from inside `jax.lax.cond` or the
queue's `while_loop` (the values would leak out of the branch), so there the
values it changes (trainable, model non-trainable and optimizer variables)
travel as the loop's carry, and are assigned once after the loop. The
backward step itself is Keras's own stateless one:
`jax.value_and_grad(model.compute_loss_and_updates)` and
`optimizer.stateless_apply`, under `jax.lax.cond`, so a step without a full
queue runs no backward pass on the device.
"""

import contextlib

import jax
import keras


def state_variables(model):
    """The variables of the JAX trainer's state, in its order."""
    return (
        model.trainable_variables,
        model.non_trainable_variables,
        model.optimizer.variables,
        model.metrics_variables,
    )


def train_step(model, state, data):
    """`Model.train_step(state, data)` as the JAX trainer calls it."""
    variables = state_variables(model)
    mapping = [
        (variable, value)
        for group, values in zip(variables, state)
        for variable, value in zip(group, values)
    ]
    # `collect_losses`: the losses layers add in the scoring pass (activity
    # regularizers, `add_loss`) count in its logged loss, as in `fit`.
    with keras.StatelessScope(state_mapping=mapping, collect_losses=True) as scope:
        logs = model._selective_train_step(data)
    new_state = []
    for group, values in zip(variables, state):
        new_values = []
        for variable, value in zip(group, values):
            new_value = scope.get_current_value(variable)
            new_values.append(value if new_value is None else new_value)
        new_state.append(new_values)
    return logs, tuple(new_state)


def _model_non_trainable_variables(model):
    """Non-trainable variables that belong to the model, not to the selection
    state (which the selective step assigns itself)."""
    owned = {id(variable) for variable in model.selection_state.variables}
    return [variable for variable in model.non_trainable_variables
            if id(variable) not in owned]


def training_state(model):
    """Current values of what the backward step updates, as a loop carry."""
    return tuple(
        [variable.value for variable in group]
        for group in (model.trainable_variables,
                      _model_non_trainable_variables(model),
                      model.optimizer.variables)
    )


def restore_training_state(model, carry):
    """Assigns the values of `carry` (see `training_state`) to the variables."""
    groups = (model.trainable_variables, _model_non_trainable_variables(model),
              model.optimizer.variables)
    for group, values in zip(groups, carry):
        for variable, value in zip(group, values):
            variable.assign(value)


def backward_step(model, carry, x, y, sample_weight, return_predictions=False):
    """One training step on exactly the batch `(x, y, weights)`, statelessly.

    What `keras.Model.train_step` does on JAX (training-mode forward pass,
    compiled loss with regularization losses, loss scaling, gradients, one
    optimizer update), minus the logging and the metric updates, which the
    selection pass already did over all examples.

    Args:
        carry: values of the trainable, model non-trainable and optimizer
            variables (see `training_state`).

    Returns:
        The carry after the step; with `return_predictions`,
        `(carry, y_pred)` where `y_pred` are the training-mode predictions.
    """
    trainable, model_non_trainable, optimizer_variables = carry
    x, y, sample_weight = shard_batch((x, y, sample_weight))
    model_variables = _model_non_trainable_variables(model)
    carried = {id(variable): value
               for variable, value in zip(model_variables, model_non_trainable)}
    non_trainable = [carried.get(id(variable), variable.value)
                     for variable in model.non_trainable_variables]
    metrics = [variable.value for variable in model.metrics_variables]
    grad_fn = jax.value_and_grad(model.compute_loss_and_updates, has_aux=True)
    (_, aux), gradients = grad_fn(
        trainable,
        non_trainable,
        metrics,
        x,
        y,
        sample_weight,
        training=True,
        optimizer_variables=optimizer_variables,
    )
    _, y_pred, non_trainable, _ = aux  # The metrics' updates are dropped.
    trainable, optimizer_variables = model.optimizer.stateless_apply(
        optimizer_variables, gradients, trainable
    )
    updated = dict(zip(map(id, model.non_trainable_variables), non_trainable))
    model_non_trainable = [updated[id(variable)] for variable in model_variables]
    carry = (trainable, model_non_trainable, optimizer_variables)
    if return_predictions:
        return carry, y_pred
    return carry


def run_if(condition, fn, carry):
    """`fn(carry)` when `condition` holds, else `carry`: a `jax.lax.cond`.

    Only the branch taken runs on the device.

    Returns:
        Tuple `(runs, carry)`: int32 1 if `fn` ran, else 0, and the carry.
    """

    def run(carry):
        new_carry = fn(carry)
        # Same dtypes in both branches, whatever the step computed in.
        new_carry = jax.tree.map(lambda new, old: new.astype(old.dtype),
                                 new_carry, carry)
        return jax.numpy.int32(1), new_carry

    def skip(carry):
        return jax.numpy.int32(0), carry

    return jax.lax.cond(condition, run, skip, carry)


def replica_info():
    """`(1, 0)`: a JAX train step is one program over the global batch,
    which `keras.distribution` shards over devices."""
    return 1, 0


def num_replicas(model):
    """1: the selection sees the global batch (see `replica_info`)."""
    return 1


def variable_scope(model):
    """Variables are created as usual (their layout comes from the current
    `keras.distribution`)."""
    return contextlib.nullcontext()


def all_gather(value):
    return value


def all_reduce_sum(value):
    return value


def synchronized_run_if(condition, fn, args):
    return run_if(condition, lambda carry: fn(*args) or (), ())[0]


def shard_batch(batch):
    """Lays out a backward batch like the input batches of the current
    `keras.distribution` (split over devices along the batch axis), so the
    backward pass on the queue runs data-parallel, not replicated."""
    distribution = keras.distribution.distribution()
    if distribution is None:
        return batch

    def shard(tensor):
        layout = distribution.get_data_layout(tensor.shape)
        return jax.lax.with_sharding_constraint(tensor, layout.backend_layout)

    return jax.tree.map(shard, batch)


def compile_function(fn, static_argnames=()):
    """`fn` compiled with `jax.jit` (for work outside the train step, such
    as `keras_sb.data.DevicePipeline`'s batches)."""
    return jax.jit(fn, static_argnames=static_argnames)
