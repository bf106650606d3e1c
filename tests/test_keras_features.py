"""The usual Keras workflow keeps working with SelectiveBackpropModel."""

import os
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import TrainingCounter
from conftest import compile_model
from conftest import counted_mlp
from conftest import mlp
from keras import ops

import keras_sb


def numpy(x):
    return ops.convert_to_numpy(x)


def selective(**options):
    options.setdefault("start", 0)
    options.setdefault("seed", 0)
    return keras_sb.SelectiveBackpropModel(*mlp(), **options)


def dense_weights(model):
    return [numpy(v.value) for v in model.trainable_weights]


class TestWeights:
    def test_weights_are_the_networks(self, digits):
        """The selection state (history, queue, counters, seed) is training
        state like metric variables: `get_weights` / `set_weights` and the
        parameter count are those of the network, so weights move between
        a trained model, a new one and the plain Keras model."""
        x, y, _, _ = digits
        inputs, outputs = mlp()
        plain = keras.Model(inputs, outputs)
        model = compile_model(selective(beta=1.0))
        model.fit(x, y, batch_size=100, epochs=1, verbose=0)
        assert model.selection_state.queue  # Created by `fit`.
        assert len(model.get_weights()) == len(plain.get_weights()) == 4
        assert model.count_params() == plain.count_params()
        assert {id(v) for v in model.selection_state.variables} <= {
            id(v) for v in model.non_trainable_variables}

        fresh = selective(beta=1.0)
        fresh.set_weights(model.get_weights())
        plain.set_weights(model.get_weights())
        np.testing.assert_allclose(numpy(fresh.predict(x, verbose=0)),
                                   numpy(model.predict(x, verbose=0)))
        np.testing.assert_allclose(numpy(plain.predict(x, verbose=0)),
                                   numpy(model.predict(x, verbose=0)))


    @pytest.mark.parametrize("extension", [".weights.h5", ".keras"])
    def test_weights_saved_by_the_plain_model_load(self, digits, tmp_path,
                                                   extension):
        """Pretrained with plain Keras, fine-tuned with Selective-Backprop:
        the plain model's file has no selection state, which stays new."""
        x, y, _, _ = digits
        plain = compile_model(keras.Model(*mlp()))
        plain.fit(x, y, batch_size=100, epochs=1, verbose=0)
        path = os.path.join(tmp_path, "plain" + extension)
        plain.save_weights(path) if extension == ".weights.h5" else plain.save(path)
        model = compile_model(selective(beta=1.0))
        model.load_weights(path)
        np.testing.assert_allclose(numpy(model.predict(x, verbose=0)),
                                   numpy(plain.predict(x, verbose=0)), atol=1e-6)
        assert model.selection_state.counters()["backprops"] == 0
        model.fit(x, y, batch_size=100, epochs=1, verbose=0)
        assert model.selection_state.counters()["backprops"] > 0


class TestSaving:
    def test_keras_file_round_trip_continues_training(self, digits, tmp_path):
        """Config, weights, optimizer and the whole selection state (history,
        queue, counters, random seed) survive saving: the loaded model trains
        on exactly as the original does."""
        x, y, _, _ = digits
        model = compile_model(selective(beta=2.0, history_size=300,
                                        backprop_batch_size=48, start="1ep"))
        model.fit(x, y, batch_size=64, epochs=2, verbose=0, shuffle=False)
        assert model.selection_state.counters()["queue_size"] > 0
        path = os.path.join(tmp_path, "model.keras")
        model.save(path)
        loaded = keras.models.load_model(path)

        assert type(loaded) is type(model)
        assert loaded.get_config()["strategy"] == model.get_config()["strategy"]
        assert (loaded.history_size, loaded.backprop_batch_size, loaded.start) == (
            300, 48, "1ep")
        assert loaded.selection_state.counters() == model.selection_state.counters()
        for name in ("loss_history",):
            np.testing.assert_array_equal(
                numpy(getattr(loaded.selection_state, name).value),
                numpy(getattr(model.selection_state, name).value))
        for original, restored in zip(model.selection_state.queue,
                                      loaded.selection_state.queue):
            np.testing.assert_array_equal(numpy(original.value),
                                          numpy(restored.value))

        model.fit(x, y, batch_size=64, epochs=1, verbose=0, shuffle=False)
        loaded.fit(x, y, batch_size=64, epochs=1, verbose=0, shuffle=False)
        assert loaded.selection_state.counters() == model.selection_state.counters()
        for original, restored in zip(dense_weights(model), dense_weights(loaded)):
            np.testing.assert_allclose(original, restored, rtol=1e-5, atol=1e-6)

    def test_saving_before_training(self, tmp_path):
        model = selective(strategy=keras_sb.UniformSubset(0.5), end=0.5)
        path = os.path.join(tmp_path, "fresh.keras")
        model.save(path)
        loaded = keras.models.load_model(path)
        assert isinstance(loaded.strategy, keras_sb.UniformSubset)
        assert loaded.end == 0.5 and loaded.selection_state.queue == []

    def test_backup_and_restore_resumes(self, digits, tmp_path):
        x, y, _, _ = digits

        class Interrupt(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                if epoch == 1:
                    raise RuntimeError("interrupted")

        backup = os.path.join(tmp_path, "backup")
        model = compile_model(selective(beta=2.0, start="1ep"))
        with pytest.raises(RuntimeError, match="interrupted"):
            model.fit(x, y, batch_size=100, epochs=4, verbose=0, callbacks=[
                keras.callbacks.BackupAndRestore(backup), Interrupt()])
        saved = model.selection_state.counters()

        resumed = compile_model(selective(beta=2.0, start="1ep"))
        history = resumed.fit(x, y, batch_size=100, epochs=4, verbose=0,
                              callbacks=[keras.callbacks.BackupAndRestore(backup)])
        assert len(history.history["loss"]) == 2  # Epochs 3 and 4 only.
        # Priming is not repeated after the restore.
        assert max(history.history["selected_fraction"]) < 1.0
        counters = resumed.selection_state.counters()
        assert counters["epochs_completed"] == 4
        assert counters["scored_batches"] == saved["scored_batches"] + 28


class TestPrecisionAndCompilation:
    @pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
    def test_mixed_precision(self, digits, policy):
        x, y, _, _ = digits
        keras.config.set_dtype_policy(policy)
        model = compile_model(selective(beta=1.0))
        history = model.fit(x, y, batch_size=100, epochs=2, verbose=0)
        assert np.isfinite(history.history["loss"]).all()
        assert history.history["loss"][1] < history.history["loss"][0]
        assert model.selection_state.counters()["backprops"] > 0
        if policy == "mixed_float16":
            assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)

    @pytest.mark.parametrize("jit_compile", [True, "auto"])
    def test_jit_compile(self, digits, jit_compile):
        x, y, _, _ = digits
        model = compile_model(selective(beta=1.0), jit_compile=jit_compile)
        history = model.fit(x, y, batch_size=100, epochs=2, verbose=0)
        state = model.selection_state.counters()
        assert history.history["loss"][1] < history.history["loss"][0]
        assert state["selected_total"] == state["backprops"] + state["queue_size"]
        assert int(model.optimizer.iterations) * 100 == state["backprops"] > 0

    def test_run_eagerly_trains_as_the_compiled_step(self, digits):
        """`run_eagerly=True` (debugging) runs the same algorithm: same
        selections, same weights."""
        x, y, _, _ = digits
        results = []
        for run_eagerly in (False, True):
            keras.utils.set_random_seed(0)
            model = compile_model(selective(beta=1.0), run_eagerly=run_eagerly)
            history = model.fit(x[:600], y[:600], batch_size=100, epochs=2,
                                verbose=0, shuffle=False)
            results.append((history.history, dense_weights(model)))
        (compiled_logs, compiled), (eager_logs, eager) = results
        assert eager_logs["backprops"] == compiled_logs["backprops"]
        assert eager_logs["backprops"][-1] > 0
        for with_compiled, with_eager in zip(compiled, eager):
            np.testing.assert_allclose(with_compiled, with_eager, atol=1e-5)

    def test_steps_per_execution_and_smaller_last_batch(self, digits):
        x, y, _, _ = digits
        model = compile_model(selective(beta=2.0), steps_per_execution=4)
        model.fit(x[:1250], y[:1250], batch_size=100, epochs=2, verbose=0)
        state = model.selection_state.counters()
        assert state["scored_batches"] == 2 * 13
        assert state["selected_total"] == state["backprops"] + state["queue_size"]


class TestData:
    def test_tf_data_batch_size_is_the_default_backprop_batch(self, digits):
        x, y, _, _ = digits
        dataset = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(500).batch(40)
        model = compile_model(selective(beta=1.0))
        model.fit(dataset, epochs=1, verbose=0)
        assert model.backprop_batch_size == 40
        assert model.selection_state.counters()["backprops"] % 40 == 0

    def test_python_generator_batch_size_is_the_default_backprop_batch(self, digits):
        """A generator's first batch tells the batch size (TensorFlow's
        dataset of a generator does not know it) and is still trained on."""
        x, y, _, _ = digits

        def batches():
            for start in range(0, 320, 32):
                yield x[start:start + 32], y[start:start + 32]

        model = compile_model(selective(beta=1.0))
        model.fit(batches(), epochs=1, verbose=0)
        assert model.backprop_batch_size == 32
        counters = model.selection_state.counters()
        assert (counters["scored_batches"], counters["epoch_scored"]) == (10, 320)

    def test_data_of_unknown_length_trains_as_the_same_data_of_known_length(
            self, digits):
        """Keras reads data of unknown length until a call of the train
        function finds its end. TensorFlow may start a called function before
        its inputs exist; that last call must not count a scored batch or
        advance the random draws."""
        x, y, _, _ = digits
        known = tf.data.Dataset.from_tensor_slices((x[:320], y[:320])).batch(32)
        unknown = known.filter(lambda *_: True)
        assert unknown.cardinality() == tf.data.UNKNOWN_CARDINALITY
        weights = []
        for dataset in (known, unknown):
            keras.utils.set_random_seed(0)
            model = compile_model(selective(beta=1.0))
            model.fit(dataset, epochs=3, verbose=0)
            assert model.selection_state.counters()["scored_batches"] == 30
            weights.append(dense_weights(model))
        for with_known, with_unknown in zip(*weights):
            np.testing.assert_array_equal(with_known, with_unknown)

    @pytest.mark.parametrize("source", ["arrays", "tf.data"])
    def test_numpy_default_dtypes(self, digits, source):
        """NumPy's default int64 labels and float64 inputs and sample weights
        train as in plain Keras. On JAX (no 64-bit mode) the compiled step
        sees them as int32 and float32, and the queue must hold what it
        sees."""
        x, y, _, _ = digits
        x, y, weights = x.astype("float64"), y.astype("int64"), np.ones(len(x))
        model = compile_model(selective(beta=1.0))
        if source == "arrays":
            model.fit(x, y, sample_weight=weights, batch_size=64, epochs=2,
                      verbose=0)
        else:
            model.fit(tf.data.Dataset.from_tensor_slices((x, y, weights)).batch(64),
                      epochs=2, verbose=0)
        backprops = model.selection_state.counters()["backprops"]
        assert backprops >= 0.4 * len(x)

    @pytest.mark.parametrize("source", ["tf.data", "ArrayPipeline"])
    def test_class_weight_on_data_with_example_ids(self, digits, source):
        """Keras's data adapters cannot apply `class_weight` to batches with
        ids (it was ignored, or failed); the step applies it: training is the
        same as on the data without ids."""
        x, y, _, _ = digits
        x, y = x[:640], y[:640]
        class_weight = {c: {3: 0.0, 5: 4.0}.get(c, 1.0) for c in range(10)}

        def data(with_ids):
            if source == "ArrayPipeline":
                images = (x.reshape(-1, 8, 8, 1) * 15).astype("uint8")
                return keras_sb.data.ArrayPipeline(
                    images, y, 64, augment=False, shuffle=False,
                    example_ids=with_ids, workers=1)
            dataset = tf.data.Dataset.from_tensor_slices((x.reshape(-1, 8, 8, 1), y))
            if with_ids:
                dataset = keras_sb.data.with_example_ids(dataset)
            return dataset.batch(64)

        results = []
        for with_ids in (False, True, True):
            weights = None if len(results) == 2 else class_weight
            keras.utils.set_random_seed(0)
            network = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                                        keras.layers.Dense(10, activation="softmax")])
            model = compile_model(keras_sb.SelectiveBackpropModel.from_model(
                network, beta=1.0, start=0, seed=0))
            history = model.fit(data(with_ids), epochs=2, verbose=0,
                                class_weight=weights)
            results.append((history.history["loss"], dense_weights(model)))
        (loss, weights), (loss_ids, weights_ids), (loss_unweighted, _) = results
        np.testing.assert_allclose(loss_ids, loss, rtol=1e-5)
        for plain_data, data_with_ids in zip(weights, weights_ids):
            np.testing.assert_allclose(data_with_ids, plain_data, atol=1e-5)
        assert abs(loss_ids[0] - loss_unweighted[0]) > 0.1

    def test_class_weight_to_sample_weights(self):
        """Sparse, `(batch, 1)` and one-hot labels give the same weights;
        classes without a weight get 1, as in Keras."""
        labels = np.array([0, 2, 1, 4, 2])
        class_weight = {0: 0.5, 2: 3.0}
        expected = [0.5, 3.0, 1.0, 1.0, 3.0]
        for y in (labels, labels[:, None].astype("float32"),
                  keras.utils.to_categorical(labels, 5)):
            weights = keras_sb.data.class_weight_to_sample_weights(
                ops.convert_to_tensor(y), class_weight)
            np.testing.assert_array_equal(numpy(weights), expected)

    def test_class_weight_zero_is_never_trained(self, digits):
        """Per-example losses include class weights: a class of weight 0 has
        the lowest loss and is never selected."""
        x, y, _, _ = digits
        inputs, outputs, counter = counted_mlp(len(x))
        model = compile_model(keras_sb.SelectiveBackpropModel(
            inputs, outputs, beta=1.0, start=0, seed=0))
        weights = {c: 1.0 for c in range(10)}
        weights[3] = 0.0
        model.fit({"x": x, "id": np.arange(len(x), dtype="int32")}, y,
                  batch_size=100, epochs=2, verbose=0, class_weight=weights)
        counts = numpy(counter.counts.value)
        assert counts[y != 3].sum() > 0
        assert counts[y == 3].sum() == 0

    def test_sample_weight(self, digits):
        x, y, _, _ = digits
        model = compile_model(selective(beta=1.0))
        sample_weight = np.where(y < 5, 1.0, 2.0).astype("float32")
        model.fit(x, y, sample_weight=sample_weight, batch_size=100, epochs=1,
                  verbose=0)
        assert model.selection_state.counters()["backprops"] > 0

    def test_new_data_structure_rebuilds_the_queue(self, digits):
        x, y, _, _ = digits
        model = compile_model(selective(beta=1.0, backprop_batch_size=64))
        model.fit(x[:100], y[:100], batch_size=50, epochs=1, verbose=0)
        assert model.selection_state.counters()["queue_size"] > 0
        with pytest.warns(UserWarning, match="discarded"):
            model.fit(x, y, sample_weight=np.ones(len(x)), batch_size=50,
                      epochs=1, verbose=0)
        assert len(model.selection_state.queue) == 3

    def test_train_on_batch(self, digits):
        x, y, _, _ = digits
        model = compile_model(selective(beta=1.0))
        logs = model.train_on_batch(x[:64], y[:64], return_dict=True)
        assert {"loss", "accuracy", "selected_fraction", "backprops"} <= set(logs)
        assert model.backprop_batch_size == 64

    def test_multi_output(self, digits):
        x, y, _, _ = digits
        inputs = keras.Input((64,))
        hidden = keras.layers.Dense(32, activation="relu")(inputs)
        digit = keras.layers.Dense(10, activation="softmax", name="digit")(hidden)
        parity = keras.layers.Dense(1, activation="sigmoid", name="parity")(hidden)
        model = keras_sb.SelectiveBackpropModel(
            inputs, {"digit": digit, "parity": parity}, beta=1.0, start=0)
        model.compile(optimizer=keras.optimizers.SGD(0.0),
                      loss={"digit": "sparse_categorical_crossentropy",
                            "parity": "binary_crossentropy"},
                      loss_weights={"digit": 1.0, "parity": 0.5})
        targets = {"digit": y, "parity": (y % 2).astype("float32")[:, None]}
        history = model.fit(x, targets, batch_size=100, epochs=1, verbose=0,
                            shuffle=False)
        evaluated = model.evaluate(x, targets, batch_size=100, verbose=0,
                                   return_dict=True)
        # Per-output losses in the logs are those of the scoring pass over
        # all examples, untouched by the backward steps.
        for name in ("loss", "digit_loss", "parity_loss"):
            assert history.history[name][0] == pytest.approx(evaluated[name],
                                                             rel=1e-5)
        assert model.selection_state.counters()["backprops"] > 0


def regression_model(**options):
    inputs = keras.Input((64,))
    outputs = keras.layers.Dense(1)(inputs)
    model = keras_sb.SelectiveBackpropModel(inputs, outputs, start=0, seed=0,
                                            **options)
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    return model


class TestNonFiniteLosses:
    def test_nan_losses_stay_out_of_the_history(self, digits):
        x, y, _, _ = digits
        targets = y[:300].astype("float32")
        targets[150:153] = np.nan  # Three examples of the second batch.
        # No backward step runs (the backprop batch is never full), so only
        # the three targets give non-finite losses.
        model = regression_model(beta=1.0, backprop_batch_size=1000)
        model.fit(x[:300], targets, batch_size=100, epochs=1, verbose=0,
                  shuffle=False)
        history = numpy(model.selection_state.loss_history.value)
        assert np.isfinite(history).sum() == 297
        assert int(model.selection_state.history_position.value) == 297
        # Examples with a non-finite loss are selected, as plain Keras would
        # train on them.
        assert model.selection_state.counters()["queue_size"] >= 3

    def test_reset_queue_discards_the_examples_of_a_stopped_fit(self, digits):
        """NaN examples are selected and may still be queued when
        `TerminateOnNaN` stops the fit; `reset_queue` drops them, so that
        training from restored weights on clean data stays finite."""
        x, y, _, _ = digits
        model = regression_model(beta=1.0, backprop_batch_size=64)
        good = model.get_weights()
        bad = x.copy()
        bad[[3, 5]] = np.nan
        model.fit(bad[:48], y[:48], batch_size=16, verbose=0,
                  callbacks=[keras.callbacks.TerminateOnNaN()])
        queued = model.selection_state.counters()["queue_size"]
        assert queued > 0
        assert model.reset_queue() == queued
        assert model.selection_state.counters()["queue_size"] == 0
        model.set_weights(good)
        history = model.fit(x, y, batch_size=16, epochs=1, verbose=0)
        assert np.isfinite(history.history["loss"]).all()
        assert all(np.isfinite(w).all() for w in model.get_weights())

    def test_terminate_on_nan_still_works(self, digits):
        x, y, _, _ = digits
        targets = y.astype("float32")
        targets[250] = np.nan
        model = regression_model(beta=1.0)
        history = model.fit(
            x, targets, batch_size=100, epochs=3, verbose=0, shuffle=False,
            callbacks=[keras.callbacks.TerminateOnNaN()])
        assert model.selection_state.counters()["scored_batches"] == 3
        assert np.isnan(history.history["loss"][0])


class TestBadInput:
    def test_history_must_hold_a_batch(self, digits):
        """Each batch's losses join the history before they are ranked: a
        smaller history would rank most of them against others only."""
        x, y, _, _ = digits
        model = compile_model(selective(beta=1.0, history_size=50))
        with pytest.raises(ValueError, match="at least the batch size .100.. "
                                             "Received: history_size=50"):
            model.fit(x, y, batch_size=100, verbose=0)
        model.fit(x, y, batch_size=50, verbose=0)

    def test_a_fit_without_a_backward_step_warns(self, digits):
        """A backprop batch larger than what a fit selects: nothing trains,
        and `fit` says so."""
        x, y, _, _ = digits
        model = compile_model(selective(beta=1.0, backprop_batch_size=1024))
        with pytest.warns(UserWarning, match="ran no backward step"):
            model.fit(x[:500], y[:500], batch_size=100, epochs=1, verbose=0)
        assert model.selection_state.counters()["backprops"] == 0
        with warnings.catch_warnings():
            warnings.filterwarnings("error", message=".*no backward step")
            model.fit(x, y, batch_size=100, epochs=2, verbose=0)
        assert model.selection_state.counters()["backprops"] == 1024

    def test_loss_without_per_example_values(self, digits):
        x, y, _, _ = digits

        class MeanSquare(keras.losses.Loss):
            def call(self, y_true, y_pred):
                return ops.mean(ops.square(y_true - y_pred))

        model = selective()
        model.compile(optimizer="sgd", loss=MeanSquare())
        with pytest.raises(ValueError, match="one value per example"):
            model.fit(x, keras.utils.to_categorical(y, 10), verbose=0)

    def test_variable_length_inputs(self):
        inputs = keras.Input((None, 3))
        outputs = keras.layers.Dense(1)(keras.layers.GlobalAveragePooling1D()(inputs))
        model = keras_sb.SelectiveBackpropModel(inputs, outputs, start=0)
        model.compile(optimizer="sgd", loss="mse")

        def sequences():
            for length in (2, 5, 3, 4):
                yield np.ones((length, 3), "float32"), np.ones((1,), "float32")

        dataset = tf.data.Dataset.from_generator(sequences, output_signature=(
            tf.TensorSpec((None, 3), "float32"), tf.TensorSpec((1,), "float32")))
        dataset = dataset.padded_batch(2)
        with pytest.raises(ValueError, match="Pad variable-length data"):
            model.fit(dataset, verbose=0)


    def test_sparse_data_get_a_clear_error(self):
        inputs = keras.Input((8,), sparse=True)
        model = keras_sb.SelectiveBackpropModel(
            inputs, keras.layers.Dense(3, activation="softmax")(inputs), start=0)
        model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
        x = np.eye(32, 8, dtype="float32")
        y = np.arange(32) % 3
        if keras.backend.backend() == "tensorflow":
            data = {"x": tf.data.Dataset.from_tensor_slices(
                (tf.sparse.from_dense(x), y)).batch(8)}
        else:
            scipy_sparse = pytest.importorskip("scipy.sparse")
            data = {"x": scipy_sparse.csr_matrix(x), "y": y, "batch_size": 8}
        with pytest.raises(ValueError, match="does not take sparse inputs"):
            model.fit(**data, verbose=0)

    @pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                        reason="string tensors are TensorFlow's")
    def test_string_inputs_get_a_clear_error(self):
        text = keras.Input((1,), dtype="string")
        ids = keras.layers.StringLookup(vocabulary=["a", "b"])(text)
        model = keras_sb.SelectiveBackpropModel(
            text, keras.layers.Dense(3, activation="softmax")(
                keras.layers.Flatten()(ids)), start=0)
        model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
        data = tf.data.Dataset.from_tensor_slices(
            (np.array([["a"], ["b"]] * 8), np.arange(16) % 3)).batch(4)
        with pytest.raises(ValueError, match="cannot queue strings"):
            model.fit(data, verbose=0)


class TestSchedule:
    def test_priming_epoch_then_selection_then_end(self, digits):
        x, y, _, _ = digits
        traces = []

        class Counted(keras_sb.FunctionalSelectiveBackpropModel):
            def train_step(self, *args):  # (data), or (state, data) on JAX.
                traces.append(1)  # Runs once per trace of the step.
                return super().train_step(*args)

        class CountTraces(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                traces_at_epoch_end.append(len(traces))

        traces_at_epoch_end = []
        # Learning rate 0: losses that do not drift, so beta = 2 selects 1/3.
        model = compile_model(Counted(*mlp(), beta=2.0, start="1ep", end=0.75,
                                      seed=0), learning_rate=0.0)
        history = model.fit(x, y, batch_size=100, epochs=4, verbose=0,
                            callbacks=[CountTraces()])
        fractions = history.history["selected_fraction"]
        assert fractions[0] == 1.0  # Priming: every example.
        # 1400 draws an epoch: sigma = sqrt((1/3 - 1/5) / 1400) = 0.0098;
        # 5 sigma.
        for fraction in fractions[1:3]:
            assert abs(fraction - 1 / 3) < 0.049
        assert fractions[3] == 1.0  # After `end`.
        # Switching selection on and off never retraced the step.
        assert traces and len(set(traces_at_epoch_end)) == 1

    def test_start_in_steps(self, digits):
        x, y, _, _ = digits
        model = compile_model(selective(beta=3.0, start=7))
        history = model.fit(x, y, batch_size=100, epochs=1, verbose=0)
        # 7 of 14 batches fully selected, then about a quarter.
        assert 0.5 < history.history["selected_fraction"][0] < 0.75


def test_trainingcounter_helper_counts_only_training_calls():
    counter = TrainingCounter(3)
    counter(np.ones((2, 1)), np.array([0, 2]), training=False)
    counter(np.ones((2, 1)), np.array([0, 2]), training=True)
    assert numpy(counter.counts.value).tolist() == [1.0, 0.0, 1.0]
