"""The selection state of a model: loss history, pending queue and counters.

All of it lives in non-trainable Keras variables owned by one layer,
`SelectionState`, which the model holds as `model.selection_state`. Keeping it
in variables lets the whole selection run inside the compiled train step, and
saves it with the model (`model.save`, checkpoints, `BackupAndRestore`), so
training continues exactly where it stopped after loading.
"""

import warnings

import keras
import numpy as np

from keras_sb import _keras_compat
from keras_sb import selection
from keras_sb.score_table import ScoreTable
from keras_sb.schedule import NEVER

_COUNTERS = (
    # name, meaning
    ("history_position", "next slot of the loss history to write"),
    ("scored_batches", "training batches scored so far"),
    ("epochs_completed", "training epochs completed so far"),
    ("selection_start", "scored batch from which selection is on"),
    ("selection_end", "scored batch from which selection is off again"),
    ("epoch_scored", "examples scored this epoch"),
    ("epoch_selected", "examples selected this epoch"),
    ("selected_total", "examples selected so far"),
    ("backprops", "examples backpropagated so far"),
    ("queue_size", "examples waiting in the pending queue"),
    ("last_fresh_epoch", "last epoch that scored every example (stale selection)"),
    ("invalid_example_ids", "example ids seen outside the score table"),
    ("padded_examples", "empty rows of backward steps (several replicas)"),
    ("dropped_examples", "selected examples that found no room in the queue"),
    ("epoch_size", "examples this epoch goes over (0: not known)"),
    ("draw_seed", "seed of the keep/skip draws made in the input pipeline"),
)
_INITIAL_VALUES = {"last_fresh_epoch": -1}
# Counters that models saved by earlier versions lack: loaded as initial.
_ADDED_COUNTERS = ("last_fresh_epoch", "invalid_example_ids",
                   "padded_examples", "dropped_examples", "epoch_size",
                   "draw_seed")

NOT_SCORED = -1
"""`score_epoch` of an example that was never scored."""
_SCORE_COLUMNS = (
    # name, dtype, initial value
    ("score_loss", "float32", float("nan")),
    ("score_probability", "float32", 1.0),
    ("score_epoch", "int32", NOT_SCORED),
    ("score_selected", "int32", 0),
    ("score_backprops", "int32", 0),
)
# Columns that tables saved by earlier versions lack: loaded as initial.
_ADDED_SCORE_COLUMNS = ("score_selected", "score_backprops")


def example_signature(leaf):
    """`(per-example shape, dtype)` of a batched tensor, array or TensorSpec.

    A NumPy array gets the dtype the backend converts it to, the one the
    compiled step sees (JAX without 64-bit mode makes NumPy's default int64
    int32, and float64 float32).

    Raises:
        ValueError: if a per-example dimension is unknown, or the data are
            sparse or strings (the queue's buffers are dense and numeric).
    """
    if _is_sparse(leaf):
        raise ValueError(
            "SelectiveBackpropModel queues selected examples in dense "
            "buffers, so it does not take sparse inputs, targets or sample "
            "weights. Make them dense (`tf.sparse.to_dense` mapped over a "
            "tf.data dataset, `.toarray()` for SciPy matrices). Received: "
            f"{type(leaf).__name__} of shape {leaf.shape}."
        )
    if isinstance(leaf, np.ndarray):
        leaf = keras.ops.convert_to_tensor(leaf[:0])
    shape = tuple(leaf.shape)[1:]
    dtype = keras.backend.standardize_dtype(leaf.dtype)
    if dtype == "string":
        raise ValueError(
            "SelectiveBackpropModel queues selected examples in numeric "
            "buffers and cannot queue strings. Turn the strings into numbers "
            "in the input pipeline (for example a `keras.layers.StringLookup` "
            "mapped over the tf.data dataset, not inside the model), and drop "
            "string features the model does not use. Received a string "
            f"tensor of shape {leaf.shape}."
        )
    if any(dim is None for dim in shape):
        raise ValueError(
            "SelectiveBackpropModel queues selected examples in fixed-size "
            "buffers, so every input, target and sample weight needs a known "
            "shape apart from the batch dimension. Pad variable-length data "
            f"to a fixed length. Received a tensor of shape {leaf.shape}."
        )
    return shape, dtype


def _is_sparse(leaf):
    """Whether `leaf` is a sparse tensor, its spec or a sparse KerasTensor."""
    return bool(
        getattr(leaf, "sparse", False) is True
        or type(leaf).__name__ == "SparseTensorSpec"
        or _keras_compat.is_sparse_data(leaf)
    )


class SelectionState(keras.layers.Layer):
    """Non-trainable state of Selective-Backprop for one model.

    Holds the ring buffer of recent losses, the pending queue of selected
    examples (created from the first training batch, since its shapes come
    from the data), the random seed of the Bernoulli draws, the counters
    behind `selected_fraction` and `backprops`, and for data with example
    ids the score table: each example's last loss, selection probability,
    the epoch it was scored in and how often it was selected and
    backpropagated, indexed by example id.

    Args:
        history_size: number of recent losses the percentiles are taken over.
        selection_start: initial step threshold from which selection is on.
        selection_end: initial step threshold from which it is off again.
        seed: seed of the Bernoulli draws (None: random).
    """

    def __init__(
        self,
        history_size,
        selection_start=0,
        selection_end=NEVER,
        seed=None,
        **kwargs,
    ):
        super().__init__(dtype="float32", trainable=False, **kwargs)
        self.history_size = history_size
        self.seed_generator = keras.random.SeedGenerator(seed)
        # The generator's state, made replica-local like the rest (see
        # `_add_state_variable`); every replica advances it alike.
        initial_seed = keras.ops.convert_to_numpy(self.seed_generator.state.value)
        self.seed_generator.state = self._add_state_variable(
            initial_seed, name="seed_generator_state",
            dtype=self.seed_generator.state.dtype,
        )
        self.loss_history = self._add_state_variable(
            selection.EMPTY_HISTORY_SLOT, shape=(history_size,),
            dtype="float32", name="loss_history",
        )
        # Saved with the model, so a resumed run draws as an uninterrupted
        # one would (`keras_sb.data.stale_filter`).
        draw_seed = np.random.randint(2**31 - 1) if seed is None else seed
        initial = dict(_INITIAL_VALUES, selection_start=selection_start,
                       selection_end=selection_end,
                       draw_seed=int(draw_seed) % (2**31 - 1))
        for name, _ in _COUNTERS:
            setattr(self, name, self._add_state_variable(
                initial.get(name, 0), dtype="int32", name=name,
            ))
        self.queue = []
        self.queue_signature = None
        self.queue_batch_rows = None
        self.score_table = None
        self.built = True

    def _add_state_variable(self, value, dtype, name, shape=()):
        """A non-trainable variable of the state, local to each replica.

        Under a `tf.distribute` strategy the variable is synchronized on read
        (each replica writes its own copy without a cross-replica call, which
        a conditional branch could not make; reading it outside the replicas
        gives the first replica's copy). Values that must agree across
        replicas (the loss history, counters, random seed) are computed alike
        on every replica; the queue is each replica's own. Other backends
        ignore the synchronization.
        """
        value = np.asarray(value)
        variable = keras.Variable(
            initializer=keras.initializers.Constant(value)
            if value.ndim == 0 else value,
            shape=shape if value.ndim == 0 else value.shape,
            dtype=dtype,
            trainable=False,
            aggregation="only_first_replica",
            synchronization="on_read",
            name=name,
        )
        self._track_variable(variable)
        return variable

    @property
    def weights(self):
        """None: the selection state is training state, not weights.

        As with metric variables and random seeds, its variables are in
        `variables` (and the trainer's state) and saved with the model, but
        not in `weights`, so `model.get_weights()` / `set_weights` and
        `summary()` see the network's weights alone, as for the plain model.
        """
        return []

    # --- The score table (data with example ids) ----------------------------

    @property
    def score_table_size(self):
        """Examples in the score table (None before it exists)."""
        return None if self.score_table is None else int(self.score_table[0].shape[0])

    def build_score_table(self, num_examples):
        """Creates the score table for `num_examples` example ids.

        Its columns are `score_loss` (NaN until scored), `score_probability`
        (1 until scored), `score_epoch` (`NOT_SCORED` until scored), and the
        counts `score_selected` and `score_backprops` (0).
        """
        if self.score_table is not None:
            raise ValueError("The score table exists already.")
        self.score_table = ScoreTable(*(
            self._add_state_variable(initial, shape=(num_examples,),
                                     dtype=dtype, name=name)
            for name, dtype, initial in _SCORE_COLUMNS
        ))

    # --- The pending queue -------------------------------------------------

    @property
    def queue_capacity(self):
        """Rows of the queue's buffers (None before the queue exists)."""
        return None if not self.queue else int(self.queue[0].shape[0])

    def build_queue(self, signature, capacity, batch_rows=None):
        """Creates (or re-creates) the queue buffers.

        Args:
            signature: list of `(per-example shape, dtype)`, one per buffer.
            capacity: rows of each buffer.
            batch_rows: examples per backward step, taken from the front of
                the queue; at most `capacity`, which it defaults to. With
                several replicas the queue has room for more, so a replica
                can keep selecting while the others fill their queues.
        """
        batch_rows = capacity if batch_rows is None else batch_rows
        signature = [(tuple(shape), dtype) for shape, dtype in signature]
        if self.queue:
            pending = self.clear_queue()
            if pending:
                warnings.warn(
                    f"{pending} selected examples were still waiting for a "
                    "backward pass, queued with data of another structure "
                    f"({self.queue_signature}); they are discarded because "
                    f"the new data has the structure {signature}.",
                    stacklevel=3,
                )
            for buffer in self.queue:
                self._untrack_variable(buffer)
        self.queue = [
            self._add_state_variable(0, shape=(capacity,) + shape, dtype=dtype,
                                     name=f"queue_{index}")
            for index, (shape, dtype) in enumerate(signature)
        ]
        self.queue_signature = signature
        self.queue_batch_rows = int(batch_rows)

    # --- Saving: every variable by name, the queue created on demand --------

    def _named_variables(self):
        named = {"loss_history": self.loss_history,
                 "seed_state": self.seed_generator.state}
        for name, _ in _COUNTERS:
            named[name] = getattr(self, name)
        return named

    def save_own_variables(self, store):
        for name, variable in self._named_variables().items():
            store[name] = variable
        pending_elsewhere = sum(
            int(np.asarray(copy)) for copy in _replica_copies(self.queue_size)[1:]
        )
        if pending_elsewhere:
            warnings.warn(
                f"{pending_elsewhere} selected examples waiting in the queues "
                "of replicas other than the first are not saved (the saved "
                "queue is the first replica's).",
                stacklevel=2,
            )
        for index, buffer in enumerate(self.queue):
            store[f"queue_{index}"] = buffer
        if self.queue:
            store["queue_batch_rows"] = np.array(self.queue_batch_rows, "int32")
        for (name, _, _), column in zip(_SCORE_COLUMNS, self.score_table or ()):
            store[name] = column

    def load_own_variables(self, store):
        keys = set(store.keys())
        if not keys:
            # A file with no selection state (saved by a plain Keras model):
            # the network's weights load, the state stays as it is.
            return
        for name, variable in self._named_variables().items():
            if name not in keys and name in _ADDED_COUNTERS:
                variable.assign(_INITIAL_VALUES.get(name, 0))
                continue
            if name not in keys:
                raise ValueError(
                    f"The saved selection state has no '{name}'; it was not "
                    "written by this version of keras-sb."
                )
            value = np.asarray(store[name])
            if value.shape != tuple(variable.shape):
                raise ValueError(
                    f"The saved selection state '{name}' has shape "
                    f"{value.shape}, but this model expects "
                    f"{tuple(variable.shape)}. Was the model saved with "
                    "another `history_size`?"
                )
            variable.assign(value)
        buffers = []
        while f"queue_{len(buffers)}" in keys:
            buffers.append(np.asarray(store[f"queue_{len(buffers)}"]))
        if buffers:
            pending = int(self.queue_size.numpy())
            self.queue_size.assign(0)  # Nothing to discard on rebuild.
            batch_rows = None
            if "queue_batch_rows" in keys:
                batch_rows = int(np.asarray(store["queue_batch_rows"]))
            self.build_queue(
                [(b.shape[1:], keras.backend.standardize_dtype(b.dtype))
                 for b in buffers],
                capacity=buffers[0].shape[0],
                batch_rows=batch_rows,
            )
            for buffer, value in zip(self.queue, buffers):
                buffer.assign(value)
            self.queue_size.assign(pending)
            # Under a strategy, that is every replica's queue: the pending
            # examples go to the first replica only, to be trained on once.
            for copy in _replica_copies(self.queue_size)[1:]:
                copy.assign(0)
        if _SCORE_COLUMNS[0][0] in keys:
            self._load_score_table(store, keys)

    def _load_score_table(self, store, keys):
        size = len(np.asarray(store[_SCORE_COLUMNS[0][0]]))
        if self.score_table is None:
            self.build_score_table(size)
        elif self.score_table_size != size:
            raise ValueError(
                f"The saved score table has {size} examples, but this "
                f"model's has {self.score_table_size}."
            )
        for (name, _, initial), column in zip(_SCORE_COLUMNS, self.score_table):
            if name in keys:
                column.assign(np.asarray(store[name]))
            elif name in _ADDED_SCORE_COLUMNS:
                column.assign(np.full(size, initial, column.dtype))
            else:
                raise ValueError(
                    f"The saved score table has no '{name}'; it was not "
                    "written by this version of keras-sb."
                )

    # --- Reading the counters ----------------------------------------------

    def counters(self):
        """Current values of the counters, as a dict of Python ints."""
        return {
            name: int(getattr(self, name).numpy())
            for name, _ in _COUNTERS
        }

    def reset_epoch(self):
        """Starts the per-epoch counters (`selected_fraction`) afresh."""
        self.epoch_scored.assign(0)
        self.epoch_selected.assign(0)

    def clear_queue(self):
        """Empties the queue (of every replica); returns how many examples
        it held."""
        copies = _replica_copies(self.queue_size)
        discarded = sum(int(np.asarray(copy)) for copy in copies)
        self.queue_size.assign(0)
        for copy in copies[1:]:
            copy.assign(0)
        return discarded


def _replica_copies(variable):
    """The per-replica copies of a variable of a `tf.distribute` strategy
    (the variable itself elsewhere)."""
    copies = getattr(variable.value, "values", None)
    return list(copies) if isinstance(copies, tuple) else [variable.value]
