"""Dataset loaders (`load`, `load_arrays`), on small generated images."""

import os
import tarfile

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_sb import datasets


def write_image_folder(root, per_class=3, size=8, classes=datasets.CIFAR10_CLASSES,
                       splits=("train", "test")):
    """`root/<split>/<class>/<n>.png`; every pixel of a class-k image is 20*k
    (PNG is lossless, so labels can be checked against pixels)."""
    for split in splits:
        for label, name in enumerate(classes):
            folder = os.path.join(root, split, name)
            os.makedirs(folder, exist_ok=True)
            for index in range(per_class):
                image = np.full((size, size, 3), 20 * label, dtype="uint8")
                image[0, 0, 0] = index  # Distinct files.
                tf.io.write_file(os.path.join(folder, f"{index}.png"),
                                 tf.io.encode_png(image))
    return str(root)


def examples(dataset):
    return [(image.numpy(), int(label)) for image, label in dataset]


class TestLocalCopy:
    def test_labels_match_images_and_classes_are_mixed(self, tmp_path):
        folder = write_image_folder(tmp_path / "cifar")
        loaded = examples(datasets.load("cifar10", "train", path=folder))
        assert len(loaded) == 30
        for image, label in loaded:
            assert image.dtype == np.uint8 and image.shape == (8, 8, 3)
            assert image[1:, 1:].min() == image[1:, 1:].max() == 20 * label
        first_labels = [label for _, label in loaded[:10]]
        assert len(set(first_labels)) > 3  # Not sorted by class.
        test = datasets.load("cifar10", "test", path=folder)
        assert test.element_spec[1].dtype == tf.int32

    def test_limit_and_same_order_every_time(self, tmp_path):
        folder = write_image_folder(tmp_path / "cifar")
        first = [label for _, label in examples(
            datasets.load("cifar10", "train", path=folder, limit=12))]
        again = [label for _, label in examples(
            datasets.load("cifar10", "train", path=folder, limit=12))]
        assert len(first) == 12 and first == again

    def test_same_order_as_load_arrays_in_every_pass(self, tmp_path):
        """Example ids are positions: a position is the same image in both
        loaders, also when the first pass stopped early (the cache was not
        filled) and after a global seed was set."""
        folder = write_image_folder(tmp_path / "cifar")
        keras.utils.set_random_seed(5)
        dataset = datasets.load("cifar10", "train", path=folder)
        for _ in dataset.take(3):  # A partial first pass.
            pass
        loaded = examples(dataset)
        images, labels = datasets.load_arrays("cifar10", "train", folder)
        assert [label for _, label in loaded] == labels.tolist()
        np.testing.assert_array_equal(np.stack([i for i, _ in loaded]), images)
        again = examples(dataset)  # From the cache.
        assert [label for _, label in again] == labels.tolist()
        np.testing.assert_array_equal(np.stack([i for i, _ in again]), images)

    @pytest.mark.parametrize("limit", [0, -1, "5", 2.5])
    def test_bad_limit(self, tmp_path, limit):
        folder = write_image_folder(tmp_path / "cifar")
        for load in (datasets.load, datasets.load_arrays):
            with pytest.raises(ValueError, match="Received: limit="):
                load("cifar10", "train", path=folder, limit=limit)

    def test_archive_is_extracted_once(self, tmp_path):
        folder = write_image_folder(tmp_path / "cifar10-jpeg")
        archive = str(tmp_path / "cifar10-jpeg.tar.gz")
        with tarfile.open(archive, "w:gz") as tar:
            tar.add(folder, arcname="cifar10-jpeg")
        extract_dir = str(tmp_path / "extracted")
        loaded = examples(datasets.load("cifar10", "test", path=archive,
                                        extract_dir=extract_dir))
        assert len(loaded) == 30
        with open(archive, "wb") as file:  # A second load must not read it.
            file.write(b"not an archive")
        again = examples(datasets.load("cifar10", "test", path=archive,
                                       extract_dir=extract_dir))
        assert len(again) == 30
        os.remove(archive)
        with pytest.raises(ValueError, match="Received: path="):
            datasets.load("cifar10", "test", path=archive)

    def test_wrong_class_folders(self, tmp_path):
        folder = write_image_folder(tmp_path / "x", classes=("a", "b"))
        with pytest.raises(ValueError, match="class folders"):
            datasets.load("cifar10", "train", path=folder)
        # CIFAR-100 and SVHN take any folder names, but as many as they
        # have classes.
        with pytest.raises(ValueError, match="100 classes, but .* 2 class folders"):
            datasets.load("cifar100", "train", path=folder)
        with pytest.raises(ValueError, match="100 classes, but .* 2 class folders"):
            datasets.load_arrays("cifar100", "train", path=folder)

    def test_numbered_class_folders_in_the_order_of_their_numbers(self, tmp_path):
        """SVHN's digits as folders 1..10: label 9 is folder '10', not the
        second folder in the order of names."""
        classes = tuple(str(number) for number in range(1, 11))
        folder = write_image_folder(tmp_path / "svhn", classes=classes,
                                    splits=("test",))
        for loaded in (examples(datasets.load("svhn", "test", path=folder)),
                       zip(*datasets.load_arrays("svhn", "test", path=folder))):
            for image, label in loaded:
                assert image[1:, 1:].min() == image[1:, 1:].max() == 20 * label

    def test_path_may_be_a_pathlib_path(self, tmp_path):
        folder = write_image_folder(tmp_path / "cifar10-jpeg", splits=("test",))
        archive = tmp_path / "cifar10-jpeg.tar.gz"
        with tarfile.open(archive, "w:gz") as tar:
            tar.add(folder, arcname="cifar10-jpeg")
        loaded = examples(datasets.load("cifar10", "test", path=archive,
                                        extract_dir=str(tmp_path / "extracted")))
        assert len(loaded) == 30
        with pytest.raises(ValueError, match="Received: path=None"):
            datasets.load_arrays("cifar10", "test", path=None)

    def test_missing_split(self, tmp_path):
        folder = write_image_folder(tmp_path / "x", splits=("train",))
        with pytest.raises(ValueError, match="No 'test' folder"):
            datasets.load("cifar10", "test", path=folder)

    @pytest.mark.parametrize("kwargs, match", [
        ({"name": "mnist", "split": "train"}, "Received: name='mnist'"),
        ({"name": "cifar10", "split": "validation"}, "Received: split="),
        ({"name": "cifar10", "split": "train", "path": "/no/such/file.zip"},
         "Received: path="),
    ])
    def test_bad_arguments(self, kwargs, match):
        with pytest.raises(ValueError, match=match):
            datasets.load(**kwargs)


@pytest.mark.parametrize("name, classes", [("cifar10", 10), ("cifar100", 100),
                                           ("svhn", 10)])
def test_tfds_source(name, classes):
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=6):
        loaded = examples(datasets.load(name, "train"))
    assert len(loaded) == 6
    for image, label in loaded:
        assert image.dtype == np.uint8 and image.shape == (32, 32, 3)
        assert 0 <= label < classes
    assert datasets.num_classes(name) == classes


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
