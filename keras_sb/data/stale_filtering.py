"""Stale epochs' keep/skip draws, made in the input pipeline.

`stale_filter(model)` makes a `StaleFilter`: applied to unbatched elements
with example ids, it skips, in each stale epoch of `model`, the examples
that epoch does not draw, before they are augmented and batched.
"""

import weakref

import numpy as np

from keras_sb.data._checks import check_batch_size
from keras_sb.data._tensorflow import require_tensorflow
from keras_sb.data.example_ids import DATA_KEY
from keras_sb.data.example_ids import EXAMPLE_ID_KEY
from keras_sb.data.example_ids import PADDING_ID
from keras_sb.data.example_ids import has_example_ids

# Set by a `StaleFilter` on the datasets it filters; `find_stale_filter`
# finds it from the datasets made from those.
STALE_FILTER_ATTRIBUTE = "_keras_sb_stale_filter"
# Elements per vectorized draw of `StaleFilter`.
_FILTER_CHUNK = 256


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
        # None: the model's saved `draw_seed`, so that a run resumed from a
        # checkpoint draws as an uninterrupted one would.
        self.seed = None if seed is None else int(seed)
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
            draws = np.random.default_rng([self.draw_seed(), int(epoch)]).random(
                len(probabilities))
            kept = draws < probabilities
        self.stale = bool(stale)
        self._kept_numpy = np.append(kept, True)
        self.version += 1
        if self._tf_state is not None:
            self._tf_state[0].assign(self.stale)
            self._tf_state[1].assign(self._kept_numpy)

    def draw_seed(self):
        """The seed of the draws: the filter's, else the model's."""
        if self.seed is not None:
            return self.seed
        model = self.model
        if model is None:
            raise ValueError("The model of this stale filter was deleted.")
        return int(model.selection_state.draw_seed.numpy())

    def kept_count(self):
        """Examples kept in this epoch of draws (None in other epochs)."""
        if not self.stale:
            return None
        return int(self._kept_numpy[:-1].sum())

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
        check_batch_size(batch_size)
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
        setattr(filtered, STALE_FILTER_ATTRIBUTE, self)
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
        seed: int seed of the draws (None: the model's, which is saved
            with it, so a resumed run draws as an uninterrupted one).

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
