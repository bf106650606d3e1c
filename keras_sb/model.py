"""`SelectiveBackpropModel`: a `keras.Model` that trains on its biggest losers.

Each training batch gets a cheap inference-mode forward pass; each example is
selected with a probability that grows with its loss (see
`keras_sb.strategies`); selected examples wait in a queue until a full
backprop batch is ready, and only then does a training forward, backward pass
and optimizer step run. Skipped examples cost one inference forward pass.
Everything happens inside one compiled `train_step`, so `fit`, callbacks,
XLA, mixed precision and saving keep working as in plain Keras.
"""

import functools
import sys
import types
import warnings
import weakref

import keras
from keras import ops
from keras.src.losses.loss import unscale_loss_for_distribution
from keras.src.models.functional import Functional

from keras_sb import backend
from keras_sb import data as data_utils
from keras_sb import queue as queue_ops
from keras_sb import schedule
from keras_sb import scoring
from keras_sb import selection
from keras_sb import stale
from keras_sb import strategies
from keras_sb.state import SelectionState
from keras_sb.state import example_signature

_UNSET = object()
# The constructor options that `get_config` saves besides Keras's.
_SELECTION_OPTIONS = ("strategy", "history_size", "backprop_batch_size",
                      "start", "end", "seed")
# The options of the default strategy, which `strategy` replaces.
_PAPER_OPTIONS = ("beta", "min_probability", "target_fraction")


def _is_functional_call(args, kwargs):
    """Whether constructor arguments describe a functional model."""
    return (
        len(args) == 2
        or (len(args) == 1 and "outputs" in kwargs)
        or ("inputs" in kwargs and "outputs" in kwargs)
    )


def _present_leaves(structure):
    return [leaf for leaf in keras.tree.flatten(structure) if leaf is not None]


def _fill_leaves(structure, leaves):
    """Inverse of `_present_leaves`: puts `leaves` back where `structure` has
    non-None leaves."""
    leaves = iter(leaves)
    flat = [None if leaf is None else next(leaves)
            for leaf in keras.tree.flatten(structure)]
    return keras.tree.pack_sequence_as(structure, flat)


def _apply_importance_weights(sample_weight, weights):
    def scale(w):
        w = ops.cast(w, weights.dtype)
        return w * ops.reshape(weights, (-1,) + (1,) * (len(w.shape) - 1))

    if sample_weight is None:
        return weights
    return keras.tree.map_structure(scale, sample_weight)


@keras.saving.register_keras_serializable(package="keras_sb")
class SelectiveBackpropModel(keras.Model):
    """A Keras model trained with Selective-Backprop.

    Use it like `keras.Model`: from inputs and outputs (functional API), as
    the base class of a subclassed model with its own `call`, or convert an
    existing model with `SelectiveBackpropModel.from_model(model)`. Then
    `compile` and `fit` as usual. Only `fit` (and `train_on_batch`) change:
    every example of a batch is scored by an inference-mode forward pass, and
    only the selected ones are trained on, in full backprop batches. `evaluate`
    and `predict` are those of `keras.Model`.

    What `fit` reports:
    - `loss` and the compiled metrics are computed over all examples of each
      batch, from the inference-mode scoring pass (before the update);
    - `selected_fraction`: fraction of the examples scored this epoch that
      were selected;
    - `backprops`: examples backpropagated so far, over the model's life.

    `model.optimizer.iterations`, and so any learning-rate schedule, counts
    backward steps, not scored batches (as in the paper): an epoch with 25%
    selected takes about a quarter of the optimizer steps of plain training.

    The selection state (loss history, pending queue, random seed, counters)
    lives in non-trainable variables of `model.selection_state` and is saved
    with the model. Selected examples that are still queued at the end of
    `fit` stay queued and are trained on in the next `fit`.

    Built under a `tf.distribute` strategy's scope, each replica scores its
    share of the global batch against one global loss history, queues its
    own selected examples, and all replicas take each backward step
    together (see `keras_sb.queue.drain_synchronized`). Under a JAX
    `keras.distribution.DataParallel`, the global batch is scored together.

    With the `keras_sb.StaleSelection` callback and training data that carry
    example ids (`keras_sb.data.with_example_ids`), scores are stored per
    example and reused: only one epoch in `staleness` runs the selection
    forward pass (see `keras_sb.stale`).

    Args:
        beta: selectivity of the paper's rule (`BiggestLosers`), `>= 0`;
            the expected selected fraction is `1 / (beta + 1)`. Defaults to 3
            (the authors' released code).
        min_probability: floor of the selection probability, in `[0, 1]`.
        target_fraction: instead of `beta`, the fraction of examples to
            backpropagate on average, in `(min_probability, 1]`.
        strategy: a `keras_sb.strategies.SelectionStrategy` instead of the
            paper's rule, e.g. `UniformSubset` or `LossProportional`. Not
            combinable with `beta`, `min_probability` or `target_fraction`.
        history_size: number of recent losses that percentiles are taken
            over (1024 in the paper), at least the batch size of `fit`.
        backprop_batch_size: examples per backward step. Defaults to the
            batch size of the first `fit` (its `batch_size` argument, or the
            batch size of the dataset).
        start: when selection starts; before it, every example is trained on.
            An int (steps, i.e. training batches over the model's life), a
            string like `"1ep"` (epochs over the model's life), or a float in
            `[0, 1]` (fraction of the current `fit`'s `epochs`, which Keras
            counts from 0, also with `initial_epoch`). Defaults
            to `"1ep"`: one epoch of priming on all examples, as in the paper.
            Use 0 to select from the first batch.
        end: when selection stops again (same units), or None (never).
        seed: int seed of the random selection, for reproducible runs.
        **kwargs: passed to `keras.Model` (`inputs`, `outputs`, `name`, ...).

    Example:

    ```python
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(32, 3, activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(10, activation="softmax")(x)
    model = keras_sb.SelectiveBackpropModel(inputs, outputs, beta=2.0)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(x_train, y_train, batch_size=128, epochs=10)
    ```
    """

    def __new__(cls, *args, **kwargs):
        if _is_functional_call(args, kwargs) and not issubclass(cls, Functional):
            if cls is not SelectiveBackpropModel:
                raise TypeError(
                    f"{cls.__name__} subclasses SelectiveBackpropModel and was "
                    "given `inputs` and `outputs`. To build a subclass from "
                    "inputs and outputs, subclass "
                    "`keras_sb.FunctionalSelectiveBackpropModel` instead."
                )
            cls = FunctionalSelectiveBackpropModel
        return super().__new__(cls, *args, **kwargs)

    def __init__(
        self,
        *args,
        beta=None,
        min_probability=None,
        target_fraction=None,
        strategy=None,
        history_size=1024,
        backprop_batch_size=None,
        start="1ep",
        end=None,
        seed=None,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        paper_options = {"beta": beta, "min_probability": min_probability,
                         "target_fraction": target_fraction}
        if strategy is not None:
            given = {k: v for k, v in paper_options.items() if v is not None}
            if given:
                raise ValueError(
                    "Pass either `strategy` or the options of the default "
                    f"strategy ({', '.join(paper_options)}), not both. "
                    f"Received: strategy={strategy!r}, "
                    + ", ".join(f"{k}={v!r}" for k, v in given.items())
                )
            self.strategy = strategies.get(strategy)
        else:
            self.strategy = strategies.BiggestLosers(
                beta=beta,
                min_probability=0.0 if min_probability is None else min_probability,
                target_fraction=target_fraction,
            )
        if not selection.is_integer(history_size) or history_size < 1:
            raise ValueError(
                "`history_size` must be an int >= 1. "
                f"Received: history_size={history_size!r}"
            )
        if backprop_batch_size is not None and (
            not selection.is_integer(backprop_batch_size) or backprop_batch_size < 1
        ):
            raise ValueError(
                "`backprop_batch_size` must be None or an int >= 1. "
                f"Received: backprop_batch_size={backprop_batch_size!r}"
            )
        if seed is not None and not selection.is_integer(seed):
            raise ValueError(f"`seed` must be None or an int. Received: seed={seed!r}")
        self._start = schedule.parse_time("start", start)
        self._end = schedule.parse_time("end", end)
        schedule.check_window(self._start, self._end)
        self.history_size = int(history_size)
        self._backprop_batch_size = (None if backprop_batch_size is None
                                     else int(backprop_batch_size))
        self._seed = None if seed is None else int(seed)
        self._fit_batch_size = None
        self._scoring_batch_size = None
        self._fit_steps_per_epoch = None
        self._queue_from_next_build = False
        self._stale_epoch = False
        self._train_functions = {}
        # `fit`'s `class_weight` where the train step applies it.
        self._step_class_weight = None
        # Stale selection with `keras_sb.data.stale_filter` in the pipeline.
        self._stale_filter = None
        self._pipeline_draws = False
        self._wants_fit_iterator = False
        self._fit_epoch_iterator = None
        start_step, end_step = schedule.initial_thresholds(self._start, self._end)
        self.selection_state = SelectionState(
            self.history_size,
            selection_start=start_step,
            selection_end=end_step,
            seed=self._seed,
            name="selection_state",
        )

    # --- Configuration -----------------------------------------------------

    @property
    def backprop_batch_size(self):
        """Examples per backward step, over all replicas (None until known)."""
        rows = self.selection_state.queue_batch_rows
        if rows is not None:
            return rows * backend.num_replicas(self)
        return self._backprop_batch_size or self._fit_batch_size

    @property
    def start(self):
        return schedule.format_time(self._start)

    @property
    def end(self):
        return schedule.format_time(self._end)

    def _selection_config(self):
        """The options of `_SELECTION_OPTIONS`, as `get_config` saves them."""
        return {
            "strategy": keras.saving.serialize_keras_object(self.strategy),
            "history_size": self.history_size,
            "backprop_batch_size": self._backprop_batch_size,
            "start": self.start,
            "end": self.end,
            "seed": self._seed,
        }

    def get_config(self):
        config = super().get_config()
        config.update(self._selection_config())
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        # A subclass of one's own either fixes its selection options in
        # `__init__` (as in the README) or takes them as arguments. It is
        # rebuilt without them; if that does not give the saved options,
        # they were arguments, and it is rebuilt with them.
        options = {name: config[name] for name in _SELECTION_OPTIONS
                   if name in config}
        if not options or issubclass(cls, (FunctionalSelectiveBackpropModel,
                                           WrappedModel)):
            return super().from_config(config, custom_objects)
        rest = {name: value for name, value in config.items()
                if name not in options}
        model = super().from_config(rest, custom_objects)
        if model._selection_config() == options:
            return model
        return super().from_config(config, custom_objects)

    @classmethod
    def from_model(cls, model, **options):
        """Converts an existing Keras model into a `SelectiveBackpropModel`.

        A functional or built `Sequential` model (including
        `keras.applications` models) becomes a functional
        `SelectiveBackpropModel` over the same layers; any other model
        (subclassed, or a `Sequential` without an input shape) is wrapped.
        Either way the layers, and so the weights, are shared with `model`,
        not copied.

        Args:
            model: a `keras.Model`.
            **options: the selection options of `SelectiveBackpropModel`
                (`beta`, `strategy`, `history_size`, ...).

        Returns:
            A new, uncompiled `SelectiveBackpropModel`.

        Example:

        ```python
        base = keras.applications.ResNet50(weights=None, classes=10)
        model = keras_sb.SelectiveBackpropModel.from_model(base, beta=2.0)
        ```
        """
        if isinstance(model, SelectiveBackpropModel):
            raise ValueError(
                f"The model {model.name!r} is a SelectiveBackpropModel already."
            )
        if not isinstance(model, keras.Model):
            raise ValueError(
                f"`model` must be a keras.Model. Received: model={model!r}"
            )
        # A `name` among the options names the new model.
        if isinstance(model, Functional):
            return FunctionalSelectiveBackpropModel(
                inputs=model.input, outputs=model.output,
                **{"name": model.name, **options},
            )
        if isinstance(model, keras.Sequential) and model.built and model.inputs:
            return FunctionalSelectiveBackpropModel(
                inputs=model.inputs[0], outputs=model.outputs[0],
                **{"name": model.name, **options},
            )
        return WrappedModel(model, **options)

    # --- Training ----------------------------------------------------------

    def fit(
        self,
        x=None,
        y=None,
        batch_size=None,
        epochs=1,
        verbose="auto",
        callbacks=None,
        validation_split=0.0,
        validation_data=None,
        shuffle=True,
        class_weight=None,
        sample_weight=None,
        initial_epoch=0,
        steps_per_epoch=None,
        validation_steps=None,
        validation_batch_size=None,
        validation_freq=1,
    ):
        if isinstance(x, types.GeneratorType) and batch_size is None:
            # Its first batch tells the batch size; Keras reads it again.
            self._scoring_batch_size, x = data_utils.peek_generator(x)
        else:
            self._scoring_batch_size = data_utils.batch_size_of(x, batch_size)
        if (self._scoring_batch_size is not None
                and self._scoring_batch_size > self.history_size):
            # A batch's losses join the history before they are ranked
            # against it: the history must hold a whole batch.
            raise ValueError(
                f"`history_size` must be at least the batch size "
                f"({self._scoring_batch_size}). Received: "
                f"history_size={self.history_size}"
            )
        if self.backprop_batch_size is None:
            self._fit_batch_size = self._scoring_batch_size
        window = SelectionWindow(self._start, self._end)
        if isinstance(callbacks, keras.callbacks.CallbackList):
            callbacks.callbacks.insert(0, window)
            window.set_model(self)
            given = callbacks.callbacks
        else:
            callbacks = [window] + list(callbacks or [])
            given = callbacks
        stale_callbacks = [c for c in given if isinstance(c, stale.StaleSelection)]
        if len(stale_callbacks) > 1:
            raise ValueError("Pass at most one StaleSelection callback to `fit`.")
        if stale_callbacks:
            if backend.num_replicas(self) > 1:
                raise ValueError(
                    "StaleSelection does not support training on several "
                    "replicas of a tf.distribute strategy yet. Train without "
                    "StaleSelection, or on one replica."
                )
            self._prepare_score_table(x, stale_callbacks[0])
        self._use_stale_filter(data_utils.find_stale_filter(x),
                               bool(stale_callbacks), steps_per_epoch)
        if (self._stale_filter is not None and verbose != 0
                and isinstance(callbacks, list)
                and not any(isinstance(c, keras.callbacks.ProgbarLogger)
                            for c in callbacks)):
            callbacks.append(_ProgbarOfVaryingEpochs())
        class_weight = self._use_class_weight(x, class_weight)
        self._fit_steps_per_epoch = steps_per_epoch
        self._queue_from_next_build = backend.STATELESS_STEP
        try:
            with warnings.catch_warnings():
                if self._stale_filter is not None:
                    # An epoch of filtered data ends when the data run out,
                    # which Keras reports as a warning at every epoch.
                    warnings.filterwarnings(
                        "ignore", message="Your input ran out of data"
                    )
                counters = self.selection_state.counters()
                history = super().fit(
                    x=x,
                    y=y,
                    batch_size=batch_size,
                    epochs=epochs,
                    verbose=verbose,
                    callbacks=callbacks,
                    validation_split=validation_split,
                    validation_data=validation_data,
                    shuffle=shuffle,
                    class_weight=class_weight,
                    sample_weight=sample_weight,
                    initial_epoch=initial_epoch,
                    steps_per_epoch=steps_per_epoch,
                    validation_steps=validation_steps,
                    validation_batch_size=validation_batch_size,
                    validation_freq=validation_freq,
                )
            self._warn_if_nothing_trained(counters)
            return history
        finally:
            self._queue_from_next_build = False
            self._fit_steps_per_epoch = None
            self._set_stale_epoch(False)
            self._stale_filter = None
            self._fit_epoch_iterator = None
            self._wants_fit_iterator = False

    def _warn_if_nothing_trained(self, counters_before):
        """Warns when a `fit` selected examples but never filled a backprop
        batch (its weights did not change)."""
        counters = self.selection_state.counters()
        selected = counters["selected_total"] - counters_before["selected_total"]
        if selected and counters["backprops"] == counters_before["backprops"]:
            warnings.warn(
                f"This `fit` selected {selected} examples but ran no backward "
                f"step: {counters['queue_size']} examples wait in the queue "
                f"for a full backprop batch of {self.backprop_batch_size}. "
                "The weights did not change. Train for more steps, or pass a "
                "smaller `backprop_batch_size=` to SelectiveBackpropModel.",
                stacklevel=3,
            )

    def _use_stale_filter(self, stale_filter, stale_selection, steps_per_epoch):
        """Checks a `stale_filter` found in the training data, and sets up
        `fit` for it."""
        if stale_filter is not None and stale_filter.model is not self:
            raise ValueError(
                "The training data pass through a `keras_sb.data.stale_filter` "
                "made for another model. Make the filter with the model that "
                "trains on the data: `keras_sb.data.stale_filter(model)`."
            )
        if not stale_selection:
            stale_filter = None  # No stale epochs: it passes every example.
        if stale_filter is not None and steps_per_epoch:
            # Keras would keep one iterator across epochs: batches drawn for
            # one epoch (and padded) would reach the next.
            raise ValueError(
                "With `keras_sb.data.stale_filter` in the training data, each "
                "epoch is one pass over the data, as long as the filter lets "
                "it be: do not repeat the data, and leave `steps_per_epoch` "
                f"out. Received: steps_per_epoch={steps_per_epoch!r}"
            )
        pipeline_draws = stale_filter is not None
        if pipeline_draws != self._pipeline_draws:
            self._pipeline_draws = pipeline_draws
            self.train_function = None  # The stale step differs.
        self._stale_filter = stale_filter
        # Epochs of filtered data differ in length: the epoch iterator of
        # `fit` must not hold them to the first one's.
        self._wants_fit_iterator = pipeline_draws

    def _use_class_weight(self, x, class_weight):
        """`fit`'s `class_weight` for Keras's data adapter, which cannot apply
        it to batches with example ids: for those the train step turns it into
        sample weights (see `_batch_class_weights`)."""
        in_step = None
        if class_weight and data_utils.has_example_ids(
                data_utils.peek_structure(x)):
            in_step, class_weight = dict(class_weight), None
        if in_step != self._step_class_weight:
            self._step_class_weight = in_step
            self.train_function = None  # The step applies other weights.
        return class_weight

    def _batch_class_weights(self, y, sample_weight, has_ids):
        """Sample weights of a batch with ids from `fit`'s `class_weight`."""
        if not has_ids or self._step_class_weight is None:
            return sample_weight
        if sample_weight is not None:
            raise ValueError(
                "You cannot use `class_weight` and `sample_weight` at the same "
                "time."
            )
        return data_utils.class_weight_to_sample_weights(
            y, self._step_class_weight)

    def _remember_fit_iterator(self, iterator):
        if self._wants_fit_iterator and iterator is not None:
            self._fit_epoch_iterator = iterator
        self._wants_fit_iterator = False

    def _begin_epoch_draws(self, stale_epoch, epoch):
        """Starts the epoch `epoch` (over the model's life) of stale
        selection (called by `StaleSelection`)."""
        if self._stale_filter is not None:
            probabilities = None
            if stale_epoch:
                probabilities = ops.convert_to_numpy(
                    self.selection_state.score_table[1].value
                )
            self._stale_filter.begin_epoch(stale_epoch, epoch, probabilities)
            if self._fit_epoch_iterator is not None:
                # Keras fixes an epoch's length after the first epoch of data
                # of unknown length; each epoch of filtered data runs until
                # the data run out (a private attribute of Keras 3.15's
                # `EpochIterator`).
                self._fit_epoch_iterator._num_batches = None
        self._set_stale_epoch(stale_epoch)

    def _prepare_score_table(self, x, callback):
        """Checks data for stale selection and creates the score table."""
        structure = data_utils.peek_structure(x)
        if structure is not None and not data_utils.has_example_ids(structure):
            raise ValueError(
                "StaleSelection needs training data whose examples carry "
                "stable ids: a dataset made with "
                "`keras_sb.data.with_example_ids` (before shuffling and "
                "augmenting), `keras_sb.data.training_pipeline(..., "
                "example_ids=True)` or `ArrayPipeline(..., example_ids=True)`"
                ". The training batches have no `example_id`."
            )
        counted = data_utils.count_examples(x)
        num_examples = callback.num_examples or counted
        if callback.num_examples and counted and callback.num_examples != counted:
            raise ValueError(
                f"StaleSelection was given num_examples={callback.num_examples}"
                f", but the training data have {counted} examples."
            )
        state = self.selection_state
        if state.score_table is not None:
            if num_examples and num_examples != state.score_table_size:
                raise ValueError(
                    f"The model's score table has {state.score_table_size} "
                    f"rows, but the training data have {num_examples} "
                    "examples. Stale selection stores one score per example "
                    "of one training set; train on the data the table was "
                    "made for."
                )
            return
        if num_examples is None:
            raise ValueError(
                "Could not tell how many examples the training data have. "
                "Pass `num_examples=` to StaleSelection."
            )
        state.build_score_table(int(num_examples))
        self.train_function = None  # Its state has new variables.

    def _set_stale_epoch(self, stale_epoch):
        """Switches between the fresh and the stale train step."""
        if stale_epoch == self._stale_epoch:
            return
        self._stale_epoch = stale_epoch
        if backend.STATELESS_STEP and self.train_function is not None:
            self.make_train_function()

    def _uses_example_ids(self, example_ids):
        return example_ids is not None and self.selection_state.score_table is not None

    def test_step(self, *args):
        # Evaluation needs no example ids: drop them where data carry them.
        *state, data = args
        data, _ = data_utils.split_example_ids(data)
        return super().test_step(*state, data)

    def predict_step(self, *args):
        *state, data = args
        data, _ = data_utils.split_example_ids(data)
        return super().predict_step(*state, data)

    def reset_queue(self):
        """Discards the selected examples waiting for a backward step.

        They stay queued from one `fit` to the next (and in saved models);
        discard them when they should not be trained on, e.g. after
        `TerminateOnNaN` stopped a `fit` on bad data.

        Returns:
            The number of examples discarded.

        Example:

        ```python
        model.set_weights(good_weights)  # Undo the NaN step.
        model.reset_queue()  # The bad examples were queued too.
        model.fit(clean_data)
        ```
        """
        return self.selection_state.clear_queue()

    def reset_metrics(self):
        super().reset_metrics()
        self.selection_state.reset_epoch()

    def make_train_function(self, force=False):
        # One compiled step per kind of epoch: fresh (selection forward pass)
        # and stale (stored scores), made on first use and kept.
        if backend.STATELESS_STEP:
            # The queue was made by `_symbolic_build`, before `fit` gathered
            # the training state.
            if force or self.train_function is None:
                self._train_functions = {}
            if self._stale_epoch not in self._train_functions:
                # Keras jits `self.train_step`; bound methods compare equal,
                # so JAX would reuse the other kind's trace. A new function
                # object gets its own.
                self.train_step = functools.partial(type(self).train_step, self)
                try:
                    super().make_train_function(force=True)
                finally:
                    del self.train_step
                self._train_functions[self._stale_epoch] = self.train_function
            self.train_function = self._train_functions[self._stale_epoch]
            return self.train_function
        if self.train_function is not None and not force:
            return self.train_function
        compiled = {}
        # A weak reference: holding on to the previous epoch's iterator
        # would delay its deletion into the first step of the next epoch,
        # which costs seconds with large in-memory datasets.
        last_iterator = lambda: None  # noqa: E731

        def train_function(iterator):
            # The queue's buffers take their shapes from the data, so they
            # are (re)created here, eagerly, before the compiled step runs.
            nonlocal compiled, last_iterator
            if iterator is not last_iterator():
                last_iterator = weakref.ref(iterator)
                iterator, structure = backend.peek_batch_structure(iterator)
                if self._prepare_queue(structure):
                    compiled = {}
                metrics = self._compile_metrics
                if self._stale_epoch and metrics is not None and not metrics.built:
                    # A stale step has no forward pass over the batch to
                    # build the metrics (and to name the logs) with.
                    self._symbolic_build(data_batch=structure)
            if self._stale_epoch not in compiled:
                super(SelectiveBackpropModel, self).make_train_function(
                    force=True
                )
                compiled[self._stale_epoch] = self.train_function
                self.train_function = train_function
            return compiled[self._stale_epoch](iterator)

        self.train_function = train_function
        return train_function

    def _symbolic_build(self, iterator=None, data_batch=None):
        # On JAX, `fit` and `train_on_batch` call this before they gather the
        # training state, which must include the queue's variables.
        self._remember_fit_iterator(iterator)
        make_queue = self._queue_from_next_build
        self._queue_from_next_build = False
        parts = [self._compile_metrics, self._compile_loss, *self._flatten_layers()]
        if not make_queue and all(part is None or part.built for part in parts):
            # Nothing needs a batch of data (as in `Trainer._symbolic_build`).
            return super()._symbolic_build(data_batch=())
        if data_batch is None:
            data_batch = _first_batch(iterator)
        data, _ = data_utils.split_example_ids(data_batch)
        super()._symbolic_build(data_batch=data)
        # The queue only for `fit` and `train_on_batch` on JAX.
        if make_queue and self._prepare_queue(data_batch):
            self.train_function = None  # Its state has new variables.

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # TensorFlow trainer under a strategy: Keras averages the first
        # distributed batch over the replicas (`strategy.reduce`), which
        # fails under MultiWorkerMirroredStrategy (Keras 3.15) and turns
        # integer labels into floats. One replica's batch has the shapes and
        # dtypes the build needs.
        self._remember_fit_iterator(iterator)
        if iterator is not None and self._distribute_strategy is not None:
            for _, _, batches in iterator:
                data_batch = backend.local_batch(self.distribute_strategy,
                                                 next(batches))
                break
            iterator = None
        return super()._maybe_symbolic_build(iterator=iterator,
                                             data_batch=data_batch)

    def train_on_batch(self, *args, **kwargs):
        self._queue_from_next_build = backend.STATELESS_STEP
        try:
            return super().train_on_batch(*args, **kwargs)
        finally:
            self._queue_from_next_build = False

    def _queue_signature(self, x, y, sample_weight, example_ids=None):
        signature = [
            example_signature(leaf)
            for leaf in _present_leaves((x, y, sample_weight))
        ]
        if self._reweights():
            signature.append(((), "float32"))
        if self._uses_example_ids(example_ids):
            signature.append(((), "int32"))
        return signature

    def _check_queue_signature(self, x, y, sample_weight, example_ids):
        signature = self._queue_signature(x, y, sample_weight, example_ids)
        expected = self.selection_state.queue_signature
        if signature != expected:
            raise ValueError(
                "The training batches changed their per-example shapes or "
                "dtypes: the queue of selected examples holds "
                f"{expected}, this batch has {signature}. "
                "SelectiveBackpropModel queues selected examples in "
                "fixed-size buffers, so every input, target and sample weight "
                "needs the same shape apart from the batch dimension in all "
                "batches. Pad variable-length data to a fixed length."
            )

    def _reweights(self):
        return bool(self.strategy.reweights)

    def _prepare_queue(self, structure):
        """Creates the queue for data of this structure; True if it did."""
        data, example_ids = data_utils.split_example_ids(structure)
        if example_ids is not None and len(example_ids.shape) != 1:
            raise ValueError(
                "A training batch must carry one example id per example, but "
                f"its ids have shape {tuple(example_ids.shape)}. Call "
                "`keras_sb.data.with_example_ids` on the dataset of single "
                "examples, before batching."
            )
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        if example_ids is not None and self._step_class_weight is not None:
            # The column of the weights the step makes (`structure` may be
            # specs, which the step's ops cannot take).
            sample_weight = keras.KerasTensor((None,), "float32")
        signature = self._queue_signature(x, y, sample_weight, example_ids)
        state = self.selection_state
        replicas = backend.num_replicas(self)
        batch_size = self.backprop_batch_size
        if batch_size is None:
            # The batches here are those of one replica.
            local = _present_leaves(data)[0].shape[0]
            batch_size = None if local is None else local * replicas
        if batch_size is None:
            raise ValueError(
                "Could not tell the batch size of the training data, which is "
                "the default backprop batch size. Pass "
                "`backprop_batch_size=` to SelectiveBackpropModel."
            )
        if batch_size % replicas:
            raise ValueError(
                f"The backprop batch size ({batch_size}) must be a multiple "
                f"of the number of replicas ({replicas}): each replica trains "
                "on an equal share of each backward step. Pass "
                "`backprop_batch_size=` to SelectiveBackpropModel."
            )
        rows = batch_size // replicas
        # With several replicas each queue has room for a second backward
        # batch, so a replica can go on selecting while the others catch up
        # (see `queue.drain_synchronized`).
        capacity = rows if replicas == 1 else 2 * rows
        layout = (signature, capacity, rows)
        current = (state.queue_signature, state.queue_capacity,
                   state.queue_batch_rows)
        if current == layout:
            return False
        with backend.variable_scope(self):
            state.build_queue(signature, capacity, batch_rows=rows)
        return True

    def _forward(self, x, training):
        if self._call_has_training_arg:
            return self(x, training=training)
        return self(x)

    def _selecting(self):
        """Whether selection is on at the current step (a bool tensor)."""
        state = self.selection_state
        step = state.scored_batches.value
        return ops.logical_and(
            step >= state.selection_start.value, step < state.selection_end.value
        )

    def _draw_selection(self, losses):
        """Updates the loss history; returns selected mask and probabilities."""
        state = self.selection_state
        replicas, replica_id = backend.replica_info()
        # Every replica ranks against the same history: that of the losses
        # of all replicas (the global batch).
        scored = losses if replicas == 1 else backend.all_gather(losses)
        history, position = selection.append_to_history(
            state.loss_history.value, state.history_position.value, scored
        )
        state.loss_history.assign(history)
        state.history_position.assign(position)
        finite = ops.isfinite(losses)
        probabilities = ops.cast(
            self.strategy.probabilities(ops.where(finite, losses, 0.0), history),
            "float32",
        )
        # Outside the window, and for examples whose loss is not finite (as
        # plain Keras would), every example is trained on.
        keep = ops.logical_or(ops.logical_not(self._selecting()),
                              ops.logical_not(finite))
        probabilities = ops.where(keep, 1.0, probabilities)
        selected = selection.bernoulli(
            probabilities, state.seed_generator, stream=replica_id,
            num_streams=replicas,
        )
        return selected, probabilities

    def _backward_if_full(self, is_full, queue, carry, structure, has_ids,
                          refresh):
        """Trains on a full queue; in stale epochs also refreshes the scores
        of the examples trained on (see `_refresh_scores`)."""

        def step(carry):
            x, y, sample_weight, trained_weight, example_ids = (
                self._queued_batch(queue, structure, has_ids)
            )
            training, scores = carry
            if not refresh:
                training = backend.backward_step(
                    self, training, x, y, trained_weight
                )
                return training, scores
            training, y_pred = backend.backward_step(
                self, training, x, y, trained_weight, return_predictions=True
            )
            losses = scoring.per_example_loss(
                self._compile_loss, y, y_pred, sample_weight
            )
            return training, self._refresh_scores(scores, example_ids, losses)

        return backend.run_if(is_full, step, carry)

    def _queued_batch(self, rows, structure, has_ids, mask=None):
        """Unpacks rows of the queue into what a backward step trains on.

        Args:
            rows: the queue's buffers (or their first rows).
            structure: `(x, y, sample_weight)` of the batches queued.
            has_ids: whether the last buffer holds example ids.
            mask: optional float weights of the rows (0 for rows to ignore).

        Returns:
            Tuple `(x, y, sample_weight, trained_weight, example_ids)`:
            `trained_weight` is `sample_weight` times the importance weights
            (strategies that reweight) and `mask`.
        """
        rows = list(rows)
        example_ids = rows.pop() if has_ids else None
        weights = rows.pop() if self._reweights() else None
        x, y, sample_weight = _fill_leaves(structure, rows)
        if mask is not None:
            weights = mask if weights is None else mask * ops.cast(weights, mask.dtype)
        trained_weight = sample_weight
        if weights is not None:
            trained_weight = _apply_importance_weights(sample_weight, weights)
        return x, y, sample_weight, trained_weight, example_ids

    def _refresh_scores(self, scores, example_ids, losses):
        """Stores the training-mode losses of a stale epoch's backward step:
        a pure function on the carried scores.

        The selection probabilities stay those of the last fresh epoch.
        Training-mode losses are not comparable with the inference-mode
        losses of the history (BatchNorm uses batch statistics, dropout is
        on, and a stale epoch sees only the selected, high losses): ranked
        against it, they cut the selected fraction of the next stale epoch
        from 0.33 to about 0.19 in `benchmarks/throughput.py`.
        """
        table, loss_sum, loss_count = scores
        table = stale.record_scores(
            table, example_ids, losses,
            stale.stored_probabilities(table, example_ids),
            self.selection_state.epochs_completed.value,
        )
        finite = ops.isfinite(losses)
        loss_sum = loss_sum + ops.sum(ops.where(finite, losses, 0.0))
        loss_count = loss_count + ops.sum(ops.cast(finite, "float32"))
        return table, loss_sum, loss_count

    # Set when the selective step is traced (or run eagerly): a subclass's
    # `train_step` that does not call `super().train_step` never sets it.
    _selective_step_used = False

    def train_step(self, *args):
        # TensorFlow: `train_step(data)`; JAX: `train_step(state, data)`.
        self._selective_step_used = True
        return backend.train_step(self, *args)

    def _selective_train_step(self, data):
        """The selective step, written with Keras variables and ops.

        Runs inside the compiled train step of every backend (on JAX inside
        a `keras.StatelessScope`, see `keras_sb.backend.jax`).
        """
        data, example_ids = data_utils.split_example_ids(data)
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        sample_weight = self._batch_class_weights(y, sample_weight,
                                                  example_ids is not None)
        if not self._uses_example_ids(example_ids):
            example_ids = None
        else:
            example_ids = ops.cast(example_ids, "int32")
        if self._stale_epoch:
            return self._stale_train_step(x, y, sample_weight, example_ids)
        state = self.selection_state

        # 1. Scoring: inference-mode forward pass over the whole batch. Its
        #    loss and metrics are what the logs report.
        y_pred = self._forward(x, training=False)
        self._prepare_backward_step()
        loss = self._compute_loss(
            x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=False
        )
        batch_size = ops.shape(_present_leaves(x)[0])[0]
        self._loss_tracker.update_state(
            unscale_loss_for_distribution(loss), sample_weight=batch_size
        )
        logs = self.compute_metrics(x, y, y_pred, sample_weight=sample_weight)
        losses = scoring.per_example_loss(
            self._compile_loss, y, y_pred, sample_weight
        )

        # 2. Selection; with example ids, the scores go into the table.
        selected, probabilities = self._draw_selection(losses)
        if example_ids is not None:
            self._count_invalid_ids(example_ids)
            table = stale.record_scores(
                [column.value for column in state.score_table], example_ids,
                losses, probabilities, state.epochs_completed.value,
            )
            for column, value in zip(state.score_table, table):
                column.assign(value)

        # 3. Queue the selected examples; a backward step per full queue.
        self._queue_and_train(x, y, sample_weight, example_ids, selected,
                              probabilities)
        return self._selection_logs(logs, batch_size, selected)

    def _stale_train_step(self, x, y, sample_weight, example_ids):
        """The step of a stale epoch: no selection forward pass.

        Each example is selected with the probability stored in the score
        table; selected examples are queued as in a fresh epoch, and each
        backward step stores the training-mode losses of the examples it
        trained on.
        """
        state = self.selection_state
        if example_ids is None:
            raise ValueError(
                "A stale epoch needs training batches with example ids."
            )
        self._prepare_backward_step()
        table = tuple(column.value for column in state.score_table)
        probabilities = stale.stored_probabilities(table, example_ids)
        probabilities = ops.where(self._selecting(), probabilities, 1.0)
        if self._pipeline_draws:
            # `keras_sb.data.stale_filter` drew these examples already; rows
            # it added to fill the last batch are not examples.
            selected = ops.not_equal(example_ids, data_utils.PADDING_ID)
            self._count_invalid_ids(ops.where(selected, example_ids, 0))
        else:
            self._count_invalid_ids(example_ids)
            selected = selection.bernoulli(probabilities, state.seed_generator)
        zero = ops.convert_to_tensor(0.0, dtype="float32")
        table, loss_sum, loss_count = self._queue_and_train(
            x, y, sample_weight, example_ids, selected, probabilities,
            scores=(table, zero, zero),
        )
        for column, value in zip(state.score_table, table):
            column.assign(value)
        self._loss_tracker.update_state(
            ops.divide_no_nan(loss_sum, loss_count), sample_weight=loss_count
        )
        # Only the loss of the examples trained on is known (NaN, not 0,
        # while none was trained on); the compiled metrics would need a
        # forward pass over all examples.
        nan = ops.convert_to_tensor(float("nan"))
        logs = {name: nan for name in self.get_metrics_result()}
        logs["loss"] = ops.where(self._loss_tracker.count.value > 0,
                                 self._loss_tracker.result(), nan)
        batch_size = ops.shape(example_ids)[0]
        if self._pipeline_draws:
            batch_size = ops.sum(ops.cast(selected, "int32"))
        return self._selection_logs(logs, batch_size, selected)

    def _prepare_backward_step(self):
        """Checks there is something to train; builds the optimizer."""
        if not self.trainable_weights:
            raise ValueError(
                f"The model {self.name!r} has no trainable weights, so there "
                "is nothing to backpropagate."
            )
        if not self.optimizer.built:
            # Built here, not on its first use inside the queue's loop (on
            # JAX Keras builds it before training).
            self.optimizer.build(self.trainable_variables)

    def _count_invalid_ids(self, example_ids):
        state = self.selection_state
        valid = stale.valid_example_ids(example_ids, state.score_table_size)
        state.invalid_example_ids.assign_add(
            ops.sum(ops.cast(ops.logical_not(valid), "int32"))
        )

    def _queue_and_train(self, x, y, sample_weight, example_ids, selected,
                         probabilities, scores=None):
        """Queues the selected examples and trains on each full queue.

        Args:
            scores: in stale epochs, the carried `(table, loss_sum,
                loss_count)` that backward steps refresh.

        Returns:
            `scores` after the backward steps (None in fresh epochs).
        """
        state = self.selection_state
        self._check_queue_signature(x, y, sample_weight, example_ids)
        batch = _present_leaves((x, y, sample_weight))
        if self._reweights():
            batch.append(self.strategy.importance_weights(probabilities))
        if example_ids is not None:
            batch.append(example_ids)
        if backend.replica_info()[0] > 1:
            self._queue_and_train_synchronized(
                x, y, sample_weight, batch, selected,
                has_ids=example_ids is not None,
            )
            return None
        refresh = scores is not None
        new_queue, queue_size, steps, (training, scores) = queue_ops.drain(
            [buffer.value for buffer in state.queue],
            state.queue_size.value,
            batch,
            selected,
            lambda is_full, queue, carry: self._backward_if_full(
                is_full, queue, carry, (x, y, sample_weight),
                example_ids is not None, refresh,
            ),
            carry=(backend.training_state(self), scores if refresh else ()),
        )
        backend.restore_training_state(self, training)
        for buffer, value in zip(state.queue, new_queue):
            buffer.assign(value)
        state.queue_size.assign(queue_size)
        state.backprops.assign_add(steps * state.queue_batch_rows)
        return scores if refresh else None

    def _queue_and_train_synchronized(self, x, y, sample_weight, batch,
                                      selected, has_ids):
        """`_queue_and_train` on one of several replicas of a strategy.

        Each replica queues its own selected examples; the replicas decide
        together when to take a backward step (`queue.drain_synchronized`),
        which then trains every replica on its queue, with the usual
        all-reduce of gradients.
        """
        state = self.selection_state
        replicas, _ = backend.replica_info()
        rows = state.queue_batch_rows
        local_batch = selected.shape[0]
        if local_batch is None and self._scoring_batch_size:
            local_batch = -(-self._scoring_batch_size // replicas)
        iterations = 1 + -(-(local_batch or rows) // rows)
        structure = (x, y, sample_weight)

        def decide(ready, stuck, local_rows):
            flags = backend.all_reduce_sum(ops.stack([
                ops.cast(ready, "int32"), ops.cast(stuck, "int32"), local_rows,
            ]))
            return ops.logical_or(flags[0] >= replicas, flags[1] > 0), flags[2]

        def train(head, mask):
            # Rows beyond a replica's queue (when another replica's queue
            # overflows) get weight 0.
            x, y, _, trained_weight, _ = self._queued_batch(
                head, structure, has_ids, mask=mask
            )
            backend.backward_step(self, (), x, y, trained_weight)

        def backward(run, head, mask):
            return backend.synchronized_run_if(
                run, train, (head, ops.cast(mask, "float32"))
            )

        new_queue, queue_size, steps, trained, dropped = (
            queue_ops.drain_synchronized(
                [buffer.value for buffer in state.queue],
                state.queue_size.value, batch, selected, rows, iterations,
                decide, backward,
            )
        )
        for buffer, value in zip(state.queue, new_queue):
            buffer.assign(value)
        state.queue_size.assign(queue_size)
        state.backprops.assign_add(trained)
        state.padded_examples.assign_add(steps * rows * replicas - trained)
        state.dropped_examples.assign_add(backend.all_reduce_sum(dropped))

    def _selection_logs(self, logs, batch_size, selected):
        """Updates the counters behind the logs and adds their values."""
        state = self.selection_state
        num_selected = ops.sum(ops.cast(selected, "int32"))
        if backend.replica_info()[0] > 1:
            # The counters of every replica count all replicas' examples.
            counts = backend.all_reduce_sum(ops.stack([
                ops.cast(batch_size, "int32"), num_selected,
            ]))
            batch_size, num_selected = counts[0], counts[1]
        state.scored_batches.assign_add(1)
        state.epoch_scored.assign_add(ops.cast(batch_size, "int32"))
        state.epoch_selected.assign_add(num_selected)
        state.selected_total.assign_add(num_selected)
        logs["selected_fraction"] = ops.divide_no_nan(
            ops.cast(state.epoch_selected.value, "float32"),
            ops.cast(state.epoch_scored.value, "float32"),
        )
        # A tensor (a variable itself fails in the logs of `run_eagerly`).
        logs["backprops"] = ops.copy(state.backprops.value)
        return logs


def _first_batch(epoch_iterator):
    """One batch of a Keras epoch iterator, read as Keras does (`fit` resets
    the iterator next).

    A `PyDataset` is indexed directly: starting its worker threads for one
    batch and stopping them again let batches made for that aborted epoch
    (in the order of its shuffle) leak into the first real epoch.
    """
    adapter = getattr(epoch_iterator, "data_adapter", None)
    py_dataset = getattr(adapter, "py_dataset", None)
    if py_dataset is not None and hasattr(adapter, "_standardize_batch"):
        return adapter._standardize_batch(py_dataset[0])
    for _, _, batches in epoch_iterator:
        if isinstance(batches, (list, tuple)):
            return batches[0]
        return next(batches)


@keras.saving.register_keras_serializable(package="keras_sb")
class FunctionalSelectiveBackpropModel(SelectiveBackpropModel, Functional):
    """A `SelectiveBackpropModel` built from inputs and outputs.

    `SelectiveBackpropModel(inputs, outputs, ...)` returns one of these; use
    the class directly only to subclass a functional model.
    """

    def __init__(self, inputs, outputs, name=None, **kwargs):
        source = _clone_source(type(self))
        if source is not None:
            # The source's options, but those this call sets (a subclass
            # may fix some in its `__init__`).
            options = source._selection_config()
            if set(kwargs) & {"strategy", *_PAPER_OPTIONS}:
                del options["strategy"]
            else:
                options["strategy"] = keras.saving.deserialize_keras_object(
                    options["strategy"])
            kwargs = {**options, **kwargs}
        super().__init__(inputs, outputs, name=name, **kwargs)


def _clone_source(cls):
    """The model that `keras.models.clone_model` is cloning into a new `cls`,
    or None.

    Keras clones a functional model by calling its class with only
    `(inputs, outputs, name=...)`, so a clone would get the default selection
    options, silently. This finds the model being cloned in the calling
    frame of Keras's `_clone_functional_model` (past the `__init__` frames of
    subclasses), so that the clone gets its options, as `get_config` would
    give them. Relies on Keras 3.15's cloning code (a test checks it).
    """
    frame = sys._getframe(2)
    while frame is not None and frame.f_code.co_name == "__init__":
        frame = frame.f_back
    if (frame is None or frame.f_code.co_name != "_clone_functional_model"
            or not frame.f_globals.get("__name__", "").startswith("keras.")):
        return None
    source = frame.f_locals.get("model")
    return source if type(source) is cls else None


@keras.saving.register_keras_serializable(package="keras_sb")
class WrappedModel(SelectiveBackpropModel):
    """A `SelectiveBackpropModel` around another (e.g. subclassed) model.

    Made by `SelectiveBackpropModel.from_model` for models that are not
    functional. Calling it calls the wrapped model.

    Args:
        model: the `keras.Model` to train.
        **kwargs: the options of `SelectiveBackpropModel`.
    """

    def __init__(self, model, **kwargs):
        kwargs.setdefault("name", f"selective_backprop_{model.name}")
        super().__init__(**kwargs)
        self.model = model

    def call(self, inputs, training=None):
        return self.model(inputs, training=training)

    def get_config(self):
        config = {"name": self.name, "trainable": self.trainable,
                  "model": keras.saving.serialize_keras_object(self.model)}
        config.update(self._selection_config())
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        config["model"] = keras.saving.deserialize_keras_object(
            config["model"], custom_objects=custom_objects
        )
        return cls(**config)


class _ProgbarOfVaryingEpochs(keras.callbacks.ProgbarLogger):
    """Keras's progress bar for epochs whose number of steps varies (data
    filtered by `keras_sb.data.stale_filter`): each epoch counts its own
    steps, where Keras's holds every epoch to the first one's count."""

    def on_epoch_begin(self, epoch, logs=None):
        self.target = None
        super().on_epoch_begin(epoch, logs)


class SelectionWindow(keras.callbacks.Callback):
    """Places the selection window (`start`, `end`) at each epoch start.

    Added by `SelectiveBackpropModel.fit` in front of the user's callbacks;
    it also counts completed epochs, the unit of `start="1ep"`.
    """

    def __init__(self, start, end):
        super().__init__()
        self._window = (start, end)

    def on_epoch_begin(self, epoch, logs=None):
        state = self.model.selection_state
        counters = state.counters()
        start_step, end_step = schedule.window_thresholds(
            *self._window,
            step=counters["scored_batches"],
            epoch=epoch,
            epochs=self.params.get("epochs") or epoch + 1,
            epochs_completed=counters["epochs_completed"],
            steps_per_epoch=self.params.get("steps"),
        )
        state.selection_start.assign(start_step)
        state.selection_end.assign(end_step)

    def on_epoch_end(self, epoch, logs=None):
        state = self.model.selection_state
        state.epochs_completed.assign_add(1)
        if not self.model._selective_step_used and not self._warned_bypass:
            self._warned_bypass = True
            warnings.warn(
                f"{type(self.model).__name__} overrides `train_step` without "
                "calling `super().train_step(...)`: no example was scored or "
                "selected this epoch, and every example was trained on as in "
                "a plain keras.Model. Selective-Backprop runs in "
                "SelectiveBackpropModel.train_step; to customize the loss, "
                "compile a per-example `loss=` instead.",
                stacklevel=2,
            )
        dropped = int(state.dropped_examples.numpy())
        if dropped > self._dropped:
            warnings.warn(
                f"{dropped - self._dropped} selected examples found no room "
                "in their replica's queue this epoch and were not trained on. "
                "Set `backprop_batch_size` to at least the global batch size.",
                stacklevel=2,
            )
        self._dropped = dropped

    def on_train_begin(self, logs=None):
        self._dropped = int(self.model.selection_state.dropped_examples.numpy())
        self._warned_bypass = False
