"""Training of the compared methods: schedule, pipelines, `train_one`."""

import warnings

import numpy as np
import pytest

import keras_sb
from keras_sb import benchmark
from keras_sb.benchmark import training


def test_cosine_learning_rate_follows_the_epoch():
    schedule = benchmark.cosine_learning_rate(0.1, epochs=4)
    assert [round(schedule(e), 6) for e in range(4)] == [
        0.1, round(0.05 * (1 + 2 ** -0.5), 6), 0.05,
        round(0.05 * (1 - 2 ** -0.5), 6)]


@pytest.mark.parametrize("flags, augmented", [([], True), (["--no-augment"], False)])
def test_no_augment_trains_on_the_images_as_they_are(flags, augmented):
    """`--no-augment` reaches the training batches: each batch holds the
    stored images, scaled, and none cropped or flipped."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (64, 8, 8, 3), dtype="uint8")
    labels = np.arange(64) % 10
    args = benchmark.parse_args(["--seeds", "3", "--batch-size", "16", *flags])
    config = {"batch_size": args.batch_size, "seeds": args.seeds,
              "augment": args.augment}
    batches = benchmark.training_batches((images, labels), config)
    stored = {image.tobytes() for image in images}
    seen = [np.round(image * 255).astype("uint8").tobytes()
            for index in range(len(batches))
            for image in np.asarray(batches[index][0])]
    assert len(seen) == 64
    unchanged = sum(image in stored for image in seen)
    if augmented:  # At most the few left as they were by the crop and flip.
        assert unchanged < 32
    else:
        assert unchanged == 64


def test_training_passes_no_shuffle_for_fit_to_ignore():
    """The training batches shuffle themselves: `fit(shuffle=True)` on a
    tf.data dataset is ignored with a warning, which `keras-sb bench`
    printed into its progress bar once per method and seed."""
    tf = pytest.importorskip("tensorflow")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (32, 8, 8, 3), dtype="uint8")
    data = tf.data.Dataset.from_tensor_slices((images, np.arange(32) % 10))
    config = {"batch_size": 16, "seeds": [0], "augment": False, "epochs": 1,
              "learning_rate": 0.1, "jit_compile": False,
              "train_examples": 32, "input_shape": (8, 8, 3), "classes": 10,
              "widths": (4,)}
    train, test = benchmark.pipelines(data, data, config)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        points = benchmark.train_one(None, None, train, test, config, seed=0)
    assert len(points) == 1
    assert [str(w.message) for w in caught if "shuffle" in str(w.message)] == []


def test_device_pipeline_from_config():  # keras-sb bench --pipeline device
    images = np.zeros((10, 4, 4, 3), "uint8")
    config = {"batch_size": 4, "seeds": [0], "pipeline": "device"}
    batches = training.training_batches((images, np.arange(10)), config,
                                        example_ids=True)
    assert isinstance(batches, keras_sb.data.DevicePipeline)
    assert batches.example_ids and len(batches) == 3
    with pytest.raises(ValueError, match="pipeline=.gpu."):
        training.training_batches((images, np.arange(10)),
                                  dict(config, pipeline="gpu"))
