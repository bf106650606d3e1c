"""Training and evaluation batches made on the accelerator from images kept
there.

`DevicePipeline` is `ArrayPipeline` with the images and labels copied to
the device once: each batch is gathered, cropped, flipped and scaled by one
compiled function on the device (`gather_batch`), so no image crosses from
the host during training and the host does no per-image work. What the
host still does, once per epoch, is draw the order of the rows (and, in
stale epochs, the rows a `StaleFilter` keeps) and the crop offsets and
flips, with the same generators as `ArrayPipeline`: for the same arguments
both pipelines give the same batches.
"""

import functools

import numpy as np
from keras import ops

from keras_sb import backend
from keras_sb.data._checks import check_batch_size
from keras_sb.data.array_pipeline import RowBatches
from keras_sb.data.array_pipeline import check_image_arrays
from keras_sb.data.array_pipeline import crop_flip_draws
from keras_sb.data.array_pipeline import stale_draws_and_seed
from keras_sb.data.example_ids import DATA_KEY
from keras_sb.data.example_ids import EXAMPLE_ID_KEY
from keras_sb.data.example_ids import PADDING_ID


def crop_flip(images, offsets, flip, padding):
    """`pad_crop_flip_batch` with given draws, in `keras.ops`.

    Args:
        images: `(n, height, width, channels)` tensor.
        offsets: int `(2, n)` crop offsets in the zero-padded images (rows,
            then columns), in `[0, 2 * padding]`.
        flip: bool `(n,)`, the images to flip left-right.
        padding: int, zeros added on each side before cropping.

    Returns:
        The `(n, height, width, channels)` crops, of the dtype of `images`.
    """
    n, height, width, channels = images.shape
    padded = ops.pad(images, ((0, 0), (padding, padding), (padding, padding),
                              (0, 0)))
    padded_height, padded_width = height + 2 * padding, width + 2 * padding
    columns = ops.arange(width, dtype="int32")
    columns = ops.where(flip[:, None], width - 1 - columns, columns)
    y = ops.cast(offsets[0], "int32")[:, None, None] + ops.arange(
        height, dtype="int32")[None, :, None]
    x = ops.cast(offsets[1], "int32")[:, None, None] + columns[:, None, :]
    image = ops.arange(n, dtype="int32")[:, None, None]
    # One gather of pixels from the flattened padded batch.
    pixels = (image * padded_height + y) * padded_width + x
    flat = ops.reshape(padded, (n * padded_height * padded_width, channels))
    crops = ops.take(flat, ops.reshape(pixels, (-1,)), axis=0)
    return ops.reshape(crops, (n, height, width, channels))


def gather_batch(images, labels, rows, offsets, flip, start, size, padding,
                 augment):
    """The batch of rows `rows[start:start + size]`: images gathered,
    cropped and flipped (`augment`), scaled to float32 in `[0, 1]`.

    Rows of id `PADDING_ID` give zero images and labels (as
    `ArrayPipeline` fills stale epochs' last batch).

    Returns:
        Tuple `(images, labels, ids)`: the batch and its int32 row ids.
    """
    ids = ops.slice(rows, (start,), (size,))
    real = ops.not_equal(ids, PADDING_ID)
    safe = ops.where(real, ids, 0)
    x = ops.take(images, safe, axis=0)
    y = ops.take(labels, safe, axis=0)
    if augment:
        x = crop_flip(x, ops.slice(offsets, (0, start), (2, size)),
                      ops.slice(flip, (start,), (size,)), padding)
    x = ops.multiply(ops.cast(x, "float32"), np.float32(1 / 255))
    x = ops.where(ops.reshape(real, (-1, 1, 1, 1)), x, 0.0)
    y = ops.where(real, y, ops.zeros_like(y))
    return x, y, ids


class DevicePipeline(RowBatches):
    """Batches for `fit` made on the accelerator from images kept there.

    Takes the arguments of `ArrayPipeline` and gives the same batches
    (same order, crops and flips for the same `seed`), but copies the uint8
    images and the labels to the device once and makes each batch there
    with one compiled function: no per-batch host work on images and no
    per-batch copy to the device. Use it when the dataset fits in device
    memory (CIFAR-10 takes 150 MB) and the host would otherwise limit the
    step, as on a GPU. Each batch is a tuple of backend tensors on the
    device (with ids: `{"data": (images, labels), "example_id": ids}`).

    On JAX the batch function is compiled with `jax.jit`. On TensorFlow it
    runs eagerly and Keras's adapter for `PyDataset`s copies the batches
    through the host, so there `training_pipeline` (tf.data) is the faster
    choice.

    Args:
        images: uint8 array `(n, height, width, channels)`.
        labels: array `(n,)`.
        batch_size: examples per batch, `>= 1`; the last batch of an epoch
            may be smaller.
        augment: whether to apply the random crop and flip.
        shuffle: whether to shuffle each epoch.
        seed: int seed (None: random).
        padding: padding of the random crop.
        example_ids: whether batches carry example ids (the row numbers in
            `images`), as `keras_sb.StaleSelection` and pruning need.
        stale_model: optional `keras_sb.SelectiveBackpropModel` whose stale
            or pruned epochs draw their examples here (see `ArrayPipeline`).
            Implies `example_ids=True`.

    Example:

    ```python
    images, labels = keras_sb.datasets.load_arrays("cifar10", "train", path)
    train = keras_sb.data.DevicePipeline(images, labels, 256, seed=0,
                                         stale_model=model)
    model.fit(train, epochs=30, callbacks=[keras_sb.InfoBatch()])
    ```
    """

    def __init__(self, images, labels, batch_size, augment=True, shuffle=True,
                 seed=None, padding=4, example_ids=False, stale_model=None):
        batch_size = check_batch_size(batch_size)
        images, labels = check_image_arrays(images, labels, padding, seed,
                                            type(self).__name__)
        draws, seed = stale_draws_and_seed(stale_model, seed)
        # One worker: the batch function only dispatches work to the device,
        # so threads would add nothing but hand-offs.
        super().__init__(len(images), batch_size, shuffle, seed,
                         example_ids=example_ids, stale_filter=draws,
                         workers=1)
        self.augment = augment
        self.padding = padding
        self.images = ops.convert_to_tensor(images)
        self.labels = ops.convert_to_tensor(labels)
        self._gather = backend.compile_function(
            functools.partial(gather_batch, padding=padding, augment=augment),
            static_argnames=("size",))
        self._plan_key = None
        self._plan = None

    def _epoch_plan(self):
        """The epoch's rows (padded with `PADDING_ID` to full batches in
        stale epochs), crop offsets and flips, on the device; made once per
        epoch and stale-filter version."""
        rows = self._epoch_rows()
        key = (self._rows_key, self._epoch, len(rows))
        if key == self._plan_key:
            return self._plan
        ids, offsets, flip = [np.zeros(0, "int32")], [np.zeros((2, 0))], [
            np.zeros(0, bool)]
        for index in range(len(self)):
            batch_rows, missing = self._batch_rows(index)
            ids += [batch_rows, np.full(missing, PADDING_ID)]
            if self.augment:
                # The draws `ArrayPipeline` makes for the batch; none for
                # the padding rows.
                draws = crop_flip_draws(self._batch_rng(index),
                                        len(batch_rows), self.padding)
                offsets += [draws[0], np.zeros((2, missing))]
                flip += [draws[1], np.zeros(missing, bool)]
        ids, flip = np.concatenate(ids), np.concatenate(flip)
        offsets = np.concatenate(offsets, axis=1)
        self._plan = tuple(ops.convert_to_tensor(part) for part in (
            ids.astype("int32"), offsets.astype("int32"), flip))
        self._plan_key = key
        return self._plan

    def __getitem__(self, index):
        rows, missing = self._batch_rows(index)
        x, y, ids = self._gather(self.images, self.labels, *self._epoch_plan(),
                                 np.int32(index * self.batch_size),
                                 size=len(rows) + missing)
        if self.example_ids:
            return {DATA_KEY: (x, y), EXAMPLE_ID_KEY: ids}
        return x, y
