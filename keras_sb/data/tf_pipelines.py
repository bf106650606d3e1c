"""The tf.data pipelines: batching, augmentation and scaling of image data.

`training_pipeline` and `evaluation_pipeline` turn an unbatched dataset of
`(uint8 image, label)` (as `keras_sb.datasets.load` returns) into batches of
float32 images in `[0, 1]`; the training one shuffles and applies the
standard CIFAR augmentation (random crop with padding, horizontal flip) in
parallel, and prefetches so that the accelerator is not kept waiting.
"""

from keras_sb.data._checks import check_batch_size
from keras_sb.data._checks import check_uint8_images
from keras_sb.data._tensorflow import require_tensorflow
from keras_sb.data.example_ids import DATA_KEY
from keras_sb.data.example_ids import has_example_ids
from keras_sb.data.example_ids import keep_example_ids
from keras_sb.data.example_ids import with_example_ids
from keras_sb.data.stale_filtering import stale_filter


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

    batch_size = check_batch_size(batch_size)
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

    batch_size = check_batch_size(batch_size)
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
    check_uint8_images(spec[0].dtype.name, what)
