"""Where the selective step waits on the host (JAX): a CPU-side check.

1. The loops and conditionals of the compiled step
   (`keras_sb.benchmark.step_profile.control_flow`), for a batch of 64 with
   the default backprop batch (64) and with 16.
2. The reads of device values on the host between steps: `jax.Array`'s
   host copy is counted from the third step of each epoch to its last one
   (the callbacks' reads at the epoch's end are not counted), for the
   paper's rule, `StaleSelection(2)` and `InfoBatch` on `DevicePipeline`,
   and for a control that reads a variable before each step.
   `jax.transfer_guard` cannot do this on a CPU, where it never fires.

    KERAS_BACKEND=jax python benchmarks/host_round_trips.py

Writes `benchmarks/results/host_round_trips.json`.
"""

import json
import os
import sys
import threading

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras_sb  # noqa: E402
from keras_sb import benchmark  # noqa: E402
from keras_sb.benchmark import step_profile  # noqa: E402


def control_flow_counts():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(512, 5)).astype("float32")
    y = rng.integers(0, 3, 512)
    counts = {}
    for backprop_batch_size in (None, 16):
        inputs = keras.Input((5,))
        outputs = keras.layers.Dense(3, activation="softmax")(inputs)
        model = keras_sb.SelectiveBackpropModel(
            inputs, outputs, beta=2.0, backprop_batch_size=backprop_batch_size)
        model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
        model.fit(x, y, batch_size=64, epochs=1, verbose=0)
        counts[f"batch 64, backprop batch {backprop_batch_size or 64}"] = (
            step_profile.control_flow(model, (x[:64], y[:64])))
    return counts


class _HostReads(keras.callbacks.Callback):
    """Counts host copies of `jax.Array`s between the third step of each
    epoch and its last one, while `fit` runs: those made through
    `ArrayImpl._value` (`float`, `int`, `bool`, `jax.device_get`) and
    through `np.array` / `np.asarray` (`.numpy()`, `convert_to_numpy`),
    which on a CPU read the buffer without `_value`.

    Reads are held as pending and counted when the next step begins: what
    comes after the last step of an epoch (the callbacks' reads at its end)
    is dropped when the next epoch begins.
    """

    def __init__(self):
        super().__init__()
        import jax
        from jax._src import array

        self._jax_array = jax.Array
        self._array = array.ArrayImpl
        self._originals = (array.ArrayImpl._value, np.array, np.asarray)
        self.reads = 0
        self._pending = 0
        self._counting = False
        self._loop = threading.current_thread()

    def _count(self):
        # Only the training loop's thread: Keras converts each step's logs
        # to NumPy in a thread of its own when no callback has a hook at
        # batch end (this one has none, so it leaves that as it is).
        if self._counting and threading.current_thread() is self._loop:
            self._pending += 1

    def on_train_begin(self, logs=None):
        value, to_array, as_array = self._originals

        def read_value(array):
            self._count()
            return value.fget(array)

        def numpy_function(function):
            def counted(x, *args, **kwargs):
                if isinstance(x, self._jax_array):
                    self._count()
                return function(x, *args, **kwargs)
            return counted

        self._array._value = property(read_value)
        np.array, np.asarray = numpy_function(to_array), numpy_function(
            as_array)

    def on_epoch_begin(self, epoch, logs=None):
        self._counting, self._pending = False, 0

    def on_train_batch_begin(self, batch, logs=None):
        self.reads += self._pending
        self._pending = 0
        self._counting = self._counting or batch >= 2

    def on_train_end(self, logs=None):
        self._counting = False
        self._array._value, np.array, np.asarray = self._originals


class _ReadEachStep(keras.callbacks.Callback):
    """The control: reads a variable on the host before each step."""

    def on_train_batch_begin(self, batch, logs=None):
        int(keras.ops.convert_to_numpy(
            self.model.selection_state.backprops.value))


def host_reads_between_steps():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (512, 8, 8, 3), dtype="uint8")
    labels = rng.integers(0, 3, 512)
    reads = {}
    for name, callbacks in [
            ("paper's rule", []),
            ("StaleSelection(2)", [keras_sb.StaleSelection(2)]),
            ("InfoBatch", [keras_sb.InfoBatch(num_examples=512)]),
            ("control: a callback that reads a variable each step",
             [_ReadEachStep()])]:
        inputs = keras.Input((8, 8, 3))
        outputs = keras.layers.Dense(3, activation="softmax")(
            keras.layers.Flatten()(inputs))
        model = keras_sb.SelectiveBackpropModel(inputs, outputs, beta=2.0)
        model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
        data = keras_sb.data.DevicePipeline(
            images, labels, 32, seed=0,
            stale_model=model if name in ("StaleSelection(2)", "InfoBatch")
            else None)
        counter = _HostReads()
        model.fit(data, epochs=4, verbose=0, callbacks=callbacks + [counter])
        reads[name] = counter.reads
    return reads


def main():
    if keras.backend.backend() != "jax":
        raise SystemExit("Run with KERAS_BACKEND=jax.")
    result = {
        "command": "KERAS_BACKEND=jax python benchmarks/host_round_trips.py",
        "machine": benchmark.machine(),
        "control_flow": control_flow_counts(),
        "host_reads_between_steps": host_reads_between_steps(),
    }
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                        "host_round_trips.json")
    with open(path, "w") as file:
        json.dump(result, file, indent=2)
    print(json.dumps({k: v for k, v in result.items() if k != "machine"},
                     indent=2))


if __name__ == "__main__":
    main()
