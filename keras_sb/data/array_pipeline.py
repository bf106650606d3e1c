"""Training and evaluation batches from NumPy arrays, without TensorFlow.

`ArrayPipeline` does what `training_pipeline` and `evaluation_pipeline` do,
from NumPy arrays, as a `keras.utils.PyDataset`: for any backend and without
TensorFlow (e.g. JAX on a GPU machine). `RowBatches`, its base, holds what
it shares with the NumPy path of `selective_pipeline`: the rows of each
epoch (shuffled, drawn by a `StaleFilter` in stale epochs), example ids and
the padding of stale epochs' last batches.
"""

import threading

import keras
import numpy as np

from keras_sb.data._checks import check_batch_size
from keras_sb.data._checks import check_uint8_images
from keras_sb.data.example_ids import DATA_KEY
from keras_sb.data.example_ids import EXAMPLE_ID_KEY
from keras_sb.data.example_ids import NUM_EXAMPLES_ATTRIBUTE
from keras_sb.data.example_ids import PADDING_ID
from keras_sb.data.stale_filtering import STALE_FILTER_ATTRIBUTE
from keras_sb.data.stale_filtering import StaleFilter
from keras_sb.selection import is_integer


def stale_draws_and_seed(stale_model, seed):
    """The `StaleFilter` of `stale_model` (None without one) and the int
    seed of a pipeline's orders and augmentation, from `seed` (None:
    random)."""
    draws = None
    if stale_model is not None:
        # With no seed, the draws follow the model's saved seed (a resumed
        # run draws as an uninterrupted one).
        draws = StaleFilter(stale_model, seed)
    return draws, int(np.random.default_rng(seed).integers(2**31))


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
    offsets, flip = crop_flip_draws(rng, n, padding)
    crops = windows[np.arange(n), offsets[0], offsets[1]]
    crops[flip] = crops[flip, :, :, ::-1]
    return crops.transpose(0, 2, 3, 1)


def crop_flip_draws(rng, n, padding):
    """The random part of `pad_crop_flip_batch` for `n` images.

    Returns:
        Tuple `(offsets, flip)`: int64 `(2, n)` crop offsets (rows, then
        columns) in `[0, 2 * padding]`, and a bool `(n,)` mask of the
        images to flip left-right.
    """
    offsets = rng.integers(0, 2 * padding + 1, (2, n))
    flip = rng.random(n) < 0.5
    return offsets, flip


def check_image_arrays(images, labels, padding, seed, what):
    """`(images, labels)` as NumPy arrays, or a ValueError that says what is
    wrong with them, `padding` or `seed` (the arguments of `what`)."""
    images, labels = np.asarray(images), np.asarray(labels)
    if images.ndim != 4 or labels.ndim < 1 or len(images) != len(labels):
        raise ValueError(
            "`images` must be an array `(n, height, width, channels)` and "
            "`labels` an array of `n` labels. Received: images of shape "
            f"{images.shape} and labels of shape {labels.shape}."
        )
    check_uint8_images(images.dtype.name, what)
    if not is_integer(padding) or padding < 0:
        raise ValueError(
            f"`padding` must be an int >= 0. Received: padding={padding!r}"
        )
    if seed is not None and not is_integer(seed):
        raise ValueError(f"`seed` must be None or an int. Received: seed={seed!r}")
    return images, labels


class RowBatches(keras.utils.PyDataset):
    """Batches of the rows of in-memory examples, for `fit` (a base class).

    Each epoch goes over the rows `0 ... num_examples - 1` once, in a new
    random order (a permutation drawn from `(seed, epoch)`) or in order;
    in a stale epoch of a `StaleFilter`'s model, only over the rows it
    keeps, and the last batch is filled up to `batch_size` with zeros of
    id `PADDING_ID` (static shapes for XLA), which the model does not train
    on. Subclasses make the batch of given rows (`_batch`).

    The stale filter and, with ids, the number of examples are also set
    under the attributes that `find_stale_filter` and `count_examples` look
    for on `tf.data` datasets, so that `fit` finds them here as well.

    Args:
        num_examples: number of rows, `>= 1`.
        batch_size: examples per batch, `>= 1` (checked).
        shuffle: whether each epoch has its own order.
        seed: int seed of the orders.
        example_ids: whether batches are `{"data": batch, "example_id":
            int32 rows}` (implied by `stale_filter`).
        stale_filter: None, or the `StaleFilter` that draws the rows of
            stale epochs.
        workers: threads preparing batches ahead of the step.
        max_queue_size: batches prepared ahead.
    """

    def __init__(self, num_examples, batch_size, shuffle, seed,
                 example_ids=False, stale_filter=None, workers=1,
                 max_queue_size=10):
        super().__init__(workers=workers, use_multiprocessing=False,
                         max_queue_size=max_queue_size)
        self.batch_size = check_batch_size(batch_size)
        self.shuffle = shuffle
        self.example_ids = bool(example_ids) or stale_filter is not None
        self.stale_filter = stale_filter
        self._num_examples = int(num_examples)
        self._seed = int(seed)
        self._epoch = 0
        self._order = self._new_order()
        # The rows of the epoch (stale epochs: the kept ones), and the
        # (draws, epoch) they were taken for; the worker threads share them.
        self._rows_lock = threading.Lock()
        self._rows_key = None
        self._rows = self._order
        setattr(self, STALE_FILTER_ATTRIBUTE, stale_filter)
        setattr(self, NUM_EXAMPLES_ATTRIBUTE,
                self._num_examples if self.example_ids else None)

    def _new_order(self):
        if not self.shuffle:
            return np.arange(self._num_examples)
        return np.random.default_rng([self._seed, self._epoch]).permutation(
            self._num_examples)

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

    def _batch(self, rows, index):
        """The batch of the examples `rows` (an int array), the `index`-th
        of the epoch: a structure of arrays of `len(rows)` rows."""
        raise NotImplementedError

    def _batch_rng(self, index):
        """The generator of the `index`-th batch's random augmentation:
        it depends only on `(seed, epoch, index)`."""
        return np.random.default_rng([self._seed, self._epoch, index])

    def __len__(self):
        return -(-len(self._epoch_rows()) // self.batch_size)

    def _batch_rows(self, index):
        """The rows of the `index`-th batch of the epoch, and how many rows
        of id `PADDING_ID` fill it up (stale epochs' last batch)."""
        if not 0 <= index < len(self):
            raise IndexError(f"Batch {index} of {len(self)}.")
        rows = self._epoch_rows()[index * self.batch_size:
                                  (index + 1) * self.batch_size]
        missing = 0
        if self.stale_filter is not None and self.stale_filter.stale:
            missing = self.batch_size - len(rows)
        return rows, missing

    def __getitem__(self, index):
        rows, missing = self._batch_rows(index)
        batch = self._batch(rows, index)
        ids = rows.astype("int32")
        if missing:
            # A full last batch (static shapes): rows the model skips.
            batch = keras.tree.map_structure(
                lambda part: np.concatenate(
                    [part, np.zeros((missing,) + part.shape[1:], part.dtype)]),
                batch)
            ids = np.append(ids, np.full(missing, PADDING_ID, "int32"))
        if self.example_ids:
            return {DATA_KEY: batch, EXAMPLE_ID_KEY: ids}
        return batch

    def on_epoch_end(self):
        self._epoch += 1
        self._order = self._new_order()


class ArrayPipeline(RowBatches):
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
        batch_size = check_batch_size(batch_size)
        images, labels = check_image_arrays(images, labels, padding, seed,
                                            type(self).__name__)
        draws, seed = stale_draws_and_seed(stale_model, seed)
        super().__init__(len(images), batch_size, shuffle, seed,
                         example_ids=example_ids, stale_filter=draws,
                         workers=workers, max_queue_size=2 * workers)
        self.images = images
        self.labels = labels
        self.augment = augment
        self.padding = padding

    def _batch(self, rows, index):
        images = self.images[rows]
        if self.augment:
            images = pad_crop_flip_batch(images, self._batch_rng(index),
                                         self.padding)
        return (np.multiply(images, np.float32(1 / 255), dtype="float32"),
                self.labels[rows])
