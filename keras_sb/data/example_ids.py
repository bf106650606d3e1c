"""Example ids: which example is which, through shuffling and augmentation.

Stale selection (`keras_sb.StaleSelection`) needs to know which example is
which: `with_example_ids` gives every example of a dataset a stable id before
it is shuffled and augmented, `keep_example_ids` adapts map functions to such
elements, and both pipelines take `example_ids=True`. An element with an id is
the dict `{"data": element, "example_id": id}`.
`keras_sb.data.selective_pipeline` puts these steps in the right order.
"""

import keras
import numpy as np

from keras_sb import _keras_compat
from keras_sb.data._tensorflow import require_tensorflow

DATA_KEY = "data"
EXAMPLE_ID_KEY = "example_id"
# Set by `with_example_ids` on the dataset it returns; `count_examples` finds
# it from the datasets made from that one.
NUM_EXAMPLES_ATTRIBUTE = "_keras_sb_num_examples"
# The example id of the rows that `StaleFilter.pad_batches` adds.
PADDING_ID = -(2**31)


def has_example_ids(structure):
    """Whether a batch (or element spec) carries example ids."""
    return isinstance(structure, dict) and set(structure) == {DATA_KEY, EXAMPLE_ID_KEY}


def split_example_ids(structure):
    """`(data, example_ids)` of an element with ids, else `(structure, None)`."""
    if has_example_ids(structure):
        return structure[DATA_KEY], structure[EXAMPLE_ID_KEY]
    return structure, None


def class_weight_to_sample_weights(y, class_weight):
    """Per-example weights of a batch from `fit`'s `class_weight`, with ops.

    What Keras's data adapters do with `class_weight` (they cannot for
    batches with example ids), written with `keras.ops` so that it runs
    inside the compiled train step: the class of an example is `y` itself
    (rounded) for sparse labels `(batch,)` or `(batch, 1)`, and its
    `argmax` for one-hot labels; classes missing from `class_weight` get 1.

    Args:
        y: the batch's targets (a single tensor).
        class_weight: dict mapping class indices (ints) to weights.

    Returns:
        A float32 tensor `(batch,)`.
    """
    if keras.tree.is_nested(y):
        raise ValueError(
            "`class_weight` is only supported for models with a single output."
        )
    if len(y.shape) >= 2 and y.shape[-1] != 1:
        classes = keras.ops.argmax(y, axis=-1)
    else:
        classes = keras.ops.round(keras.ops.reshape(y, (-1,)))
    classes = keras.ops.cast(classes, "int32")
    table = np.array([class_weight.get(c, 1.0)
                      for c in range(max(class_weight) + 1)], "float32")
    known = keras.ops.logical_and(classes >= 0, classes < len(table))
    weights = keras.ops.take(table, keras.ops.clip(classes, 0, len(table) - 1))
    return keras.ops.where(known, weights, 1.0)


def with_example_ids(dataset):
    """Gives each example of a `tf.data.Dataset` a stable id.

    Call it on the dataset of single examples, before shuffling, augmenting,
    repeating and batching: the id of an example is its position in
    `dataset`, and it travels with the example through the transformations
    that follow. Batching batches the ids too.

    `keras_sb.data.selective_pipeline` does all of this (ids, shuffling,
    stale draws, augmentation with `keep_example_ids`, batching), and is the
    simplest way to prepare training data for stale selection or pruning.

    Two mistakes to avoid when building the pipeline by hand:

    - Shuffling before this call. The position of an example then changes
      from epoch to epoch, and so would its id: this raises a `ValueError`
      if `dataset` was made by a `shuffle` that reshuffles every epoch
      (the default of `Dataset.shuffle`, and of `Dataset.list_files`).
      Shuffle after this call instead (a shuffle with
      `reshuffle_each_iteration=False` before it is fine).
    - Mapping the elements with a function of the original elements. An
      element is now the dict `{"data": element, "example_id": id}`, so
      `.map(lambda image, label: ...)` fails inside tf.data with
      `TypeError: <lambda>() missing 1 required positional argument`: wrap
      the function, `.map(keras_sb.data.keep_example_ids(augment))`.

    Args:
        dataset: a finite `tf.data.Dataset` of single examples, e.g.
            `(image, label)`, whose order is the same in every epoch (not
            shuffled yet).

    Returns:
        A `tf.data.Dataset` of `{"data": element, "example_id": int64 id}`.

    Example:

    ```python
    train = keras_sb.data.with_example_ids(raw_train)
    train = (train.shuffle(10_000)
             .map(keras_sb.data.keep_example_ids(augment))
             .batch(128))
    model.fit(train, epochs=30, callbacks=[keras_sb.StaleSelection(3)])
    ```
    """
    tf = require_tensorflow("keras_sb.data.with_example_ids")

    if has_example_ids(dataset.element_spec):
        raise ValueError(
            "The dataset's elements carry example ids already. Received: "
            f"elements with structure {dataset.element_spec}"
        )
    check_not_reshuffled(
        dataset, "with_example_ids",
        "Call `with_example_ids` before `shuffle` (or use "
        "`keras_sb.data.selective_pipeline`, which does both in the right "
        "order).")
    num_examples = int(dataset.cardinality())
    if num_examples == tf.data.INFINITE_CARDINALITY:
        raise ValueError(
            "`with_example_ids` needs a finite dataset of single examples; "
            "this one is infinite. Call it before `repeat()`."
        )
    with_ids = dataset.enumerate().map(
        lambda index, element: {DATA_KEY: element, EXAMPLE_ID_KEY: index}
    )
    if num_examples >= 0:
        setattr(with_ids, NUM_EXAMPLES_ATTRIBUTE, num_examples)
    return with_ids


def check_not_reshuffled(dataset, what, advice):
    """Raises a ValueError if `dataset` comes from a `shuffle` that reshuffles
    every epoch: ids given to its elements by position would not follow the
    examples from one epoch to the next."""
    if _keras_compat.reshuffling_shuffle_in_chain(dataset) is not None:
        raise ValueError(
            f"`{what}` got a dataset that is reshuffled every epoch: ids "
            "given by position would not follow the examples from one epoch "
            f"to the next. {advice} A `shuffle` with "
            "`reshuffle_each_iteration=False`, or followed by `cache()`, "
            "keeps one order and is fine; `Dataset.list_files` shuffles by "
            "default (pass `shuffle=False`). Received: a dataset made by "
            "`shuffle(..., reshuffle_each_iteration=True)`."
        )


def keep_example_ids(fn):
    """Adapts a map function to elements that carry example ids.

    `Dataset.map(fn)` with a function of `(x, y)` fails on such elements
    (dicts `{"data": (x, y), "example_id": id}`) with `TypeError: fn()
    missing 1 required positional argument`; `Dataset.map(
    keep_example_ids(fn))` applies `fn` to `(x, y)` and keeps the id.

    Args:
        fn: a function of the original element (called with its tuple items
            as arguments, as `tf.data.Dataset.map` does), returning a new
            element.

    Returns:
        A function for `Dataset.map` that applies `fn` to the element's data
        and keeps its id.

    Example:

    ```python
    flip = lambda image, label: (tf.image.random_flip_left_right(image), label)
    train = keras_sb.data.with_example_ids(raw).map(
        keras_sb.data.keep_example_ids(flip))
    ```
    """

    def apply(*element):
        # tf.data passes a tuple element as separate arguments.
        data, example_id = split_example_ids(
            element[0] if len(element) == 1 else element)
        if example_id is None:
            raise ValueError(
                "`keep_example_ids(fn)` maps elements made by "
                "`keras_sb.data.with_example_ids`; this element has no ids. "
                "Map `fn` itself instead."
            )
        result = fn(*data) if isinstance(data, tuple) else fn(data)
        return {DATA_KEY: result, EXAMPLE_ID_KEY: example_id}

    return apply
