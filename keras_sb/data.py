"""The data pipeline: batching, augmentation, and what keras-sb needs to know
about the training data.

`training_pipeline` and `evaluation_pipeline` turn an unbatched dataset of
`(uint8 image, label)` (as `keras_sb.datasets.load` returns) into batches of
float32 images in `[0, 1]`; the training one shuffles and applies the
standard CIFAR augmentation (random crop with padding, horizontal flip) in
parallel, and prefetches so that the accelerator is not kept waiting.
"""

import keras


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
    import tensorflow as tf

    height, width, channels = image.shape
    padded = tf.image.resize_with_crop_or_pad(
        image, height + 2 * padding, width + 2 * padding
    )
    cropped = tf.image.random_crop(padded, (height, width, channels))
    return tf.image.random_flip_left_right(cropped)


def scale_images(images, labels):
    """uint8 images to float32 in `[0, 1]` (a `tf.data` map function)."""
    import tensorflow as tf

    return tf.cast(images, tf.float32) / 255.0, labels


def training_pipeline(dataset, batch_size, augment=True, shuffle_buffer=10_000,
                      seed=None, padding=4):
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

    Returns:
        A `tf.data.Dataset` of `(float32 images in [0, 1], labels)` batches.

    Example:

    ```python
    train = keras_sb.datasets.load("cifar10", "train", path=archive)
    model.fit(keras_sb.data.training_pipeline(train, 128), epochs=30)
    ```
    """
    import tensorflow as tf

    _check_batch_size(batch_size)
    if shuffle_buffer:
        dataset = dataset.shuffle(shuffle_buffer, seed=seed,
                                  reshuffle_each_iteration=True)
    if augment:
        dataset = dataset.map(
            lambda image, label: (pad_crop_flip(image, padding), label),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    return _batch_and_scale(dataset, batch_size)


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


def _batch_and_scale(dataset, batch_size):
    import tensorflow as tf

    return (dataset.batch(batch_size, num_parallel_calls=tf.data.AUTOTUNE)
            .map(scale_images, num_parallel_calls=tf.data.AUTOTUNE)
            .prefetch(tf.data.AUTOTUNE))


def _check_batch_size(batch_size):
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(
            f"`batch_size` must be an int >= 1. Received: batch_size={batch_size!r}"
        )
