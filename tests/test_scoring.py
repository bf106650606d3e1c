"""Per-example losses come from the loss the user compiled."""

import keras
import numpy as np
import pytest
from keras import ops

from keras_sb import scoring


def numpy(x):
    return ops.convert_to_numpy(x)


def compiled_loss(model, y, y_pred, sample_weight=None):
    """Builds the model's compiled loss and returns Keras's batch value."""
    return float(numpy(model._compile_loss(y, y_pred, sample_weight)))


def single_output_model():
    inputs = keras.Input((4,))
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(inputs))


@pytest.mark.parametrize("loss", [
    "sparse_categorical_crossentropy",
    keras.losses.SparseCategoricalCrossentropy(),
    keras.losses.sparse_categorical_crossentropy,
])
@pytest.mark.parametrize("weighted", [False, True])
def test_single_output_matches_keras(loss, weighted):
    model = single_output_model()
    model.compile(loss=loss)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 4)).astype("float32")
    y = np.array([0, 1, 2, 0, 1, 2])
    weights = rng.random(6).astype("float32") if weighted else None
    y_pred = model(x)
    batch_loss = compiled_loss(model, y, y_pred, weights)
    per_example = numpy(scoring.per_example_loss(model._compile_loss, y, y_pred,
                                                 weights))
    expected = -np.log(numpy(y_pred)[np.arange(6), y])
    if weighted:
        expected = expected * weights
    np.testing.assert_allclose(per_example, expected, rtol=1e-5)
    assert per_example.mean() == pytest.approx(batch_loss, rel=1e-5)


def test_non_batch_axes_are_averaged():
    inputs = keras.Input((5, 2))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    model.compile(loss="mse")
    x = np.random.default_rng(1).normal(size=(3, 5, 2)).astype("float32")
    y = np.zeros((3, 5, 2), "float32")
    y_pred = model(x)
    batch_loss = compiled_loss(model, y, y_pred)
    per_example = numpy(scoring.per_example_loss(model._compile_loss, y, y_pred))
    np.testing.assert_allclose(per_example,
                               (numpy(y_pred) ** 2).mean(axis=(1, 2)), rtol=1e-5)
    assert per_example.mean() == pytest.approx(batch_loss, rel=1e-5)


def test_masked_steps_do_not_count():
    """Padding does not lower an example's loss: masked time steps (a
    `Masking` layer, a loss's `ignore_class`) are left out of its mean, so
    an example scores the same however much it is padded."""
    rng = np.random.default_rng(2)
    steps = rng.normal(size=(4, 3, 2)).astype("float32")  # 4 sequences, 3 steps.
    labels = rng.integers(0, 3, (4, 3))
    dense = keras.layers.Dense(3, activation="softmax")

    def model(length):
        inputs = keras.Input((length, 2))
        outputs = dense(keras.layers.Masking(0.0)(inputs))
        model = keras.Model(inputs, outputs)
        model.compile(loss="sparse_categorical_crossentropy")
        return model

    short, padded = model(3), model(8)
    x_padded = np.concatenate([steps, np.zeros((4, 5, 2), "float32")], axis=1)
    y_padded = np.concatenate([labels, np.zeros((4, 5), labels.dtype)], axis=1)
    compiled_loss(short, labels, short(steps))  # Builds the compiled losses.
    compiled_loss(padded, y_padded, padded(x_padded))
    unpadded = scoring.per_example_loss(short._compile_loss, labels, short(steps))
    with_padding = scoring.per_example_loss(padded._compile_loss, y_padded,
                                            padded(x_padded))
    np.testing.assert_allclose(numpy(with_padding), numpy(unpadded), rtol=1e-5)

    # `ignore_class`: the mean over the other steps.
    inputs = keras.Input((3, 2))
    ignoring = keras.Model(inputs, dense(inputs))
    ignoring.compile(loss=keras.losses.SparseCategoricalCrossentropy(ignore_class=-1))
    y_pred = ignoring(steps)
    ignored = labels.copy()
    ignored[:, 1:] = -1  # One step left of each example.
    compiled_loss(ignoring, ignored, y_pred)
    per_example = scoring.per_example_loss(ignoring._compile_loss, ignored, y_pred)
    expected = -np.log(numpy(y_pred)[np.arange(4), 0, labels[:, 0]])
    np.testing.assert_allclose(numpy(per_example), expected, rtol=1e-5)


def test_multi_output_sums_weighted_losses_and_leaves_trackers_alone():
    inputs = keras.Input((4,))
    a = keras.layers.Dense(3, activation="softmax", name="a")(inputs)
    b = keras.layers.Dense(1, name="b")(inputs)
    model = keras.Model(inputs, {"a": a, "b": b})
    model.compile(loss={"a": "sparse_categorical_crossentropy", "b": "mse"},
                  loss_weights={"a": 1.0, "b": 0.5})
    rng = np.random.default_rng(2)
    x = rng.normal(size=(5, 4)).astype("float32")
    y = {"a": np.array([0, 1, 2, 1, 0]), "b": rng.normal(size=(5, 1)).astype("float32")}
    y_pred = model(x)
    batch_loss = compiled_loss(model, y, y_pred)
    trackers = [numpy(v.value) for m in model._compile_loss.metrics for v in m.variables]
    per_example = numpy(scoring.per_example_loss(model._compile_loss, y, y_pred))
    expected = (-np.log(numpy(y_pred["a"])[np.arange(5), y["a"]])
                + 0.5 * ((numpy(y_pred["b"]) - y["b"]) ** 2)[:, 0])
    np.testing.assert_allclose(per_example, expected, rtol=1e-5)
    assert per_example.mean() == pytest.approx(batch_loss, rel=1e-5)
    after = [numpy(v.value) for m in model._compile_loss.metrics for v in m.variables]
    for before_value, after_value in zip(trackers, after):
        np.testing.assert_array_equal(before_value, after_value)


class BatchMeanLoss(keras.losses.Loss):
    def call(self, y_true, y_pred):
        return ops.mean(ops.square(y_true - y_pred))


def test_loss_reducing_the_batch_gets_a_clear_error():
    model = single_output_model()
    model.compile(loss=BatchMeanLoss())
    y_pred = model(np.ones((2, 4), "float32"))
    compiled_loss(model, np.ones((2, 3)), y_pred)
    with pytest.raises(scoring.PerExampleLossError, match="one value per example"):
        scoring.per_example_loss(model._compile_loss, np.ones((2, 3)), y_pred)
    # The loss's own reduction was restored.
    assert model._compile_loss._flat_losses[0].loss.reduction == "sum_over_batch_size"


def test_no_loss_gets_a_clear_error():
    with pytest.raises(scoring.PerExampleLossError, match="pass `loss=`"):
        scoring.per_example_loss(None, None, None)
