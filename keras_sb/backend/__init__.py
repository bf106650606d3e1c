"""Backend glue: the few steps that differ between Keras backends.

Everything else in keras-sb is written with `keras.ops` and runs on any
backend. A backend module provides:

- `backward_step(model, x, y, sample_weight)`: one training-mode forward,
  backward and optimizer step on a backprop batch;
- `run_if(condition, fn)`: runs `fn` for its side effects only when the
  tensor `condition` is true, inside the compiled step, and returns the
  number of runs (int32 0 or 1);
- `peek_batch_structure(iterator)`: the structure of the batches an
  iterator passed to `model.train_function` yields, without losing a batch.
"""

import keras

_BACKEND = keras.backend.backend()

if _BACKEND == "tensorflow":
    from keras_sb.backend.tensorflow import backward_step
    from keras_sb.backend.tensorflow import peek_batch_structure
    from keras_sb.backend.tensorflow import run_if
else:
    raise ImportError(
        f"keras-sb supports the TensorFlow backend; the {_BACKEND!r} backend "
        "is not supported yet. Set KERAS_BACKEND=tensorflow."
    )
