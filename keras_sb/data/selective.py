"""`selective_pipeline`: training data ready for selection, in one call.

Stale selection (`keras_sb.StaleSelection`) and data pruning need training
data whose examples carry stable ids and whose skipped examples are dropped
before they are augmented and batched. `selective_pipeline` builds that
pipeline from a `tf.data.Dataset` or from NumPy arrays: ids first, then a
shuffle each epoch, the draws of a `StaleFilter`, the augmentation of the
kept examples, batching, full last batches in drawn epochs, and prefetching.
"""

import sys

import keras
import numpy as np

from keras_sb import _keras_compat
from keras_sb.data._checks import check_batch_size
from keras_sb.data._tensorflow import require_tensorflow
from keras_sb.data.array_pipeline import RowBatches
from keras_sb.data.example_ids import DATA_KEY
from keras_sb.data.example_ids import check_not_reshuffled
from keras_sb.data.example_ids import has_example_ids
from keras_sb.data.example_ids import keep_example_ids
from keras_sb.data.example_ids import with_example_ids
from keras_sb.data.stale_filtering import StaleFilter
from keras_sb.data.stale_filtering import stale_filter
from keras_sb.selection import is_integer

# The shuffle buffer of a `tf.data.Dataset` of unknown size.
DEFAULT_SHUFFLE_BUFFER = 10_000
# Threads preparing the batches of NumPy data, and batches prepared ahead.
_ARRAY_WORKERS = 2
_ARRAY_QUEUE_SIZE = 8


def selective_pipeline(data, model, batch_size, map_fn=None,
                       shuffle_buffer=None, seed=None, autotune=False):
    """Training data for a `SelectiveBackpropModel`, ready for selection.

    Stale selection (`keras_sb.StaleSelection`) and data pruning
    (`keras_sb.InfoBatch`) skip examples in some epochs. They need each
    example to carry a stable id, and work best when skipped examples are
    dropped in the input pipeline, before they are augmented and batched.
    This function builds such a pipeline in one call:

    1. gives every example its id (its position in `data`), before anything
       reorders the examples;
    2. shuffles them, in a new order every epoch;
    3. draws the examples of each epoch with the model (a
       `keras_sb.data.StaleFilter`): in epochs that skip examples, a skipped
       example is never mapped or batched; other epochs keep them all;
    4. applies `map_fn` (e.g. augmentation) to the kept examples;
    5. batches them; in epochs that skip examples, the last batch is filled
       up to `batch_size` with rows of id `keras_sb.data.PADDING_ID`, which
       the model does not train on, so that every batch has the same shape
       (no recompilation with XLA or JAX);
    6. prefetches batches while the model trains.

    Without it, the same takes `with_example_ids`, `shuffle`,
    `apply(stale_filter(model))`, `map(keep_example_ids(map_fn))`, `batch`
    and `apply(draws.pad_batches(batch_size))`, in that order.

    `data` is either an unbatched `tf.data.Dataset` or a tuple of NumPy
    arrays; `map_fn` is applied differently to each:

    - `tf.data.Dataset`: `map_fn` maps single examples, as
      `Dataset.map` does: `map_fn(x, y)` (or `map_fn(x, y, sample_weight)`)
      returns the example's new `(x, y)` (or `(x, y, sample_weight)`), in
      parallel, before batching. It is traced once as a TensorFlow
      function: write it with `tf` ops.
    - NumPy arrays: the result is a `keras.utils.PyDataset` (any backend, no
      TensorFlow needed), and `map_fn` maps whole batches of NumPy arrays:
      `map_fn(x_batch, y_batch)` (or with `w_batch`) returns the batch's
      new arrays, one row per example. It runs in Python, in the worker
      threads that prepare batches ahead of the step (2: set `workers` on
      the result to change it), so it may be called by two threads at
      once. Padding rows are added after `map_fn`: it only sees kept
      examples.

    Args:
        data: the training examples, not batched and not shuffled: a
            `tf.data.Dataset` of `(x, y)` or `(x, y, sample_weight)`
            examples, `x` a tensor or a tuple or dict of tensors; or a tuple
            `(x, y)` or `(x, y, sample_weight)` of NumPy arrays whose first
            dimension is the example (`x` may be a tuple or dict of arrays).
        model: the `keras_sb.SelectiveBackpropModel` that trains on the
            data.
        batch_size: examples per batch, `>= 1`.
        map_fn: None, or the function applied to the kept examples (a
            `tf.data.Dataset`) or batches (NumPy arrays): see above.
        shuffle_buffer: `tf.data.Dataset`: the size of the shuffle buffer.
            None: the whole dataset when its size is known, else 10,000;
            pass a smaller buffer for data that do not fit in memory. NumPy
            arrays: every epoch is a full random permutation, whatever the
            value. 0 turns shuffling off for both.
        seed: int seed of the shuffling and of the draws (None: random
            shuffling, and the model's draw seed). Augmentation in a
            `tf.data` `map_fn` follows TensorFlow's global seed
            (`keras.utils.set_random_seed`).
        autotune: `tf.data.Dataset`: whether tf.data tunes its parallelism
            and buffer sizes while it runs (see
            `keras_sb.data.training_pipeline`); off by default.

    Returns:
        The training data for `model.fit`: a `tf.data.Dataset`, or for NumPy
        arrays a `keras.utils.PyDataset`, of batches
        `{"data": (x, y[, sample_weight]), "example_id": ids}`. Each epoch
        (each pass of `fit`) goes over the data once; do not `repeat` it or
        pass `steps_per_epoch`.

    Example:

    ```python
    def augment(image, label):
        return tf.image.random_flip_left_right(image), label

    train = keras_sb.data.selective_pipeline(raw_train, model, batch_size=128,
                                             map_fn=augment)
    model.fit(train, epochs=30, callbacks=[keras_sb.InfoBatch()])
    ```

    From NumPy arrays, on any backend:

    ```python
    train = keras_sb.data.selective_pipeline((x_train, y_train), model,
                                             batch_size=128)
    model.fit(train, epochs=30, callbacks=[keras_sb.StaleSelection(3)])
    ```
    """
    batch_size = check_batch_size(batch_size)
    if map_fn is not None and not callable(map_fn):
        raise ValueError(
            "`map_fn` must be None or a function of an example (`tf.data`) "
            f"or of a batch (NumPy arrays). Received: map_fn={map_fn!r}"
        )
    if shuffle_buffer is not None and (not is_integer(shuffle_buffer)
                                       or shuffle_buffer < 0):
        raise ValueError(
            "`shuffle_buffer` must be None or an int >= 0. Received: "
            f"shuffle_buffer={shuffle_buffer!r}"
        )
    if seed is not None and not is_integer(seed):
        raise ValueError(f"`seed` must be None or an int. Received: seed={seed!r}")
    if getattr(model, "selection_state", None) is None:
        raise ValueError(
            "`selective_pipeline` needs the keras_sb.SelectiveBackpropModel "
            f"that trains on the data. Received: model={model!r}"
        )
    tf = sys.modules.get("tensorflow")  # A tf.data dataset imported it.
    if tf is not None and isinstance(data, tf.data.Dataset):
        return _tf_pipeline(data, model, batch_size, map_fn, shuffle_buffer,
                            seed, autotune)
    if isinstance(data, dict) and has_example_ids(data):
        raise _ids_already()
    if not isinstance(data, (tuple, list)):
        raise ValueError(
            "`data` must be an unbatched `tf.data.Dataset` of `(x, y)` or "
            "`(x, y, sample_weight)` examples, or a tuple `(x, y)` or "
            "`(x, y, sample_weight)` of NumPy arrays. Received: data of "
            f"type {type(data).__name__}"
        )
    return _ArrayExamples(data, model, batch_size, map_fn,
                          shuffle=shuffle_buffer != 0, seed=seed)


def _ids_already():
    return ValueError(
        "`selective_pipeline` gives the examples their ids itself: pass the "
        "data without `with_example_ids`. Received: data whose elements "
        "carry example ids already."
    )


def _check_examples(structure, what):
    """Raises a ValueError unless `structure` is `(x, y)` or `(x, y, w)`."""
    if not isinstance(structure, tuple) or len(structure) not in (2, 3):
        shown = keras.tree.map_structure(
            lambda leaf: leaf.shape if isinstance(leaf, np.ndarray) else leaf,
            structure)
        raise ValueError(
            f"{what} must be `(x, y)` or `(x, y, sample_weight)` tuples. "
            f"Received: {shown}"
        )


def _tf_pipeline(data, model, batch_size, map_fn, shuffle_buffer, seed,
                 autotune):
    tf = require_tensorflow("keras_sb.data.selective_pipeline")

    spec = data.element_spec
    if has_example_ids(spec):
        raise _ids_already()
    batched = _keras_compat.batch_size_in_chain(data)
    if batched is not None:
        raise ValueError(
            "`selective_pipeline` takes single examples and batches them "
            "itself (after dropping the skipped ones): pass the data before "
            f"`batch`. Received: data made by `batch({batched})`."
        )
    _check_examples(spec, "The elements of `data`")
    check_not_reshuffled(
        data, "selective_pipeline",
        "Pass the data unshuffled: `selective_pipeline` gives the examples "
        "their ids, then shuffles them every epoch.")
    num_examples = int(data.cardinality())
    dataset = with_example_ids(data)
    if shuffle_buffer is None:
        shuffle_buffer = (num_examples if num_examples > 0
                          else DEFAULT_SHUFFLE_BUFFER)
    if shuffle_buffer:
        dataset = dataset.shuffle(shuffle_buffer, seed=seed,
                                  reshuffle_each_iteration=True)
    draws = stale_filter(model, seed)
    dataset = dataset.apply(draws)
    if map_fn is not None:
        dataset = dataset.map(keep_example_ids(map_fn),
                              num_parallel_calls=tf.data.AUTOTUNE)
        _check_examples(dataset.element_spec[DATA_KEY], "What `map_fn` returns")
    dataset = dataset.batch(batch_size, num_parallel_calls=tf.data.AUTOTUNE)
    dataset = dataset.apply(draws.pad_batches(batch_size))
    options = tf.data.Options()
    options.autotune.enabled = bool(autotune)
    return dataset.prefetch(tf.data.AUTOTUNE).with_options(options)


def _as_numpy(structure):
    """`structure` with its leaves as NumPy arrays: tuples and dicts are
    structures, anything else (an array, a list, a tensor) a leaf."""
    if isinstance(structure, dict):
        return {key: _as_numpy(value) for key, value in structure.items()}
    if isinstance(structure, tuple):
        return tuple(_as_numpy(value) for value in structure)
    return np.asarray(structure)


class _ArrayExamples(RowBatches):
    """The NumPy path of `selective_pipeline`: a `keras.utils.PyDataset` of
    batches `{"data": (x, y[, w]), "example_id": rows}`."""

    def __init__(self, data, model, batch_size, map_fn, shuffle, seed):
        data = tuple(data)
        if len(data) == 3 and data[2] is None:  # No sample weights.
            data = data[:2]
        if len(data) not in (2, 3):
            raise ValueError(
                "`data` must be a tuple `(x, y)` or `(x, y, sample_weight)` "
                f"of arrays. Received: data of {len(data)} items"
            )
        arrays = _as_numpy(data)
        shapes = [leaf.shape for leaf in keras.tree.flatten(arrays)]
        if (any(len(shape) == 0 for shape in shapes)
                or len({shape[0] for shape in shapes}) != 1):
            raise ValueError(
                "The arrays of `data` must have the same first dimension, "
                "one row per example. Received: data with arrays of shapes "
                f"{shapes}"
            )
        if not shapes[0][0]:
            raise ValueError("`data` has no examples. Received: data with "
                             f"arrays of shapes {shapes}")
        self.arrays = arrays
        self.map_fn = map_fn
        # The permutation of epoch `e` follows `(seed, e)`; the draws use
        # `seed` itself (None: the model's draw seed).
        order_seed = int(np.random.randint(2**31) if seed is None else seed)
        super().__init__(shapes[0][0], batch_size, shuffle, order_seed,
                         stale_filter=StaleFilter(model, seed),
                         workers=_ARRAY_WORKERS,
                         max_queue_size=_ARRAY_QUEUE_SIZE)

    def _batch(self, rows, index):
        batch = keras.tree.map_structure(lambda array: array[rows], self.arrays)
        if self.map_fn is None:
            return batch
        mapped = self.map_fn(*batch)
        if isinstance(mapped, list):
            mapped = tuple(mapped)
        _check_examples(mapped, "What `map_fn` returns")
        return mapped
