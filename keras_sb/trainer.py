"""The backend-neutral overrides of Keras's trainer in
`SelectiveBackpropModel`: the selective `train_step`, and the queue's
variables made from the structure of the training data.

The backend-specific parts are `keras_sb.backend.Trainer`.
"""

from keras_sb import _keras_compat
from keras_sb import backend
from keras_sb import data as data_utils
from keras_sb import epoch_schedule
from keras_sb import queue_layout
from keras_sb import step


class SelectiveTrainer:
    """Mixin of `SelectiveBackpropModel` with its train step."""

    def _change_step_settings(self, **changes):
        settings = self._step_settings._replace(**changes)
        if settings != self._step_settings:
            self._step_settings = settings
            self.train_function = None  # The step differs.

    def _uses_example_ids(self, example_ids):
        return example_ids is not None and self.selection_state.score_table is not None

    def _remember_epoch_iterator(self, iterator):
        if self.fit_session is not None:
            self.fit_session.remember_epoch_iterator(iterator)

    def _prepare_queue(self, structure):
        """Creates the queue for data of this structure; True if it did."""
        return queue_layout.prepare_queue(self, structure)

    def _symbolic_build(self, iterator=None, data_batch=None):
        # On JAX, `fit` and `train_on_batch` call this before they gather the
        # training state, which must include the queue's variables.
        self._remember_epoch_iterator(iterator)
        make_queue = self._queue_from_next_build
        self._queue_from_next_build = False
        parts = [self._compile_metrics, self._compile_loss, *self._flatten_layers()]
        built = all(part is None or part.built for part in parts)
        if not make_queue and built:
            # Nothing needs a batch of data (as in `Trainer._symbolic_build`).
            return super()._symbolic_build(data_batch=())
        if data_batch is None and built:
            # The queue needs the batches' structure only: read no data
            # where the specs tell it (Keras reads none once built).
            data_batch = _keras_compat.element_spec_of(iterator)
        if data_batch is None:
            data_batch = _keras_compat.first_batch(iterator)
        data, _ = data_utils.split_example_ids(data_batch)
        super()._symbolic_build(data_batch=() if built else data)
        # The queue only for `fit` and `train_on_batch` on JAX.
        if make_queue and self._prepare_queue(data_batch):
            self.train_function = None  # Its state has new variables.

    # Set when the selective step is traced (or run eagerly): a subclass's
    # `train_step` that does not call `super().train_step` never sets it.
    _selective_step_used = False
    # Set by `fit` and `train_on_batch` on JAX (`JAXTrainer`): the next
    # `_symbolic_build` makes the queue for their data.
    _queue_from_next_build = False

    def train_step(self, *args):
        # TensorFlow: `train_step(data)`; JAX: `train_step(state, data)`.
        self._selective_step_used = True
        with epoch_schedule.train_step_scope(self):
            return backend.train_step(self, *args)

    def _selective_train_step(self, data):
        """The selective step (`keras_sb.step.train_step`), which the
        backend's `train_step` runs inside the compiled step."""
        return step.train_step(self, data)

    def test_step(self, *args):
        # Evaluation needs no example ids: drop them where data carry them.
        *state, data = args
        data, _ = data_utils.split_example_ids(data)
        return super().test_step(*state, data)

    def predict_step(self, *args):
        *state, data = args
        data, _ = data_utils.split_example_ids(data)
        return super().predict_step(*state, data)

    def reset_metrics(self):
        super().reset_metrics()
        self.selection_state.reset_epoch()
