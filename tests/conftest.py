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
