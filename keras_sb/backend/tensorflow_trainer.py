"""The TensorFlow side of `SelectiveBackpropModel`'s trainer.

TensorFlow creates variables in the first call of a `tf.function`, so the
queue's buffers (whose shapes come from the data) are made when the train
function first sees an iterator, eagerly, just before the compiled step runs.
"""

import weakref

from keras_sb.backend import tensorflow as tf_backend


class TensorFlowTrainer:
    """Mixin of `SelectiveBackpropModel` on the TensorFlow backend."""

    def make_train_function(self, force=False):
        # One compiled step per kind of epoch: fresh (selection forward pass)
        # and stale (stored scores), made on first use and kept.
        if self.train_function is not None and not force:
            return self.train_function
        compiled = {}
        # A weak reference: holding on to the previous epoch's iterator
        # would delay its deletion into the first step of the next epoch,
        # which costs seconds with large in-memory datasets.
        last_iterator = lambda: None  # noqa: E731

        def train_function(iterator):
            nonlocal compiled, last_iterator
            stale_epoch = self._step_settings.stale_epoch
            if iterator is not last_iterator():
                last_iterator = weakref.ref(iterator)
                iterator, structure = tf_backend.peek_batch_structure(iterator)
                if self._prepare_queue(structure):
                    compiled = {}
                metrics = self._compile_metrics
                if stale_epoch and metrics is not None and not metrics.built:
                    # A stale step has no forward pass over the batch to
                    # build the metrics (and to name the logs) with.
                    self._symbolic_build(data_batch=structure)
            if stale_epoch not in compiled:
                super(TensorFlowTrainer, self).make_train_function(force=True)
                compiled[stale_epoch] = self.train_function
                self.train_function = train_function
            return compiled[stale_epoch](iterator)

        self.train_function = train_function
        return train_function

    def _use_stale_step(self, stale_epoch):
        """Switches between the fresh and the stale train step (the train
        function picks its compiled step at each call)."""
        self._step_settings = self._step_settings._replace(
            stale_epoch=stale_epoch)

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Under a strategy, Keras averages the first distributed batch over
        # the replicas (`strategy.reduce`), which fails under
        # MultiWorkerMirroredStrategy (Keras 3.15) and turns integer labels
        # into floats. One replica's batch has the shapes and dtypes the
        # build needs.
        self._remember_epoch_iterator(iterator)
        if iterator is not None and self._distribute_strategy is not None:
            for _, _, batches in iterator:
                data_batch = tf_backend.local_batch(self.distribute_strategy,
                                                    next(batches))
                break
            iterator = None
        return super()._maybe_symbolic_build(iterator=iterator,
                                             data_batch=data_batch)
