"""NumPy data path (no TensorFlow needed): `load_arrays`, `ArrayPipeline`."""

import numpy as np
import pytest
from test_datasets import check_crops_and_flips
from test_datasets import write_image_folder

from keras_sb import data
from keras_sb import datasets


def test_load_arrays_matches_labels_and_mixes_classes(tmp_path):
    folder = write_image_folder(tmp_path / "cifar")
    images, labels = datasets.load_arrays("cifar10", "train", folder)
    assert images.dtype == np.uint8 and images.shape == (30, 8, 8, 3)
    assert labels.dtype == np.int32 and sorted(labels) == sorted(
        list(range(10)) * 3)
    for image, label in zip(images, labels):
        assert image[1:, 1:].min() == image[1:, 1:].max() == 20 * label
    assert len(set(labels[:10])) > 3  # Not sorted by class.
    prefix, prefix_labels = datasets.load_arrays("cifar10", "train", folder,
                                                 limit=12)
    np.testing.assert_array_equal(prefix, images[:12])
    np.testing.assert_array_equal(prefix_labels, labels[:12])


def test_load_arrays_errors(tmp_path):
    folder = write_image_folder(tmp_path / "x", classes=("a", "b"))
    with pytest.raises(ValueError, match="class folders"):
        datasets.load_arrays("cifar10", "train", folder)
    with pytest.raises(ValueError, match="Received: split="):
        datasets.load_arrays("cifar10", "valid", folder)
    with pytest.raises(ValueError, match="Received: path="):
        datasets.load_arrays("cifar10", "train", str(tmp_path / "none.zip"))


def test_pad_crop_flip_batch_is_a_shifted_possibly_flipped_window():
    image = np.arange(1, 8 * 8 + 1, dtype="int32").reshape(8, 8, 1)
    batch = np.repeat(image[None], 400, axis=0)
    augmented = data.pad_crop_flip_batch(batch, np.random.default_rng(0), 2)
    assert augmented.shape == batch.shape
    check_crops_and_flips(image, augmented, padding=2)


class TestArrayPipeline:
    def test_covers_each_example_once_per_epoch_and_reshuffles(self):
        images = np.full((50, 4, 4, 3), 255, dtype="uint8")
        ids = np.arange(50, dtype="int32")
        pipeline = data.ArrayPipeline(images, ids, 16, seed=0)
        assert len(pipeline) == 4
        epochs = []
        for _ in range(2):
            batches = [pipeline[i] for i in range(len(pipeline))]
            assert [len(y) for _, y in batches] == [16, 16, 16, 2]
            for x, _ in batches:
                assert x.dtype == np.float32 and x.shape[1:] == (4, 4, 3)
                assert x.min() >= 0.0 and x.max() == 1.0
            seen = np.concatenate([y for _, y in batches]).tolist()
            assert sorted(seen) == list(range(50))
            epochs.append(seen)
            pipeline.on_epoch_end()
        assert epochs[0] != epochs[1]

    def test_same_seed_same_batches_and_evaluation_keeps_order(self):
        images = np.random.default_rng(0).integers(
            0, 256, (20, 6, 6, 3)).astype("uint8")
        first = data.ArrayPipeline(images, np.arange(20), 8, seed=3)
        again = data.ArrayPipeline(images, np.arange(20), 8, seed=3)
        np.testing.assert_array_equal(first[1][0], again[1][0])
        evaluation = data.ArrayPipeline(images, np.arange(20), 20,
                                        augment=False, shuffle=False)
        x, y = evaluation[0]
        np.testing.assert_allclose(x, images / 255.0, rtol=1e-6)
        assert y.tolist() == list(range(20))

    def test_trains_a_model_with_fit(self):
        import keras

        images = np.random.default_rng(0).integers(
            0, 256, (64, 8, 8, 3)).astype("uint8")
        labels = (images.mean(axis=(1, 2, 3)) > 127).astype("int32")
        inputs = keras.Input((8, 8, 3))
        outputs = keras.layers.Dense(2, activation="softmax")(
            keras.layers.Flatten()(inputs))
        model = keras.Model(inputs, outputs)
        model.compile("sgd", "sparse_categorical_crossentropy")
        history = model.fit(data.ArrayPipeline(images, labels, 16, seed=0),
                            epochs=2, verbose=0)
        assert len(history.history["loss"]) == 2

    def test_lists_and_numpy_integers_are_accepted(self):
        images = [np.full((2, 2, 3), i, "uint8") for i in range(4)]
        pipeline = data.ArrayPipeline(images, [0, 1, 2, 3], np.int64(2),
                                      shuffle=False, augment=False)
        x, y = pipeline[1]
        assert x.shape == (2, 2, 2, 3) and y.tolist() == [2, 3]
        np.testing.assert_allclose(x[:, 0, 0, 0], [2 / 255, 3 / 255])

    @pytest.mark.parametrize("batch_size", [0, 2.5, None])
    def test_bad_arguments(self, batch_size):
        images = np.zeros((4, 2, 2, 3), "uint8")
        with pytest.raises(ValueError, match="Received: batch_size="):
            data.ArrayPipeline(images, np.zeros(4), batch_size)
        for bad_images, bad_labels in ((images, np.zeros(3)),
                                       (images[0], np.zeros(2))):
            with pytest.raises(ValueError, match="Received: images of shape"):
                data.ArrayPipeline(bad_images, bad_labels, 2)
        with pytest.raises(ValueError, match="Received: padding=-1"):
            data.ArrayPipeline(images, np.zeros(4), 2, padding=-1)
        with pytest.raises(ValueError, match="Received: seed='a'"):
            data.ArrayPipeline(images, np.zeros(4), 2, seed="a")
        with pytest.raises(IndexError):
            data.ArrayPipeline(images, np.zeros(4), 2)[2]
        # Images scaled already would be scaled twice.
        with pytest.raises(ValueError, match="Received: images of dtype float32"):
            data.ArrayPipeline(images.astype("float32") / 255, np.zeros(4), 2)
