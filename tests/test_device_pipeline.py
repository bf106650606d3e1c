"""`DevicePipeline`: `ArrayPipeline`'s batches, made on the device."""

import keras
import numpy as np
import pytest
from conftest import check_crops_and_flips
from conftest import compile_model
from conftest import frozen_model

import keras_sb
from keras_sb import data
from keras_sb.data import device_pipeline


numpy = keras.ops.convert_to_numpy


def images_and_labels(n=50, size=6, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, size, size + 2, 3), dtype="uint8")
    return images, rng.integers(0, 3, n).astype("int32")


def as_numpy(batch):
    return keras.tree.map_structure(numpy, batch)


def assert_same_batches(first, second, epochs=2):
    """Both pipelines give equal batches, epoch after epoch."""
    for _ in range(epochs):
        assert len(first) == len(second)
        for index in range(len(first)):
            keras.tree.map_structure(np.testing.assert_array_equal,
                                     as_numpy(first[index]),
                                     as_numpy(second[index]))
        first.on_epoch_end()
        second.on_epoch_end()


@pytest.mark.parametrize("augment,shuffle", [(True, True), (False, False)])
def test_same_batches_as_array_pipeline(augment, shuffle):
    """Same order, crops, flips, scaling and ids as `ArrayPipeline` (whose
    crop-and-flip distribution `test_array_pipeline` checks)."""
    images, labels = images_and_labels()
    kwargs = dict(augment=augment, shuffle=shuffle, seed=3, example_ids=True)
    assert_same_batches(data.ArrayPipeline(images, labels, 16, **kwargs),
                        data.DevicePipeline(images, labels, 16, **kwargs))


def test_each_example_once_per_epoch_on_the_device():
    images, labels = images_and_labels(n=70)
    pipeline = data.DevicePipeline(images, labels, 32, seed=1,
                                   example_ids=True)
    assert keras_sb.data.count_examples(pipeline) == 70
    orders = []
    for _ in range(2):
        batches = [pipeline[i] for i in range(len(pipeline))]
        assert [len(numpy(b["example_id"])) for b in batches] == [32, 32, 6]
        ids = np.concatenate([numpy(b["example_id"]) for b in batches])
        assert sorted(ids) == list(range(70))
        x, y = batches[0]["data"]
        assert keras.backend.standardize_dtype(x.dtype) == "float32"
        np.testing.assert_array_equal(numpy(y), labels[numpy(
            batches[0]["example_id"])])
        orders.append(ids)
        pipeline.on_epoch_end()
    assert (orders[0] != orders[1]).any()


def test_crop_flip_gives_windows_of_the_padded_image_half_flipped():
    image = np.arange(1, 8 * 8 + 1, dtype="int32").reshape(8, 8, 1)
    rng = np.random.default_rng(0)
    offsets, flip = data.array_pipeline.crop_flip_draws(rng, 400, 2)
    crops = device_pipeline.crop_flip(
        keras.ops.convert_to_tensor(np.repeat(image[None], 400, axis=0)),
        keras.ops.convert_to_tensor(offsets.astype("int32")),
        keras.ops.convert_to_tensor(flip), padding=2)
    check_crops_and_flips(image, numpy(crops), padding=2)


def test_stale_epochs_draw_and_pad_like_array_pipeline():
    images = np.arange(100, dtype="uint8").reshape(100, 1, 1, 1) * np.ones(
        (1, 4, 4, 3), "uint8")
    model, _, _ = frozen_model(100)
    pipelines = [cls(images, np.arange(100), 32, seed=0, stale_model=model)
                 for cls in (data.ArrayPipeline, data.DevicePipeline)]
    for pipeline in pipelines:
        pipeline.stale_filter.begin_epoch(
            True, epoch=1, probabilities=np.tile([0.0, 1.0], 50))
    device = pipelines[1]
    assert len(device) == 2
    last = as_numpy(device[1])
    padding = last["example_id"] == data.PADDING_ID
    assert padding.sum() == 14  # 50 kept rows fill 2 batches of 32.
    assert (last["data"][0][padding] == 0).all()
    assert_same_batches(*pipelines, epochs=1)


@pytest.mark.parametrize("callback", ["stale", "infobatch", None])
def test_fit_matches_array_pipeline(callback):
    """Training on either pipeline gives the same selections and weights."""
    images, labels = images_and_labels(n=96, size=4)
    results = []
    for cls in (data.ArrayPipeline, data.DevicePipeline):
        keras.utils.set_random_seed(0)
        inputs = keras.Input((4, 6, 3))
        outputs = keras.layers.Dense(3, activation="softmax")(
            keras.layers.Flatten()(inputs))
        model = compile_model(keras_sb.SelectiveBackpropModel(
            inputs, outputs, beta=1.0, seed=0, backprop_batch_size=8))
        callbacks = {"stale": [keras_sb.StaleSelection(staleness=2)],
                     "infobatch": [keras_sb.InfoBatch(num_examples=96)],
                     None: []}[callback]
        pipeline = cls(images, labels, 16, seed=0,
                       stale_model=model if callback else None)
        history = model.fit(pipeline, epochs=4, verbose=0, shuffle=False,
                            callbacks=callbacks)
        results.append((history.history, model.get_weights()))
    (array_history, array_weights), (device_history, device_weights) = results
    assert array_history["backprops"] == device_history["backprops"]
    fraction = ("kept_fraction" if callback == "infobatch"
                else "selected_fraction")
    assert array_history[fraction] == device_history[fraction]
    for array_weight, device_weight in zip(array_weights, device_weights):
        np.testing.assert_allclose(array_weight, device_weight, rtol=1e-5,
                                   atol=1e-6)


def test_steps_per_execution_and_evaluation():
    images, labels = images_and_labels(n=40, size=4)
    inputs = keras.Input((4, 6, 3))
    outputs = keras.layers.Dense(3, activation="softmax")(
        keras.layers.Flatten()(inputs))
    model = compile_model(keras_sb.SelectiveBackpropModel(
        inputs, outputs, beta=1.0, seed=0), steps_per_execution=3)
    history = model.fit(data.DevicePipeline(images, labels, 8, seed=0),
                        epochs=2, verbose=0,
                        validation_data=data.DevicePipeline(
                            images, labels, 16, augment=False, shuffle=False))
    assert history.history["backprops"][-1] > 0
    assert len(history.history["val_loss"]) == 2


def test_bad_arguments():
    images, labels = images_and_labels(n=4)
    with pytest.raises(ValueError, match="uint8"):
        data.DevicePipeline(images.astype("float32"), labels, 2)
    with pytest.raises(ValueError, match="batch_size"):
        data.DevicePipeline(images, labels, 0)
    with pytest.raises(ValueError, match="padding=-1"):
        data.DevicePipeline(images, labels, 2, padding=-1)
    with pytest.raises(ValueError, match="labels of shape"):
        data.DevicePipeline(images, labels[:3], 2)
    with pytest.raises(IndexError):
        data.DevicePipeline(images, labels, 2)[2]
