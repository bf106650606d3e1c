import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

# Two CPU devices for the data-parallel tests (tests/test_distributed.py):
# set before TensorFlow or JAX start. Computations without a strategy or
# distribution run on the first device, as before.
REPLICAS = 2
if os.environ["KERAS_BACKEND"] == "jax":
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "")
        + f" --xla_force_host_platform_device_count={REPLICAS}"
    )
else:
    import tensorflow as tf

    tf.config.set_logical_device_configuration(
        tf.config.list_physical_devices("CPU")[0],
        [tf.config.LogicalDeviceConfiguration()] * REPLICAS,
    )

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from keras import ops  # noqa: E402

import keras_sb  # noqa: E402


@pytest.fixture(autouse=True)
def _fresh_keras():
    """Each test starts with a clean Keras session and float32 policy.

    Without the full garbage collection that `clear_session` runs by
    default: it cost up to 0.9 s a test once the heap had grown, most of
    the TensorFlow pass's time. Python's own collector still runs.
    """
    keras.backend.clear_session(free_memory=False)
    keras.config.set_dtype_policy("float32")
    yield
    keras.config.set_dtype_policy("float32")


@pytest.fixture(scope="session")
def digits():
    """scikit-learn's bundled 8x8 digits: (x_train, y_train, x_test, y_test)."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = (data.data / 16.0).astype("float32")
    y = data.target.astype("int32")
    rng = np.random.default_rng(0)
    order = rng.permutation(len(x))
    x, y = x[order], y[order]
    return x[:1400], y[:1400], x[1400:], y[1400:]


def mlp(input_dim=64, classes=10, hidden=32):
    """Inputs and outputs of a small dense classifier."""
    inputs = keras.Input((input_dim,))
    hidden_out = keras.layers.Dense(hidden, activation="relu")(inputs)
    outputs = keras.layers.Dense(classes, activation="softmax")(hidden_out)
    return inputs, outputs


@keras.saving.register_keras_serializable(package="keras_sb_tests")
class TrainingCounter(keras.layers.Layer):
    """Identity on `features`; counts training-mode forward passes per id.

    `counts[i]` is the number of times example `i` went through a
    training-mode forward pass, i.e. was part of a backward step.
    """

    def __init__(self, num_examples, **kwargs):
        super().__init__(**kwargs)
        self.num_examples = num_examples
        # Under a tf.distribute strategy each replica counts its own
        # examples; reading the variable sums the replicas' counts.
        self.counts = keras.Variable(
            initializer="zeros", shape=(num_examples,), trainable=False,
            synchronization="on_read", aggregation="sum", name="counts",
        )
        self._track_variable(self.counts)

    def call(self, features, ids, training=None):
        if training:
            hits = ops.sum(ops.one_hot(ops.cast(ids, "int32"), self.num_examples), 0)
            self.counts.assign(self.counts + hits)
        return features

    def get_config(self):
        return {**super().get_config(), "num_examples": self.num_examples}


def counted_mlp(num_examples, input_dim=64, classes=10):
    """A dense classifier with inputs {"x", "id"} and a TrainingCounter."""
    features = keras.Input((input_dim,), name="x")
    ids = keras.Input((), dtype="int32", name="id")
    counter = TrainingCounter(num_examples, name="counter")
    hidden = keras.layers.Dense(32, activation="relu")(counter(features, ids))
    outputs = keras.layers.Dense(classes, activation="softmax")(hidden)
    return {"x": features, "id": ids}, outputs, counter


class LossThreshold(keras_sb.SelectionStrategy):
    """Selects exactly the examples whose loss is above `threshold`."""

    def __init__(self, threshold):
        self.threshold = threshold

    def probabilities(self, losses, history):
        return ops.cast(losses > self.threshold, "float32")

    def get_config(self):
        return {"threshold": self.threshold}


class SelectNothing(keras_sb.SelectionStrategy):
    def probabilities(self, losses, history):
        return ops.zeros_like(losses)


def compile_model(model, learning_rate=0.05, **kwargs):
    kwargs.setdefault("metrics", ["accuracy"])
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate),
        loss="sparse_categorical_crossentropy",
        **kwargs,
    )
    return model


@keras.saving.register_keras_serializable(package="keras_sb_tests")
class InferenceCounter(keras.layers.Layer):
    """Identity; counts the examples of inference-mode forward passes."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.examples = self.add_weight(shape=(), initializer="zeros",
                                        trainable=False, name="examples")

    def call(self, inputs, training=None):
        if not training:
            self.examples.assign(self.examples + ops.cast(ops.shape(inputs)[0], "float32"))
        return inputs


def frozen_regression(num_examples, features=4):
    """A linear regression with zero weights and inputs {"x", "id"}.

    Trained with learning rate 0 and the mean squared error, the loss of an
    example is exactly `y ** 2`, whatever its (augmented) features: each id
    has a known loss. Counts training passes per id and inference examples.
    """
    x = keras.Input((features,), name="x")
    ids = keras.Input((), dtype="int32", name="id")
    training_counter = TrainingCounter(num_examples, name="counter")
    inference_counter = InferenceCounter(name="inference_counter")
    hidden = inference_counter(training_counter(x, ids))
    outputs = keras.layers.Dense(1, kernel_initializer="zeros")(hidden)
    return {"x": x, "id": ids}, outputs, training_counter, inference_counter


def frozen_model(num_examples, beta=1.0, **options):
    inputs, outputs, training_counter, inference_counter = frozen_regression(num_examples)
    model = keras_sb.SelectiveBackpropModel(
        inputs, outputs, beta=beta, start=0,
        history_size=num_examples, **options)
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")
    return model, training_counter, inference_counter


def check_crops_and_flips(image, augmented, padding):
    """Each augmented image is a window of the zero-padded `image`, flipped
    or not; flips happen half of the time and most offsets occur."""
    size = image.shape[0]
    padded = np.pad(image, ((padding, padding), (padding, padding), (0, 0)))
    windows = {}
    for dy in range(2 * padding + 1):
        for dx in range(2 * padding + 1):
            window = padded[dy:dy + size, dx:dx + size]
            windows[window.tobytes()] = (dy, dx, False)
            windows[window[:, ::-1].tobytes()] = (dy, dx, True)
    seen = [windows[np.asarray(a, image.dtype).tobytes()]
            for a in augmented]  # KeyError if not a window.
    flips = np.mean([flipped for _, _, flipped in seen])
    # Binomial(n, 0.5): 5 standard deviations.
    assert abs(flips - 0.5) < 2.5 / np.sqrt(len(seen))
    offsets = (2 * padding + 1) ** 2
    assert len({(dy, dx) for dy, dx, _ in seen}) > 0.6 * offsets


def regression_data(num_examples, features=4, seed=0):
    """Features and targets for `frozen_model`: the targets in a random
    order, so a loss says nothing about an id."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(num_examples, features)).astype("float32")
    y = rng.permutation(np.linspace(0.1, 3.0, num_examples)).astype("float32")
    return x, y


class StepCounter(keras.callbacks.Callback):
    """Train steps per epoch."""

    def __init__(self):
        super().__init__()
        self.steps = []

    def on_epoch_begin(self, epoch, logs=None):
        self.steps.append(0)

    def on_train_batch_end(self, batch, logs=None):
        self.steps[-1] += 1
