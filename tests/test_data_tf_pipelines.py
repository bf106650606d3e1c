"""The tf.data pipelines: augmentation, batching and scaling, and the example
ids and stale draws they add."""

import numpy as np
import pytest
import tensorflow as tf
from conftest import check_crops_and_flips
from conftest import frozen_model

import keras_sb
from keras_sb import data


class TestPipeline:
    def test_pad_crop_flip_is_a_shifted_possibly_flipped_window(self):
        tf.random.set_seed(0)
        image = tf.reshape(tf.range(1, 8 * 8 + 1, dtype=tf.int32), (8, 8, 1))
        augmented = [data.pad_crop_flip(image, padding=2).numpy()
                     for _ in range(200)]
        check_crops_and_flips(image.numpy(), augmented, padding=2)

    def test_training_pipeline_covers_each_example_once_per_epoch(self):
        images = np.zeros((50, 4, 4, 3), dtype="uint8") + 255
        ids = np.arange(50, dtype="int32")
        dataset = tf.data.Dataset.from_tensor_slices((images, ids))
        batches = data.training_pipeline(dataset, 16, seed=0)
        epochs = []
        for _ in range(2):
            seen = []
            sizes = []
            for x, y in batches:
                assert x.dtype == tf.float32 and x.shape[1:] == (4, 4, 3)
                assert 0.0 <= float(tf.reduce_min(x))
                assert float(tf.reduce_max(x)) == 1.0
                sizes.append(int(x.shape[0]))
                seen.extend(y.numpy().tolist())
            assert sizes == [16, 16, 16, 2]
            assert sorted(seen) == list(range(50))
            epochs.append(seen)
        assert epochs[0] != epochs[1]  # Reshuffled every epoch.

    def test_evaluation_pipeline_keeps_order_and_values(self):
        images = np.arange(10 * 2 * 2 * 3, dtype="uint8").reshape(10, 2, 2, 3)
        dataset = tf.data.Dataset.from_tensor_slices((images, np.arange(10)))
        x, y = next(iter(data.evaluation_pipeline(dataset, 10)))
        np.testing.assert_allclose(x.numpy(), images / 255.0, rtol=1e-6)
        assert y.numpy().tolist() == list(range(10))

    def test_data_the_pipelines_cannot_take(self):
        """Float images would be scaled a second time, batched data would be
        batched again: clear errors. Ids are dropped for evaluation."""
        images = np.zeros((4, 2, 2, 3), "uint8")
        pairs = tf.data.Dataset.from_tensor_slices((images, np.arange(4)))
        scaled = tf.data.Dataset.from_tensor_slices((images / 255, np.arange(4)))
        for make in (data.training_pipeline, data.evaluation_pipeline):
            with pytest.raises(ValueError, match="dtype float64"):
                make(scaled, 2)
            with pytest.raises(ValueError, match="unbatched dataset"):
                make(pairs.batch(2), 2)
        with pytest.raises(ValueError, match="`example_ids=True`"):
            data.training_pipeline(data.with_example_ids(pairs), 2)
        x, y = next(iter(data.evaluation_pipeline(
            data.with_example_ids(pairs), 4)))
        assert x.shape == (4, 2, 2, 3) and y.numpy().tolist() == [0, 1, 2, 3]
        with pytest.raises(ValueError, match="this element has no ids"):
            pairs.map(data.keep_example_ids(lambda image, label: (image, label)))

    def test_autotuning_is_off_unless_asked_for(self):
        # Autotuning delayed the first batch of 8 of 12 epochs on 2 cores
        # (benchmarks/pipeline_stall.py).
        dataset = tf.data.Dataset.from_tensor_slices(
            (np.zeros((4, 2, 2, 3), "uint8"), np.zeros(4)))
        for make in (data.training_pipeline, data.evaluation_pipeline):
            assert make(dataset, 2).options().autotune.enabled is False
            assert make(dataset, 2, autotune=True).options().autotune.enabled

    @pytest.mark.parametrize("batch_size", [0, -1, 2.5, None, True])
    def test_bad_batch_size(self, batch_size):
        dataset = tf.data.Dataset.from_tensor_slices(
            (np.zeros((4, 2, 2, 3), "uint8"), np.zeros(4)))
        with pytest.raises(ValueError, match="Received: batch_size="):
            data.training_pipeline(dataset, batch_size)
        with pytest.raises(ValueError, match="Received: batch_size="):
            data.evaluation_pipeline(dataset, batch_size)


class TestIdsAndDraws:
    def test_training_pipeline_ids_follow_their_examples(self):
        images = np.arange(50, dtype="uint8").reshape(50, 1, 1, 1) * np.ones(
            (1, 8, 8, 3), "uint8")
        labels = np.arange(50, dtype="int64")
        train = keras_sb.data.training_pipeline(
            tf.data.Dataset.from_tensor_slices((images, labels)), 16,
            example_ids=True, seed=0)
        ids = []
        for batch in train:
            (_, label), example_id = batch["data"], batch["example_id"]
            np.testing.assert_array_equal(label.numpy(), example_id.numpy())
            ids.extend(example_id.numpy())
        assert sorted(ids) == list(range(50)) and ids != sorted(ids)
        assert keras_sb.data.count_examples(train) == 50

    def test_training_pipeline_applies_the_filter(self):
        images = np.zeros((50, 8, 8, 3), "uint8")
        model, _, _ = frozen_model(50)
        train = keras_sb.data.training_pipeline(
            tf.data.Dataset.from_tensor_slices((images, np.arange(50))), 16,
            stale_model=model, seed=0)
        assert keras_sb.data.find_stale_filter(train).model is model
        assert keras_sb.data.count_examples(train) == 50
