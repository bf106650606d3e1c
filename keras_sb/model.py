"""`SelectiveBackpropModel`: a `keras.Model` that trains on its biggest losers.

Each training batch gets a cheap inference-mode forward pass; each example is
selected with a probability that grows with its loss (see
`keras_sb.strategies`); selected examples wait in a queue until a full
backprop batch is ready, and only then does a training forward, backward pass
and optimizer step run. Skipped examples cost one inference forward pass.
Everything happens inside one compiled `train_step` (`keras_sb.step`), so
`fit`, callbacks, XLA, mixed precision and saving keep working as in plain
Keras. The backend-specific parts of the trainer are in `keras_sb.backend`.
"""

import keras

from keras_sb import _keras_compat
from keras_sb import backend
from keras_sb import fit_session as sessions
from keras_sb import options as options_lib
from keras_sb import report
from keras_sb import schedule
from keras_sb import step
from keras_sb.state import SelectionState
from keras_sb.trainer import SelectiveTrainer


@keras.saving.register_keras_serializable(package="keras_sb")
class SelectiveBackpropModel(backend.Trainer, SelectiveTrainer, keras.Model):
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
    forward pass (see `keras_sb.stale`). With example ids, the model also
    counts how often each example was selected and backpropagated:
    `selection_report()`.

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
        if (options_lib.is_functional_call(args, kwargs)
                and not issubclass(cls, _keras_compat.Functional)):
            from keras_sb.functional import FunctionalSelectiveBackpropModel

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
        self._options = options_lib.selection_options(
            beta=beta, min_probability=min_probability,
            target_fraction=target_fraction, strategy=strategy,
            history_size=history_size, backprop_batch_size=backprop_batch_size,
            start=start, end=end, seed=seed,
        )
        self.strategy = self._options.strategy
        self.history_size = self._options.history_size
        # The batch size of the last `fit`, the default backprop batch size.
        self._fit_batch_size = None
        self._step_settings = step.StepSettings()
        self.fit_session = None
        start_step, end_step = schedule.initial_thresholds(
            self._options.start, self._options.end)
        self.selection_state = SelectionState(
            self.history_size,
            selection_start=start_step,
            selection_end=end_step,
            seed=self._options.seed,
            name="selection_state",
        )

    # --- Configuration -----------------------------------------------------

    @property
    def backprop_batch_size(self):
        """Examples per backward step, over all replicas (None until known)."""
        rows = self.selection_state.queue_batch_rows
        if rows is not None:
            return rows * backend.num_replicas(self)
        return self._options.backprop_batch_size or self._fit_batch_size

    @property
    def start(self):
        return schedule.format_time(self._options.start)

    @property
    def end(self):
        return schedule.format_time(self._options.end)

    def _selection_config(self):
        """The selection options, as `get_config` saves them."""
        return self._options.to_config()

    def get_config(self):
        config = super().get_config()
        config.update(self._selection_config())
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        from keras_sb.functional import FunctionalSelectiveBackpropModel
        from keras_sb.functional import WrappedModel

        # A subclass of one's own either fixes its selection options in
        # `__init__` (as in the README) or takes them as arguments. It is
        # rebuilt without them; if that does not give the saved options,
        # they were arguments, and it is rebuilt with them.
        options = {name: config[name] for name in options_lib.CONFIG_KEYS
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
        from keras_sb import functional

        return functional.from_model(model, **options)

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
        x, callbacks, class_weight, self.fit_session = sessions.open_session(
            self, x, batch_size, callbacks, verbose, class_weight,
            steps_per_epoch)
        try:
            with self.fit_session.warnings_filtered():
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
            sessions.warn_if_nothing_trained(self, counters)
            return history
        finally:
            self.fit_session.close()
            self.fit_session = None

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

    def selection_report(self):
        """What selection did to each training example, by example id.

        Kept for training data that carry example ids and tell their
        number (`keras_sb.data.selective_pipeline`, `with_example_ids`,
        `ArrayPipeline(..., example_ids=True)`), on one device, for every
        method: the paper's rule, stale selection, `InfoBatch`,
        `RandomSubset`. Saved with the model.

        Returns:
            A NumPy structured array, one row per example id, with the
            fields `example_id`, `times_selected` (selected, or kept by
            pruning), `times_backpropagated`, `last_loss`,
            `last_probability` and `last_scored_epoch` (-1: never scored).
            See `keras_sb.report`.

        Example:

        ```python
        train = keras_sb.data.selective_pipeline((x, y), model, batch_size=128)
        model.fit(train, epochs=20)
        report = model.selection_report()
        suspects = keras_sb.report.rank_most_selected(report)[:100]
        ```
        """
        return report.selection_report(self.selection_state)

    def summary(self, *args, **kwargs):
        # The selection state is training state, not a layer of the network.
        with _keras_compat.sublayer_hidden(self, self.selection_state):
            return super().summary(*args, **kwargs)
