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

import keras
import numpy as np


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


def has_example_ids(structure):
    """Whether a batch (or element spec) carries example ids."""
    return isinstance(structure, dict) and set(structure) == {DATA_KEY, EXAMPLE_ID_KEY}


def split_example_ids(structure):
    """`(data, example_ids)` of an element with ids, else `(structure, None)`."""
    if has_example_ids(structure):
        return structure[DATA_KEY], structure[EXAMPLE_ID_KEY]
    return structure, None


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

    def apply(element):
        data, example_id = split_example_ids(element)
        if example_id is None:
            raise ValueError(
                "`keep_example_ids(fn)` maps elements made by "
                "`keras_sb.data.with_example_ids`; this element has no ids. "
                "Map `fn` itself instead."
            )
        result = fn(*data) if isinstance(data, tuple) else fn(data)
        return {DATA_KEY: result, EXAMPLE_ID_KEY: example_id}

    return apply


def count_examples(x):
    """Number of distinct examples (ids) behind training data with ids.

    Known for an `ArrayPipeline` with ids and for `tf.data` datasets derived
    from `with_example_ids` by element-wise transformations (shuffle, map,
    batch, prefetch, ...); None otherwise.
    """
    if isinstance(x, ArrayPipeline):
        return len(x.images) if x.example_ids else None
    # Walk back through the chain of transformations to `with_example_ids`.
    while x is not None:
        count = getattr(x, _NUM_EXAMPLES_ATTRIBUTE, None)
        if count is not None:
            return count
        x = getattr(x, "_input_dataset", None)
    return None


def peek_structure(x):
    """Structure of one training batch of `x`, without consuming `fit`'s data.

    Returns None when it cannot be known without reading a generator.
    """
    if _is_tf_dataset(x):
        return x.element_spec
    if isinstance(x, keras.utils.PyDataset):
        return x[0]
    return None


def _first_leaf(structure):
    leaves = [leaf for leaf in keras.tree.flatten(structure) if leaf is not None]
    return leaves[0] if leaves else None


def batch_size_of(x, batch_size=None):
    """The batch size `fit` will train with, as far as it can be known.

    Args:
        x: the `x` argument of `fit`: arrays or tensors (or a structure of
            them), a `tf.data.Dataset`, a `keras.utils.PyDataset`, or another
            iterable.
        batch_size: the `batch_size` argument of `fit`.

    Returns:
        An int, or None if the batch size cannot be known before training
        (for example a Python generator).
    """
    if batch_size is not None:
        return int(batch_size)
    if isinstance(x, keras.utils.PyDataset):
        leaf = _first_leaf(x[0])
        return None if leaf is None else int(leaf.shape[0])
    if _is_tf_dataset(x):
        leaf = _first_leaf(x.element_spec)
        if leaf is not None and leaf.shape.rank and leaf.shape[0] is not None:
            return int(leaf.shape[0])
        for element in x.take(1):  # The batch dimension is dynamic: peek.
            return int(_first_leaf(element).shape[0])
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
                      seed=None, padding=4, example_ids=False):
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

    _check_batch_size(batch_size)
    wrap = keep_example_ids if example_ids else (lambda fn: fn)
    if example_ids:
        dataset = with_example_ids(dataset)
    if shuffle_buffer:
        dataset = dataset.shuffle(shuffle_buffer, seed=seed,
                                  reshuffle_each_iteration=True)
    if augment:
        dataset = dataset.map(
            wrap(lambda image, label: (pad_crop_flip(image, padding), label)),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    return _batch_and_scale(dataset, batch_size, wrap)


def evaluation_pipeline(dataset, batch_size):
    """Batched, scaled and prefetched evaluation data (no augmentation).

    Args:
        dataset: unbatched `tf.data.Dataset` of `(uint8 image, label)`.
        batch_size: examples per batch, `>= 1`.

    Returns:
        A `tf.data.Dataset` of `(float32 images in [0, 1], labels)` batches.
    """
    _check_batch_size(batch_size)
    return _batch_and_scale(dataset, batch_size)


def _batch_and_scale(dataset, batch_size, wrap=lambda fn: fn):
    tf = require_tensorflow("keras_sb.data.evaluation_pipeline")

    return (dataset.batch(batch_size, num_parallel_calls=tf.data.AUTOTUNE)
            .map(wrap(scale_images), num_parallel_calls=tf.data.AUTOTUNE)
            .prefetch(tf.data.AUTOTUNE))


def _check_batch_size(batch_size):
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(
            f"`batch_size` must be an int >= 1. Received: batch_size={batch_size!r}"
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

    Example:

    ```python
    images, labels = keras_sb.datasets.load_arrays("cifar10", "train", path)
    model.fit(keras_sb.data.ArrayPipeline(images, labels, 128), epochs=30)
    ```
    """

    def __init__(self, images, labels, batch_size, augment=True, shuffle=True,
                 seed=None, padding=4, workers=4, example_ids=False):
        super().__init__(workers=workers, use_multiprocessing=False,
                         max_queue_size=2 * workers)
        _check_batch_size(batch_size)
        if len(images) != len(labels):
            raise ValueError(
                "`images` and `labels` must have the same length. Received: "
                f"{len(images)} images and {len(labels)} labels."
            )
        self.images = images
        self.labels = labels
        self.batch_size = batch_size
        self.augment = augment
        self.shuffle = shuffle
        self.padding = padding
        self.example_ids = example_ids
        self._seed = int(np.random.default_rng(seed).integers(2**31))
        self._epoch = 0
        self._order = self._new_order()

    def _new_order(self):
        if not self.shuffle:
            return np.arange(len(self.images))
        return np.random.default_rng([self._seed, self._epoch]).permutation(
            len(self.images))

    def __len__(self):
        return -(-len(self.images) // self.batch_size)

    def __getitem__(self, index):
        if not 0 <= index < len(self):
            raise IndexError(f"Batch {index} of {len(self)}.")
        rows = self._order[index * self.batch_size:(index + 1) * self.batch_size]
        images = self.images[rows]
        if self.augment:
            rng = np.random.default_rng([self._seed, self._epoch, index])
            images = pad_crop_flip_batch(images, rng, self.padding)
        batch = (np.multiply(images, np.float32(1 / 255), dtype="float32"),
                 self.labels[rows])
        if self.example_ids:
            return {DATA_KEY: batch, EXAMPLE_ID_KEY: rows.astype("int32")}
        return batch

    def on_epoch_end(self):
        self._epoch += 1
        self._order = self._new_order()
