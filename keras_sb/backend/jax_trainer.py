"""The JAX side of `SelectiveBackpropModel`'s trainer.

The JAX trainer passes the training state into the step, so the queue's
variables must exist before `fit` (or `train_on_batch`) gathers that state:
they are made in `_symbolic_build`, which Keras calls first. The fresh and
the stale step are two jitted functions, made on first use and kept.
"""

import contextlib
import functools


class JAXTrainer:
    """Mixin of `SelectiveBackpropModel` on the JAX backend."""

    def make_train_function(self, force=False):
        if force or self.train_function is None:
            self._train_functions = {}
        stale_epoch = self._step_settings.stale_epoch
        if stale_epoch not in self._train_functions:
            # Keras jits `self.train_step`; bound methods compare equal, so
            # JAX would reuse the other kind's trace. A new function object
            # gets its own.
            self.train_step = functools.partial(type(self).train_step, self)
            try:
                super().make_train_function(force=True)
            finally:
                del self.train_step
            self._train_functions[stale_epoch] = self.train_function
        self.train_function = self._train_functions[stale_epoch]
        return self.train_function

    def _use_stale_step(self, stale_epoch):
        """Switches between the fresh and the stale train step."""
        if stale_epoch == self._step_settings.stale_epoch:
            return
        self._step_settings = self._step_settings._replace(
            stale_epoch=stale_epoch)
        if self.train_function is not None:
            self.make_train_function()

    @contextlib.contextmanager
    def _queue_from_data(self):
        """Inside: Keras's next `_symbolic_build` makes the queue for the
        data it is given."""
        self._queue_from_next_build = True
        try:
            yield
        finally:
            self._queue_from_next_build = False

    def fit(self, *args, **kwargs):
        with self._queue_from_data():
            return super().fit(*args, **kwargs)

    def train_on_batch(self, *args, **kwargs):
        with self._queue_from_data():
            return super().train_on_batch(*args, **kwargs)
