"""The data pipeline: batching, augmentation, and what keras-sb needs to know
about the training data.

`training_pipeline` and `evaluation_pipeline` turn an unbatched dataset of
`(uint8 image, label)` (as `keras_sb.datasets.load` returns) into batches of
float32 images in `[0, 1]`; the training one shuffles and applies the
standard CIFAR augmentation (random crop with padding, horizontal flip) in
parallel, and prefetches so that the accelerator is not kept waiting.

`ArrayPipeline` does the same from NumPy arrays as a `keras.utils.PyDataset`,
for any backend and without TensorFlow (e.g. JAX on a GPU machine).

Stale selection (`keras_sb.StaleSelection`) needs to know which example is
which: `with_example_ids` gives every example of a dataset a stable id before
it is shuffled and augmented, `keep_example_ids` adapts map functions to such
elements, and both pipelines take `example_ids=True`. An element with an id is
the dict `{"data": element, "example_id": id}`.
"""

import collections.abc
import threading
import types
import weakref

import keras
import numpy as np

from keras_sb.selection import is_integer


def require_tensorflow(what):
    """Imports TensorFlow, or says clearly that `what` needs it."""
    try:
        import tensorflow as tf
    except ImportError as error:
        raise ImportError(
            f"{what} needs TensorFlow (tf.data): `pip install tensorflow-cpu` "
            "(or `tensorflow`). Without TensorFlow, use "
            "`keras_sb.datasets.load_arrays` and `keras_sb.data.ArrayPipeline`."
        ) from error
    return tf


DATA_KEY = "data"
EXAMPLE_ID_KEY = "example_id"
_NUM_EXAMPLES_ATTRIBUTE = "_keras_sb_num_examples"
_STALE_FILTER_ATTRIBUTE = "_keras_sb_stale_filter"
# Elements per vectorized draw of `StaleFilter`.
_FILTER_CHUNK = 256
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
    that follow. Map functions written for the original elements need
    `keep_example_ids`; batching batches the ids too.

    Args:
        dataset: a finite `tf.data.Dataset` of single examples, e.g.
            `(image, label)`, whose order is the same in every epoch.

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
        raise ValueError("The dataset's elements carry example ids already.")
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
        setattr(with_ids, _NUM_EXAMPLES_ATTRIBUTE, num_examples)
    return with_ids


def keep_example_ids(fn):
    """Adapts a map function to elements that carry example ids.

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


class StaleFilter:
    """Draws stale selection's keep/skip decisions in the input pipeline.

    Made by `stale_filter(model)`; apply it to unbatched elements that carry
    example ids, before augmentation and batching (or give the model to
    `ArrayPipeline(..., stale_model=model)`, which makes one). In a stale
    epoch of `model` (see `keras_sb.StaleSelection`) each example is kept
    with the selection probability stored for its id in the last fresh
    epoch, and skipped otherwise: a skipped example is not augmented,
    batched, or passed through the model at all. In every other epoch all
    examples pass.

    At the start of every stale epoch the model hands the stored
    probabilities to the filter, which draws every example's keep/skip at
    once (NumPy) into a table in host memory; the pipeline only looks its
    elements up, and never reads the model's (accelerator) variables. The
    draws of epoch `e` depend only on `(seed, e)`: not on the shuffling, the
    pipeline's parallelism or prefetching.

    An id outside the table is kept (probability 1); the model reports it
    at the end of the epoch.
    """

    def __init__(self, model, seed=None):
        if getattr(model, "selection_state", None) is None:
            raise ValueError(
                "`stale_filter` needs a keras_sb.SelectiveBackpropModel. "
                f"Received: model of type {type(model).__name__}."
            )
        if seed is not None and (isinstance(seed, bool)
                                 or not isinstance(seed, (int, np.integer))):
            raise ValueError(f"`seed` must be None or an int. Received: seed={seed!r}")
        self._model = weakref.ref(model)
        self.seed = int(np.random.randint(2**31) if seed is None else seed)
        self.stale = False
        # Whether each example is kept in this epoch, then a last `True` that
        # ids outside the table look up (all ids, outside stale epochs).
        self._kept_numpy = np.ones(1, bool)
        self.version = 0  # Counts the epochs begun.
        self._tf_state = None

    def _tf_variables(self):
        """`(stale, kept)` as host variables for `tf.data` (made on first use)."""
        if self._tf_state is None:
            tf = require_tensorflow("keras_sb.data.stale_filter")
            with tf.init_scope(), tf.device("/CPU:0"):
                self._tf_state = (
                    tf.Variable(self.stale, trainable=False, name="stale_epoch"),
                    tf.Variable(self._kept_numpy, shape=tf.TensorShape([None]),
                                trainable=False, name="kept"),
                )
        return self._tf_state

    @property
    def model(self):
        """The model whose stale epochs this filter follows (or None)."""
        return self._model()

    def begin_epoch(self, stale, epoch, probabilities=None):
        """Sets the draws of the epoch that starts (called by the model).

        Args:
            stale: whether the epoch is stale (examples are drawn) or not
                (every example passes).
            epoch: index of the epoch over the model's life; with the seed,
                it decides the draws.
            probabilities: float array `(num_examples,)`, the probabilities
                stored by the last fresh epoch (needed when `stale`).
        """
        kept = np.ones(0, bool)
        if stale:
            probabilities = np.asarray(probabilities, "float32")
            draws = np.random.default_rng([self.seed, int(epoch)]).random(
                len(probabilities))
            kept = draws < probabilities
        self.stale = bool(stale)
        self._kept_numpy = np.append(kept, True)
        self.version += 1
        if self._tf_state is not None:
            self._tf_state[0].assign(self.stale)
            self._tf_state[1].assign(self._kept_numpy)

    def kept_fraction(self):
        """Fraction of the examples kept in this stale epoch (NaN in other
        epochs)."""
        if not self.stale:
            return float("nan")
        return float(self._kept_numpy[:-1].mean())

    def kept_rows(self, example_ids):
        """NumPy: whether each of the int array `example_ids` is kept."""
        outside = len(self._kept_numpy) - 1
        valid = (example_ids >= 0) & (example_ids < outside)
        return self._kept_numpy[np.where(valid, example_ids, outside)]

    def keep(self, example_ids):
        """TensorFlow: whether the examples `example_ids` (a tensor of any
        shape) are kept, for `tf.data` functions."""
        tf = require_tensorflow("keras_sb.data.stale_filter")
        _, kept = self._tf_variables()
        example_ids = tf.cast(example_ids, tf.int64)
        # The last row's index, without reading the whole table.
        outside = tf.raw_ops.VariableShape(input=kept.handle,
                                           out_type=tf.int64)[0] - 1
        valid = tf.logical_and(example_ids >= 0, example_ids < outside)
        return kept.sparse_read(tf.where(valid, example_ids, outside))

    def pad_batches(self, batch_size):
        """Fills the last batch of each stale epoch up to `batch_size` rows.

        A stale epoch keeps a random number of examples, so its last batch
        has a random size, and XLA (`jit_compile=True`, JAX) would compile
        the train step once more for every stale epoch. Apply this after
        batching to keep every batch of a stale epoch full: the rows added
        are zeros with the example id `PADDING_ID`, which the model never
        trains on. Other epochs are left as they are.

        Args:
            batch_size: the batch size of the batched dataset.

        Returns:
            A function for `tf.data.Dataset.apply`.
        """
        tf = require_tensorflow("keras_sb.data.stale_filter")
        _check_batch_size(batch_size)
        stale, _ = self._tf_variables()

        # Plain TensorFlow ops, no Python control flow: nothing for AutoGraph
        # to convert (it fails on these closures and warns).
        @tf.autograph.experimental.do_not_convert
        def pad(element):
            ids = element[EXAMPLE_ID_KEY]
            missing = batch_size - tf.shape(ids)[0]

            def padded():
                def fill(tensor, value=0):
                    paddings = [[0, missing]] + [[0, 0]] * (tensor.shape.rank - 1)
                    return tf.pad(tensor, paddings,
                                  constant_values=tf.cast(value, tensor.dtype))

                return {DATA_KEY: tf.nest.map_structure(fill, element[DATA_KEY]),
                        EXAMPLE_ID_KEY: fill(ids, PADDING_ID)}

            full = tf.logical_or(tf.logical_not(stale.read_value()),
                                 missing <= 0)
            return tf.cond(full, lambda: element, padded)

        def apply(dataset):
            spec = dataset.element_spec
            if not has_example_ids(spec) or spec[EXAMPLE_ID_KEY].shape.rank != 1:
                raise ValueError(
                    "`pad_batches` applies to batches with example ids: apply "
                    "it after `batch`. Received elements with structure "
                    f"{spec}."
                )
            return dataset.map(pad)

        return apply

    def __call__(self, dataset):
        """Filters `dataset` (for `tf.data.Dataset.apply`)."""
        spec = dataset.element_spec
        if not has_example_ids(spec):
            raise ValueError(
                "`stale_filter` needs elements with example ids: apply "
                "`keras_sb.data.with_example_ids` first. Received elements "
                f"with structure {spec}."
            )
        if spec[EXAMPLE_ID_KEY].shape.rank != 0:
            raise ValueError(
                "`stale_filter` draws single examples: apply it before "
                "batching. Received example ids of shape "
                f"{spec[EXAMPLE_ID_KEY].shape}."
            )
        tf = require_tensorflow("keras_sb.data.stale_filter")
        if all(leaf.shape.is_fully_defined() for leaf in tf.nest.flatten(spec)):
            # Vectorized: a tf.data filter calls its predicate once per
            # element, which cost as much as the rest of a shuffle-and-batch
            # pipeline of in-memory CIFAR images.
            stale, _ = self._tf_variables()

            @tf.autograph.experimental.do_not_convert
            def keep_rows(chunk):
                def drawn():
                    kept = self.keep(chunk[EXAMPLE_ID_KEY])
                    return tf.nest.map_structure(
                        lambda tensor: tf.boolean_mask(tensor, kept), chunk)

                return tf.cond(stale.read_value(), drawn, lambda: chunk)

            filtered = dataset.batch(_FILTER_CHUNK).map(keep_rows).unbatch()
        else:  # Elements of different shapes cannot be batched.
            filtered = dataset.filter(tf.autograph.experimental.do_not_convert(
                lambda element: self.keep(element[EXAMPLE_ID_KEY])))
        setattr(filtered, _STALE_FILTER_ATTRIBUTE, self)
        return filtered


def stale_filter(model, seed=None):
    """Skips the examples of a stale epoch in the input pipeline.

    With `keras_sb.StaleSelection`, a stale epoch reuses each example's
    selection probability from the last fresh epoch. Without this filter the
    train step draws the examples: every example is still read, augmented
    and batched. With it, the pipeline draws them before augmentation and
    batching, and only the kept examples reach the model, in full batches: a
    stale epoch has about `selected fraction x` as many steps, and the model
    trains on every example it receives. Fresh epochs pass every example.

    Args:
        model: the `keras_sb.SelectiveBackpropModel` the data train.
        seed: int seed of the draws (None: random, from NumPy's global
            generator, which `keras.utils.set_random_seed` seeds).

    Returns:
        A `StaleFilter`: a function from a `tf.data.Dataset` of unbatched
        elements with example ids to the filtered dataset, for
        `Dataset.apply`.

    Example:

    ```python
    draws = keras_sb.data.stale_filter(model)
    train = (keras_sb.data.with_example_ids(raw_train)
             .shuffle(10_000)
             .apply(draws)
             .map(keras_sb.data.keep_example_ids(augment))
             .batch(128)
             .apply(draws.pad_batches(128)))  # Static shapes (XLA).
    model.fit(train, epochs=30, callbacks=[keras_sb.StaleSelection(3)])
    ```

    `keras_sb.data.training_pipeline(raw_train, 128, stale_model=model)`
    does all of this.
    """
    return StaleFilter(model, seed)


def find_stale_filter(x):
    """The `StaleFilter` applied to the training data `x`, or None."""
    if isinstance(x, ArrayPipeline):
        return x.stale_filter
    return _find_in_chain(x, _STALE_FILTER_ATTRIBUTE)


def _find_in_chain(dataset, attribute):
    """`attribute` of `dataset` or of the nearest dataset it was made from
    (walking back through its chain of transformations), or None."""
    while dataset is not None:
        found = getattr(dataset, attribute, None)
        if found is not None:
            return found
        dataset = getattr(dataset, "_input_dataset", None)
    return None


def count_examples(x):
    """Number of distinct examples (ids) behind training data with ids.

    Known for an `ArrayPipeline` with ids and for `tf.data` datasets derived
    from `with_example_ids` by element-wise transformations (shuffle, map,
    batch, prefetch, ...); None otherwise.
    """
    if isinstance(x, ArrayPipeline):
        return len(x.images) if x.example_ids else None
    # Walk back through the chain of transformations to `with_example_ids`.
    return _find_in_chain(x, _NUM_EXAMPLES_ATTRIBUTE)


def peek_structure(x):
    """Structure of one training batch of `x`, without consuming `fit`'s data.

    Returns None when it cannot be known without reading an iterator.
    """
    if _is_tf_dataset(x):
        return x.element_spec
    if isinstance(x, keras.utils.PyDataset):
        return x[0]
    if isinstance(x, (types.GeneratorType, collections.abc.Iterator)):
        return None
    return x  # Arrays or tensors: a batch has their structure.


def _first_leaf(structure):
    leaves = [leaf for leaf in keras.tree.flatten(structure) if leaf is not None]
    return leaves[0] if leaves else None


def _size_of_batch(batch):
    """Number of examples in a batch (None for a structure of no tensors)."""
    leaf = _first_leaf(batch)
    return None if leaf is None else int(leaf.shape[0])


def peek_generator(generator):
    """The batch size of a Python generator's first batch, without losing it.

    Args:
        generator: a Python generator of batches, as `fit` takes.

    Returns:
        Tuple `(batch_size, batches)`: the first batch's size (None for an
        empty generator) and a generator of all the batches, the first one
        included, to use instead of `generator`.
    """
    first = next(generator, None)
    if first is None:
        return None, generator

    def batches():
        yield first
        yield from generator

    return _size_of_batch(first), batches()


def batch_size_of(x, batch_size=None):
    """The batch size `fit` will train with, as far as it can be known.

    Args:
        x: the `x` argument of `fit`: arrays or tensors (or a structure of
            them), a `tf.data.Dataset`, a `keras.utils.PyDataset`, or another
            iterable.
        batch_size: the `batch_size` argument of `fit`.

    Returns:
        An int, or None if the batch size cannot be known before training
        (for example a Python generator: see `peek_generator`).
    """
    if batch_size is not None:
        return int(batch_size)
    if isinstance(x, keras.utils.PyDataset):
        return _size_of_batch(x[0])
    if _is_tf_dataset(x):
        leaf = _first_leaf(x.element_spec)
        if leaf is not None and leaf.shape.rank and leaf.shape[0] is not None:
            return int(leaf.shape[0])
        for element in x.take(1):  # The batch dimension is dynamic: peek.
            return _size_of_batch(element)
        return None
    leaf = _first_leaf(x)
    if leaf is not None and hasattr(leaf, "shape") and len(leaf.shape):
        # Arrays: Keras's default batch size is 32.
        return min(32, int(leaf.shape[0]))
    return None


def _is_tf_dataset(x):
    try:
        import tensorflow as tf
    except ImportError:
        return False
    return isinstance(x, tf.data.Dataset)


def pad_crop_flip(image, padding=4):
    """Standard CIFAR augmentation of one image (a `tf.data` map function).

    Pads `padding` pixels of zeros on each side, crops a random window of the
    original size and flips it horizontally with probability 0.5.

    Args:
        image: tensor `(height, width, channels)`.
        padding: pixels of zero padding on each side, `>= 0`.

    Returns:
        The augmented image, same shape and dtype.
    """
    tf = require_tensorflow("keras_sb.data.pad_crop_flip")

    height, width, channels = image.shape
    padded = tf.image.resize_with_crop_or_pad(
        image, height + 2 * padding, width + 2 * padding
    )
    cropped = tf.image.random_crop(padded, (height, width, channels))
    return tf.image.random_flip_left_right(cropped)


def scale_images(images, labels):
    """uint8 images to float32 in `[0, 1]` (a `tf.data` map function)."""
    tf = require_tensorflow("keras_sb.data.scale_images")

    return tf.cast(images, tf.float32) / 255.0, labels


def training_pipeline(dataset, batch_size, augment=True, shuffle_buffer=10_000,
                      seed=None, padding=4, example_ids=False,
                      stale_model=None, autotune=False):
    """Shuffled, augmented, batched and prefetched training data.

    Args:
        dataset: unbatched `tf.data.Dataset` of `(uint8 image, label)`.
        batch_size: examples per batch, `>= 1`. The last batch of an epoch
            may be smaller.
        augment: whether to apply `pad_crop_flip`.
        shuffle_buffer: size of the shuffle buffer (0: no shuffling).
        seed: seed of the shuffling (None: random). The augmentation follows
            TensorFlow's global seed (`keras.utils.set_random_seed`).
        padding: padding of the random crop.
        example_ids: whether elements carry example ids (see
            `with_example_ids`), as `keras_sb.StaleSelection` needs.
        stale_model: optional `keras_sb.SelectiveBackpropModel`: in its
            stale epochs, examples are drawn after shuffling and before
            augmentation by `stale_filter(stale_model, seed)`, so skipped
            examples cost nothing. Implies `example_ids=True`.
        autotune: whether tf.data tunes the parallelism and buffer sizes
            while it runs (`tf.data.Options().autotune.enabled`). Off by
            default: on a 2-core machine, autotuning delayed the first batch
            of 8 of 12 epochs by 2.5-3.3 s
            (`benchmarks/pipeline_stall.py`). Without it, the parallel maps
            use one call per CPU core.

    Returns:
        A `tf.data.Dataset` of `(float32 images in [0, 1], labels)` batches,
        or of `{"data": (images, labels), "example_id": ids}` with
        `example_ids=True`.

    Example:

    ```python
    train = keras_sb.datasets.load("cifar10", "train", path=archive)
    model.fit(keras_sb.data.training_pipeline(train, 128), epochs=30)
    ```
    """
    tf = require_tensorflow("keras_sb.data.training_pipeline")

    batch_size = _check_batch_size(batch_size)
    if has_example_ids(dataset.element_spec):
        raise ValueError(
            "`training_pipeline` gives the examples their ids itself: pass "
            "the dataset without `with_example_ids`, and `example_ids=True`."
        )
    _check_image_pairs(dataset, "training_pipeline")
    example_ids = example_ids or stale_model is not None
    wrap = keep_example_ids if example_ids else (lambda fn: fn)
    if example_ids:
        dataset = with_example_ids(dataset)
    if shuffle_buffer:
        dataset = dataset.shuffle(shuffle_buffer, seed=seed,
                                  reshuffle_each_iteration=True)
    draws = None
    if stale_model is not None:
        draws = stale_filter(stale_model, seed)
        dataset = dataset.apply(draws)
    if augment:
        dataset = dataset.map(
            wrap(lambda image, label: (pad_crop_flip(image, padding), label)),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    dataset = dataset.batch(batch_size, num_parallel_calls=tf.data.AUTOTUNE)
    if draws is not None:
        dataset = dataset.apply(draws.pad_batches(batch_size))
    return _scale_and_prefetch(dataset, autotune, wrap)


def evaluation_pipeline(dataset, batch_size, autotune=False):
    """Batched, scaled and prefetched evaluation data (no augmentation).

    Args:
        dataset: unbatched `tf.data.Dataset` of `(uint8 image, label)`.
        batch_size: examples per batch, `>= 1`.
        autotune: whether tf.data tunes its parallelism and buffer sizes
            while it runs (see `training_pipeline`).

    Returns:
        A `tf.data.Dataset` of `(float32 images in [0, 1], labels)` batches.
    """
    tf = require_tensorflow("keras_sb.data.evaluation_pipeline")

    batch_size = _check_batch_size(batch_size)
    if has_example_ids(dataset.element_spec):  # Evaluation needs no ids.
        dataset = dataset.map(lambda element: element[DATA_KEY])
    _check_image_pairs(dataset, "evaluation_pipeline")
    return _scale_and_prefetch(
        dataset.batch(batch_size, num_parallel_calls=tf.data.AUTOTUNE),
        autotune)


def _scale_and_prefetch(batches, autotune, wrap=lambda fn: fn):
    tf = require_tensorflow("keras_sb.data pipelines")

    options = tf.data.Options()
    options.autotune.enabled = bool(autotune)
    return (batches.map(wrap(scale_images), num_parallel_calls=tf.data.AUTOTUNE)
            .prefetch(tf.data.AUTOTUNE)
            .with_options(options))


def _check_batch_size(batch_size):
    """`batch_size` as a Python int, or a ValueError."""
    if not is_integer(batch_size) or batch_size < 1:
        raise ValueError(
            f"`batch_size` must be an int >= 1. Received: batch_size={batch_size!r}"
        )
    return int(batch_size)


def _check_image_pairs(dataset, what):
    """Raises a ValueError unless `dataset` holds single `(uint8 image,
    label)` pairs, images of shape `(height, width, channels)`."""
    spec = dataset.element_spec
    if (not isinstance(spec, tuple) or len(spec) != 2
            or spec[0].shape.rank != 3):
        raise ValueError(
            f"`{what}` takes an unbatched dataset of `(image, label)` pairs, "
            "images of shape `(height, width, channels)`; it batches them "
            f"itself. Received elements: {spec}"
        )
    _check_uint8_images(spec[0].dtype.name, what)


def _check_uint8_images(dtype, what):
    """Raises a ValueError unless images of `dtype` are uint8: the pipelines
    scale them by 1/255, so images already scaled would be scaled twice."""
    if dtype != "uint8":
        raise ValueError(
            f"The images must be uint8 (0-255); `{what}` scales them to "
            f"[0, 1]. Received: images of dtype {dtype}"
        )


def pad_crop_flip_batch(images, rng, padding=4):
    """`pad_crop_flip` on a NumPy batch `(n, height, width, channels)`.

    Each image gets its own crop offset and flip, drawn from the NumPy
    generator `rng`.
    """
    n, height, width, _ = images.shape
    padded = np.pad(images, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    # (n, offsets_y, offsets_x, channels, height, width), a view: no copy.
    windows = np.lib.stride_tricks.sliding_window_view(
        padded, (height, width), axis=(1, 2))
    offsets = rng.integers(0, 2 * padding + 1, (2, n))
    crops = windows[np.arange(n), offsets[0], offsets[1]]
    flip = rng.random(n) < 0.5
    crops[flip] = crops[flip, :, :, ::-1]
    return crops.transpose(0, 2, 3, 1)


class ArrayPipeline(keras.utils.PyDataset):
    """Batches of NumPy images for `fit`, with the standard augmentation.

    The NumPy counterpart of `training_pipeline` / `evaluation_pipeline`: a
    `keras.utils.PyDataset` (any backend, no TensorFlow) that shuffles each
    epoch, applies `pad_crop_flip_batch` and scales uint8 images to float32
    in `[0, 1]`. Batches are prepared in `workers` threads ahead of the step.
    Randomness depends only on `(seed, epoch, batch index)`, so runs with a
    seed repeat exactly.

    Args:
        images: uint8 array `(n, height, width, channels)`.
        labels: array `(n,)`.
        batch_size: examples per batch, `>= 1`; the last batch of an epoch
            may be smaller.
        augment: whether to apply the random crop and flip.
        shuffle: whether to shuffle each epoch.
        seed: int seed (None: random).
        padding: padding of the random crop.
        workers: threads preparing batches.
        example_ids: whether batches carry example ids (the row numbers in
            `images`): `{"data": (images, labels), "example_id": ids}`, as
            `keras_sb.StaleSelection` needs.
        stale_model: optional `keras_sb.SelectiveBackpropModel`: its stale
            epochs draw their examples here (a `StaleFilter` with this
            pipeline's seed), so a skipped example is not augmented or
            batched; the last batch of a stale epoch is filled with rows of
            id `PADDING_ID`, which the model does not train on. Implies
            `example_ids=True`.

    Example:

    ```python
    images, labels = keras_sb.datasets.load_arrays("cifar10", "train", path)
    model.fit(keras_sb.data.ArrayPipeline(images, labels, 128), epochs=30)
    ```
    """

    def __init__(self, images, labels, batch_size, augment=True, shuffle=True,
                 seed=None, padding=4, workers=4, example_ids=False,
                 stale_model=None):
        super().__init__(workers=workers, use_multiprocessing=False,
                         max_queue_size=2 * workers)
        batch_size = _check_batch_size(batch_size)
        images, labels = np.asarray(images), np.asarray(labels)
        if images.ndim != 4 or labels.ndim < 1 or len(images) != len(labels):
            raise ValueError(
                "`images` must be an array `(n, height, width, channels)` and "
                "`labels` an array of `n` labels. Received: images of shape "
                f"{images.shape} and labels of shape {labels.shape}."
            )
        _check_uint8_images(images.dtype.name, "ArrayPipeline")
        if not is_integer(padding) or padding < 0:
            raise ValueError(
                f"`padding` must be an int >= 0. Received: padding={padding!r}"
            )
        if seed is not None and not is_integer(seed):
            raise ValueError(f"`seed` must be None or an int. Received: seed={seed!r}")
        self.images = images
        self.labels = labels
        self.batch_size = batch_size
        self.augment = augment
        self.shuffle = shuffle
        self.padding = padding
        self.example_ids = example_ids or stale_model is not None
        self._seed = int(np.random.default_rng(seed).integers(2**31))
        self._epoch = 0
        self._order = self._new_order()
        self.stale_filter = None
        if stale_model is not None:
            self.stale_filter = StaleFilter(stale_model, self._seed)
        # The rows of the epoch (stale epochs: the kept ones), and the
        # (draws, epoch) they were taken for; the worker threads share them.
        self._rows_lock = threading.Lock()
        self._rows_key = None
        self._rows = self._order

    def _new_order(self):
        if not self.shuffle:
            return np.arange(len(self.images))
        return np.random.default_rng([self._seed, self._epoch]).permutation(
            len(self.images))

    def _epoch_rows(self):
        draws = self.stale_filter
        if draws is None:
            return self._order
        with self._rows_lock:
            key = (draws.version, self._epoch)
            if key != self._rows_key:
                self._rows = self._order
                if draws.stale:
                    self._rows = self._order[draws.kept_rows(self._order)]
                self._rows_key = key
            return self._rows

    def __len__(self):
        return -(-len(self._epoch_rows()) // self.batch_size)

    def __getitem__(self, index):
        if not 0 <= index < len(self):
            raise IndexError(f"Batch {index} of {len(self)}.")
        rows = self._epoch_rows()[index * self.batch_size:
                                  (index + 1) * self.batch_size]
        images = self.images[rows]
        if self.augment:
            rng = np.random.default_rng([self._seed, self._epoch, index])
            images = pad_crop_flip_batch(images, rng, self.padding)
        batch = (np.multiply(images, np.float32(1 / 255), dtype="float32"),
                 self.labels[rows])
        ids = rows.astype("int32")
        missing = self.batch_size - len(rows)
        if self.stale_filter is not None and self.stale_filter.stale and missing:
            # A full last batch (static shapes): rows the model skips.
            batch = tuple(np.concatenate([part, np.zeros((missing,) + part.shape[1:],
                                                         part.dtype)])
                          for part in batch)
            ids = np.append(ids, np.full(missing, PADDING_ID, "int32"))
        if self.example_ids:
            return {DATA_KEY: batch, EXAMPLE_ID_KEY: ids}
        return batch

    def on_epoch_end(self):
        self._epoch += 1
        self._order = self._new_order()
