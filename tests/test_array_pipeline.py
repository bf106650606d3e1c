"""`ArrayPipeline` and `pad_crop_flip_batch`: the NumPy data path (no
TensorFlow needed)."""

import numpy as np
import pytest
from conftest import check_crops_and_flips
from conftest import frozen_model

import keras_sb
from keras_sb import data


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


class TestIdsAndDraws:
    def test_array_pipeline_ids_are_rows(self):
        images = np.zeros((30, 4, 4, 3), "uint8")
        labels = np.arange(30)
        pipeline = keras_sb.data.ArrayPipeline(images, labels, 8, example_ids=True,
                                               seed=0, workers=1)
        batch = pipeline[1]
        np.testing.assert_array_equal(batch["data"][1], batch["example_id"])
        assert keras_sb.data.count_examples(pipeline) == 30

    def test_array_pipeline_draws(self):
        images = np.arange(100, dtype="uint8").reshape(100, 1, 1, 1) * np.ones(
            (1, 4, 4, 3), "uint8")
        model, _, _ = frozen_model(100)
        pipeline = keras_sb.data.ArrayPipeline(
            images, np.arange(100), 32, augment=False, seed=0, workers=1,
            stale_model=model)
        draws = pipeline.stale_filter
        assert keras_sb.data.find_stale_filter(pipeline) is draws
        assert len(pipeline) == 4
        draws.begin_epoch(True, epoch=1, probabilities=np.tile([0.0, 1.0], 50))
        batches = [pipeline[i] for i in range(len(pipeline))]
        ids = np.concatenate([b["example_id"] for b in batches])
        real = ids != keras_sb.data.PADDING_ID
        assert len(pipeline) == 2 and len(ids) == 64  # 50 kept, padded.
        assert sorted(ids[real]) == list(range(1, 100, 2))
        labels = np.concatenate([b["data"][1] for b in batches])
        np.testing.assert_array_equal(labels[real], ids[real])
        draws.begin_epoch(False, epoch=2)
        assert len(pipeline) == 4 and pipeline[3]["example_id"].shape == (4,)
