"""Backend glue: the few steps that differ between Keras backends.

Everything else in keras-sb is written with `keras.ops` and runs on any
backend. A backend module provides:

- `train_step(model, ...)`: the model's `train_step` in the form the
  backend's trainer calls it; it runs `model._selective_train_step(data)`,
  which reads and assigns Keras variables (on JAX inside a
  `keras.StatelessScope` over the whole training state);
- `training_state(model)` / `restore_training_state(model, carry)`: the
  values the backward step updates, as a structure that a compiled loop can
  carry (empty where variables are updated in place), and back;
- `backward_step(model, carry, x, y, sample_weight, return_predictions=False)`:
  one training-mode forward, backward and optimizer step on a backprop batch;
  returns the carry (and the training-mode predictions if asked);
- `run_if(condition, fn, carry)`: runs `fn(carry)` only when the tensor
  `condition` is true, inside the compiled step, and returns
  `(runs, carry)`, where `runs` is int32 0 or 1;
- `replica_info()`, `num_replicas(model)`, `all_gather(value)`,
  `all_reduce_sum(value)`, `synchronized_run_if(condition, fn, args)`,
  `variable_scope(model)`: data parallelism. On TensorFlow the step runs
  once per replica of a `tf.distribute` strategy, and these exchange values
  between the replicas and run the backward step on all of them at once; on
  JAX the step is one program over the global batch (`keras.distribution`
  shards it), so there is a single "replica";
- `compile_function(fn, static_argnames)`: `fn` compiled for the device,
  for work outside the train step (the device data pipeline);
- `Trainer`: the mixin of `SelectiveBackpropModel` with the backend's side
  of the trainer (`make_train_function`, how the queue's variables are made,
  switching between the fresh and the stale step);
"""

import keras

_BACKEND = keras.backend.backend()

if _BACKEND == "tensorflow":
    from keras_sb.backend.tensorflow_trainer import TensorFlowTrainer as Trainer
    from keras_sb.backend.tensorflow import all_gather
    from keras_sb.backend.tensorflow import all_reduce_sum
    from keras_sb.backend.tensorflow import num_replicas
    from keras_sb.backend.tensorflow import replica_info
    from keras_sb.backend.tensorflow import synchronized_run_if
    from keras_sb.backend.tensorflow import variable_scope
    from keras_sb.backend.tensorflow import backward_step
    from keras_sb.backend.tensorflow import compile_function
    from keras_sb.backend.tensorflow import restore_training_state
    from keras_sb.backend.tensorflow import run_if
    from keras_sb.backend.tensorflow import train_step
    from keras_sb.backend.tensorflow import training_state
elif _BACKEND == "jax":
    from keras_sb.backend.jax_trainer import JAXTrainer as Trainer
    from keras_sb.backend.jax import all_gather
    from keras_sb.backend.jax import all_reduce_sum
    from keras_sb.backend.jax import num_replicas
    from keras_sb.backend.jax import replica_info
    from keras_sb.backend.jax import synchronized_run_if
    from keras_sb.backend.jax import variable_scope
    from keras_sb.backend.jax import backward_step
    from keras_sb.backend.jax import compile_function
    from keras_sb.backend.jax import restore_training_state
    from keras_sb.backend.jax import run_if
    from keras_sb.backend.jax import train_step
    from keras_sb.backend.jax import training_state
else:
    raise ImportError(
        f"keras-sb supports the TensorFlow and JAX backends; the {_BACKEND!r} "
        "backend is not supported. Set KERAS_BACKEND=tensorflow or "
        "KERAS_BACKEND=jax."
    )
