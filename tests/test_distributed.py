"""Data-parallel training: tf.distribute strategies and keras.distribution.

`conftest.py` gives each test process two CPU devices. On TensorFlow,
`MirroredStrategy` runs one replica per device: losses are all-gathered so
every replica ranks against the same history, each replica draws its own
random numbers and keeps its own queue, and backward steps run on all
replicas at once. On JAX, `keras.distribution.DataParallel` shards one
program over the global batch. `MultiWorkerMirroredStrategy` runs in two
worker processes (`tests/multi_worker_train.py`).
"""

import contextlib
import json
import os
import socket
import subprocess
import sys
import warnings

import keras
import numpy as np
import pytest
from conftest import REPLICAS
from conftest import LossThreshold
from conftest import TrainingCounter
from conftest import compile_model
from conftest import counted_mlp
from conftest import mlp
from keras import ops

import keras_sb

BACKEND = keras.backend.backend()
tensorflow_only = pytest.mark.skipif(BACKEND != "tensorflow",
                                     reason="tf.distribute")
jax_only = pytest.mark.skipif(BACKEND != "jax", reason="keras.distribution")


def numpy(x):
    return ops.convert_to_numpy(x)


def replica_values(variable):
    """Each replica's copy of a variable (one array per device)."""
    value = variable.value
    if BACKEND == "tensorflow":
        return [component.numpy() for component in value.values]
    return [np.asarray(shard.data) for shard in value.addressable_shards]


def id_data(x, y):
    """Inputs `{"x", "id"}` with each example's row as its id."""
    return {"x": x, "id": np.arange(len(x), dtype="int32")}, y


_MIRRORED = []


def mirrored_strategy():
    """One MirroredStrategy over the CPU devices, shared by all tests: the
    collective ops of a second strategy in the same process would reuse the
    first one's keys."""
    import tensorflow as tf

    if not _MIRRORED:
        _MIRRORED.append(tf.distribute.MirroredStrategy(
            [f"/cpu:{index}" for index in range(REPLICAS)]
        ))
    return _MIRRORED[0]


class ConstantProbability(keras_sb.SelectionStrategy):
    def __init__(self, probability):
        self.probability = probability

    def probabilities(self, losses, history):
        return ops.full(ops.shape(losses), self.probability)

    def get_config(self):
        return {"probability": self.probability}


def check_conservation(model, counter, logs):
    """Every selected example is trained on exactly once or still queued,
    over all replicas; nothing is dropped."""
    counters = model.selection_state.counters()
    queue_size = model.selection_state.queue_size
    if BACKEND == "tensorflow":  # One queue per replica.
        queued = sum(int(size) for size in replica_values(queue_size))
    else:  # One global queue.
        queued = int(numpy(queue_size.value))
    assert counters["dropped_examples"] == 0
    assert counters["selected_total"] == counters["backprops"] + queued
    # Training-mode forward passes: the examples trained on, plus the
    # weight-0 rows of backward steps where a replica had too few queued.
    counts = numpy(counter.counts.value)
    assert counts.sum() == counters["backprops"] + counters["padded_examples"]
    assert logs["backprops"][-1] == counters["backprops"]


def check_trains_replicas_alike(digits, scope):
    """Two replicas: weights change and stay identical on both, examples are
    counted over both replicas, every selected example is trained on once."""
    x, y, _, _ = digits
    with scope:
        inputs, outputs, counter = counted_mlp(len(x))
        model = compile_model(keras_sb.SelectiveBackpropModel(
            inputs, outputs, beta=2.0, start=0, seed=1))
    initial = numpy(model.trainable_weights[0].value)
    history = model.fit(*id_data(x, y), batch_size=64, epochs=3, verbose=0)

    for variable in model.trainable_weights:
        first, *others = replica_values(variable)
        assert len(others) == REPLICAS - 1
        for other in others:
            np.testing.assert_array_equal(first, other)
    assert not np.allclose(initial, numpy(model.trainable_weights[0].value))
    assert model.selection_state.counters()["epoch_scored"] == len(x)
    check_conservation(model, counter, history.history)
    assert history.history["loss"][-1] < history.history["loss"][0]


def check_selected_fraction(digits, scope):
    """With losses that do not drift (learning rate 0), the fraction
    selected over both replicas is 1 / (beta + 1)."""
    x, y, _, _ = digits
    with scope:
        model = compile_model(keras_sb.SelectiveBackpropModel(
            *mlp(), beta=2.0, start=0, seed=2), learning_rate=0.0)
    history = model.fit(x, y, batch_size=64, epochs=3, verbose=0)
    # 4200 Bernoulli draws with mean 1/3: std of the fraction 0.007.
    selected = model.selection_state.counters()["selected_total"]
    assert abs(selected / (3 * len(x)) - 1 / 3) < 0.03
    assert abs(history.history["selected_fraction"][-1] - 1 / 3) < 0.05


@tensorflow_only
class TestMirroredStrategy:
    def test_trains_replicas_alike_with_global_selection(self, digits):
        check_trains_replicas_alike(digits, mirrored_strategy().scope())

    def test_selected_fraction_follows_the_rule(self, digits):
        check_selected_fraction(digits, mirrored_strategy().scope())

    def test_every_replica_ranks_against_the_global_batch(self, digits):
        """After one batch, both replicas' histories hold the losses of all
        64 examples of the global batch, not of their own 32."""
        x, y, _, _ = digits
        x, y = x[:64], y[:64]
        with mirrored_strategy().scope():
            model = compile_model(keras_sb.SelectiveBackpropModel(
                *mlp(), beta=1.0, start=0, history_size=128))
        losses = numpy(keras.losses.sparse_categorical_crossentropy(
            y, model.predict(x, verbose=0)))
        model.fit(x, y, batch_size=64, epochs=1, shuffle=False, verbose=0)

        histories = replica_values(model.selection_state.loss_history)
        assert len(histories) == REPLICAS
        for history in histories:
            recorded = np.sort(history[np.isfinite(history)])
            np.testing.assert_allclose(recorded, np.sort(losses), rtol=1e-4)

    def test_replicas_draw_their_own_random_numbers(self, digits):
        """Both replicas get the same 32 examples and select each with
        probability 0.5: with one random stream per replica they queue
        different examples (identical queues: probability 2**-32)."""
        x, y, _, _ = digits
        half = np.concatenate([np.arange(32), np.arange(32)])
        with mirrored_strategy().scope():
            model = compile_model(keras_sb.SelectiveBackpropModel(
                *mlp(), strategy=ConstantProbability(0.5), start=0, seed=3))
        model.fit(x[half], y[half], batch_size=64, epochs=1, shuffle=False,
                  verbose=0)
        state = model.selection_state
        queued = [(int(size), buffer[:int(size)]) for size, buffer in zip(
            replica_values(state.queue_size), replica_values(state.queue[0]))]
        assert all(size > 0 for size, _ in queued)
        (size_a, rows_a), (size_b, rows_b) = queued
        assert size_a != size_b or not np.array_equal(rows_a, rows_b)

    def test_replica_that_selects_everything_does_not_overflow(self):
        """Replica 0 gets only high-loss examples (all selected), replica 1
        only low-loss ones (none selected): replica 1 never fills its queue,
        so replica 0's full queue forces backward steps in which replica 1
        trains on nothing (padded). No example is lost or trained twice."""
        num_examples, local = 640, 16
        # Ids from 1: rows of an empty queue buffer (id 0) pad replica 1.
        ids = np.arange(1, num_examples + 1, dtype="int32")
        # Global batches of 32: the first 16 go to replica 0.
        targets = ((ids - 1) % (2 * local) < local).astype("float32")[:, None]
        features = np.zeros((num_examples, 4), "float32")
        with mirrored_strategy().scope():
            inputs = {"x": keras.Input((4,), name="x"),
                      "id": keras.Input((), dtype="int32", name="id")}
            counter = TrainingCounter(num_examples + 1)
            hidden = counter(inputs["x"], inputs["id"])
            outputs = keras.layers.Dense(1, kernel_initializer="zeros")(hidden)
            model = keras_sb.SelectiveBackpropModel(
                inputs, outputs, strategy=LossThreshold(0.5), start=0)
            # Learning rate 0: the loss stays y**2 (1 on replica 0, 0 on 1).
            model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")
        history = model.fit({"x": features, "id": ids}, targets,
                            batch_size=2 * local, epochs=1, shuffle=False,
                            verbose=0)
        counters = model.selection_state.counters()
        assert counters["selected_total"] == num_examples // 2
        assert counters["padded_examples"] > 0
        check_conservation(model, counter, history.history)
        # Replica 0's examples (targets 1) were trained on at most once each
        # and all but its queue's were; replica 1's never.
        counts = numpy(counter.counts.value)[ids]
        high = targets[:, 0] == 1
        assert set(np.unique(counts[high])) <= {0, 1}
        queued = int(replica_values(model.selection_state.queue_size)[0])
        assert (counts[high] == 1).sum() == num_examples // 2 - queued
        assert counts[~high].sum() == 0

    def test_padded_rows_get_no_weight_in_the_update(self):
        """With a real learning rate, a backward step in which replica 1 has
        nothing queued (its rows are padding: left over from an earlier
        step, with large losses) updates the weights exactly as one device
        trained on replica 0's rows alone, the padding weighted 0.

        Global batches of 32, the first 16 rows on replica 0. Batch 1: 32
        examples of target 10 (loss 100, all selected): one full step.
        Batches 2-4: replica 0 gets 16 more of target 10 each, replica 1
        zeros of target 0 (loss under the threshold, never selected). Once
        replica 0's queue is full and more wait, a step runs on its 16
        oldest, with replica 1's 16 rows padded.
        """
        local, learning_rate = 16, 0.001
        rng = np.random.default_rng(0)
        x = rng.normal(size=(4 * 2 * local, 4)).astype("float32")
        y = np.full((4 * 2 * local, 1), 10.0, "float32")
        for batch in range(1, 4):
            rows = slice(batch * 2 * local + local, (batch + 1) * 2 * local)
            x[rows], y[rows] = 0.0, 0.0

        def network():
            inputs = keras.Input((4,))
            return inputs, keras.layers.Dense(1, kernel_initializer="zeros")(
                inputs)

        with mirrored_strategy().scope():
            model = keras_sb.SelectiveBackpropModel(
                *network(), strategy=LossThreshold(1.0), start=0,
                backprop_batch_size=2 * local)
            model.compile(optimizer=keras.optimizers.SGD(learning_rate),
                          loss="mse")
        model.fit(x, y, batch_size=2 * local, epochs=1, shuffle=False,
                  verbose=0)
        counters = model.selection_state.counters()
        assert int(numpy(model.optimizer.iterations.value)) == 2
        assert counters["padded_examples"] == local

        # One device: the full first batch, then replica 0's first 16
        # queued rows (batch 2's) with 16 rows of weight 0.
        reference = keras.Model(*network())
        reference.compile(optimizer=keras.optimizers.SGD(learning_rate),
                          loss="mse")
        reference.train_on_batch(x[:2 * local], y[:2 * local])
        second = slice(2 * local, 3 * local)
        reference.train_on_batch(
            np.concatenate([x[second], np.zeros_like(x[second])]),
            np.concatenate([y[second], np.zeros_like(y[second])]),
            sample_weight=np.repeat([1.0, 0.0], local))
        for trained, expected in zip(model.get_weights(),
                                     reference.get_weights()):
            np.testing.assert_allclose(trained, expected, rtol=1e-5, atol=1e-7)

    def test_saves_and_loads_under_the_strategy(self, digits, tmp_path):
        x, y, _, _ = digits
        with mirrored_strategy().scope():
            model = compile_model(keras_sb.SelectiveBackpropModel(
                *mlp(), beta=1.0, start=0))
        model.fit(x, y, batch_size=64, epochs=1, verbose=0)
        first, second = replica_values(model.selection_state.queue_size)
        path = os.path.join(tmp_path, "model.keras")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model.save(path)
        # The first replica's queue is saved; the others' pending examples
        # are not, and saving says so.
        lost = [w for w in caught if "are not saved" in str(w.message)]
        assert len(lost) == (1 if second else 0)
        with mirrored_strategy().scope():
            loaded = keras.models.load_model(path)
        assert loaded.selection_state.counters() == model.selection_state.counters()
        # Loaded into the first replica only, so trained on once.
        assert [int(size) for size in replica_values(
            loaded.selection_state.queue_size)] == [int(first), 0]
        loaded.fit(x, y, batch_size=64, epochs=1, verbose=0)
        assert (loaded.selection_state.counters()["backprops"]
                > model.selection_state.counters()["backprops"])

    def test_examples_without_room_are_counted_and_reported(self, digits):
        """The compiled step plans for batches the size of the first one (a
        backward batch here). Later, larger batches whose selected examples
        do not fit are counted in `dropped_examples` and reported, never
        lost silently."""
        x, y, _, _ = digits

        def batches():
            yield x[:16], y[:16]
            while True:
                for start in range(0, 640, 64):
                    yield x[start:start + 64], y[start:start + 64]

        with mirrored_strategy().scope():
            model = compile_model(keras_sb.SelectiveBackpropModel(
                *mlp(), beta=0.0, start=0, backprop_batch_size=16))
        with pytest.warns(UserWarning, match="found no room"):
            model.fit(batches(), steps_per_epoch=10, epochs=1, verbose=0)
        counters = model.selection_state.counters()
        queued = sum(int(size) for size in replica_values(
            model.selection_state.queue_size))
        assert counters["selected_total"] == 16 + 576  # beta 0: every example
        assert counters["dropped_examples"] > 0
        assert counters["selected_total"] == (
            counters["backprops"] + queued + counters["dropped_examples"])

    def test_example_ids_in_the_queue(self, digits):
        """A model with a score table (saved after stale selection) trains
        under a strategy on data with ids: the ids ride in each replica's
        queue behind the importance weights of a reweighting strategy, and
        the backward step tells them apart: it trains exactly as the same
        model on the same data without ids."""
        import tensorflow as tf

        x, y, _, _ = digits
        x, y = x[:640], y[:640]
        weights = []
        for with_ids in (False, True):
            keras.utils.set_random_seed(0)
            with mirrored_strategy().scope():
                model = compile_model(keras_sb.SelectiveBackpropModel(
                    *mlp(), start=0, seed=0,
                    strategy=keras_sb.strategies.LossProportional(0.5)))
                if with_ids:
                    model.selection_state.build_score_table(len(x))
            data = tf.data.Dataset.from_tensor_slices((x, y))
            if with_ids:
                data = keras_sb.data.with_example_ids(data)
            model.fit(data.batch(64), epochs=2, verbose=0)
            signature = model.selection_state.queue_signature
            assert (signature[-1] == ((), "int32")) == with_ids
            weights.append([numpy(v.value) for v in model.trainable_weights])
        for without_ids, with_ids in zip(*weights):
            np.testing.assert_allclose(without_ids, with_ids, rtol=1e-5,
                                       atol=1e-6)

    def test_backprop_batch_must_split_over_replicas(self, digits):
        x, y, _, _ = digits
        with mirrored_strategy().scope():
            model = compile_model(keras_sb.SelectiveBackpropModel(
                *mlp(), beta=1.0, backprop_batch_size=33))
        with pytest.raises(ValueError, match="multiple of the number of replicas"):
            model.fit(x, y, batch_size=64, epochs=1, verbose=0)

    def test_stale_selection_is_refused(self, digits):
        x, y, _, _ = digits
        with mirrored_strategy().scope():
            model = compile_model(keras_sb.SelectiveBackpropModel(*mlp()))
        import tensorflow as tf

        data = keras_sb.data.with_example_ids(
            tf.data.Dataset.from_tensor_slices((x, y))).batch(64)
        with pytest.raises(ValueError, match="StaleSelection does not support"):
            model.fit(data, epochs=1, verbose=0,
                      callbacks=[keras_sb.StaleSelection()])


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@tensorflow_only
def test_multi_worker_mirrored_strategy(tmp_path):
    """Two worker processes on 127.0.0.1 train one model together: both end
    with the same weights, and the selection counts both workers' examples."""
    ports = [_free_port() for _ in range(2)]
    script = os.path.join(os.path.dirname(__file__), "multi_worker_train.py")
    workers = []
    for index in range(2):
        env = dict(os.environ)
        env.pop("XLA_FLAGS", None)
        env["TF_CONFIG"] = json.dumps({
            "cluster": {"worker": [f"127.0.0.1:{port}" for port in ports]},
            "task": {"type": "worker", "index": index},
        })
        output = os.path.join(tmp_path, f"worker{index}.npz")
        workers.append((subprocess.Popen(
            [sys.executable, script, output], env=env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        ), output))
    try:
        for process, _ in workers:
            log, _ = process.communicate(timeout=240)
            assert process.returncode == 0, log[-3000:]
    finally:
        for process, _ in workers:
            process.kill()
    results = [np.load(output) for _, output in workers]
    for key in results[0].files:
        np.testing.assert_array_equal(results[0][key], results[1][key])
    # 2 epochs of 512 examples, counted over both workers.
    assert results[0]["epoch_scored"] == 512
    assert results[0]["backprops"] > 0
    assert not np.allclose(results[0]["kernel"], results[0]["initial_kernel"])


@jax_only
class TestDataParallel:
    @pytest.fixture(autouse=True)
    def data_parallel(self):
        import jax

        devices = jax.devices()
        assert len(devices) == REPLICAS
        keras.distribution.set_distribution(
            keras.distribution.DataParallel(devices=devices))
        yield
        keras.distribution.set_distribution(None)

    def test_trains_with_the_global_batch_scored_together(self, digits):
        check_trains_replicas_alike(digits, contextlib.nullcontext())

    def test_selected_fraction_follows_the_rule(self, digits):
        check_selected_fraction(digits, contextlib.nullcontext())

    def test_stale_selection_matches_one_device(self, digits):
        """Stale selection over the sharded global batch: the same score
        table (each id's loss, probability and epoch) and the same draws as
        on one device. Learning rate 0 keeps the losses equal on both."""
        tf = pytest.importorskip("tensorflow")
        x, y = digits[0][:400], digits[1][:400]

        def train():
            keras.utils.set_random_seed(0)  # The same initial weights.
            model = compile_model(keras_sb.SelectiveBackpropModel(
                *mlp(), beta=1.0, start=0, seed=3), learning_rate=0.0)
            data = keras_sb.data.with_example_ids(
                tf.data.Dataset.from_tensor_slices((x, y))).batch(100)
            history = model.fit(data, epochs=3, verbose=0,
                                callbacks=[keras_sb.StaleSelection(2)])
            state = model.selection_state
            # Each id's loss, probability and epoch scored.
            table = [numpy(column.value) for column in state.score_table]
            return table, state.counters(), history.history

        sharded = train()
        distribution = keras.distribution.distribution()
        keras.distribution.set_distribution(None)
        try:
            one_device = train()
        finally:
            keras.distribution.set_distribution(distribution)
        for column, expected in zip(sharded[0], one_device[0]):
            np.testing.assert_allclose(column, expected, rtol=1e-5)
        # Epochs 0 and 2 are fresh, 1 stale: epoch 2 scored every id last.
        assert set(sharded[0][2].tolist()) == {2}
        assert sharded[1] == one_device[1]
        assert sharded[2]["selected_fraction"] == one_device[2]["selected_fraction"]
        assert 0.3 < sharded[2]["selected_fraction"][1] < 0.7  # The stale epoch.

    def test_backward_batch_is_split_over_devices(self):
        """The queue's backward batch is laid out like input batches (split
        along the batch axis), so each device backpropagates its share."""
        import jax

        from keras_sb.backend import jax as jax_backend

        sharded = jax.jit(lambda batch: jax_backend.shard_batch(batch))(
            (np.zeros((8, 3), "float32"),))
        spec = sharded[0].sharding.spec
        assert spec[0] == "batch"
        assert len(sharded[0].addressable_shards) == REPLICAS
        assert sharded[0].addressable_shards[0].data.shape == (8 // REPLICAS, 3)
