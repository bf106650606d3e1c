"""The data pipeline: batching, augmentation, and what keras-sb needs to know
about the training data.

- `selective`: `selective_pipeline`, training data ready for stale selection
  and pruning in one call (ids, shuffling, draws, augmentation, batching),
  from a `tf.data.Dataset` or NumPy arrays. Start here.
- `example_ids`: stable example ids (`with_example_ids`, `keep_example_ids`),
  as stale selection (`keras_sb.StaleSelection`) needs.
- `stale_filtering`: `stale_filter`, stale epochs' draws in the pipeline.
- `tf_pipelines`: `training_pipeline` and `evaluation_pipeline` (tf.data).
- `array_pipeline`: `ArrayPipeline`, the same from NumPy arrays, without
  TensorFlow.
- `device_pipeline`: `DevicePipeline`, `ArrayPipeline`'s batches made on
  the accelerator from images kept there (for GPUs, on JAX).
- `inspection`: what the model reads from `fit`'s data before training.

Every name is available as `keras_sb.data.<name>`. TensorFlow is imported
only by the functions that use tf.data.
"""

from keras_sb.data._tensorflow import require_tensorflow
from keras_sb.data.array_pipeline import ArrayPipeline
from keras_sb.data.array_pipeline import pad_crop_flip_batch
from keras_sb.data.device_pipeline import DevicePipeline
from keras_sb.data.example_ids import DATA_KEY
from keras_sb.data.example_ids import EXAMPLE_ID_KEY
from keras_sb.data.example_ids import PADDING_ID
from keras_sb.data.example_ids import class_weight_to_sample_weights
from keras_sb.data.example_ids import has_example_ids
from keras_sb.data.example_ids import keep_example_ids
from keras_sb.data.example_ids import split_example_ids
from keras_sb.data.example_ids import with_example_ids
from keras_sb.data.inspection import batch_size_of
from keras_sb.data.inspection import count_examples
from keras_sb.data.inspection import find_stale_filter
from keras_sb.data.inspection import peek_generator
from keras_sb.data.inspection import peek_structure
from keras_sb.data.selective import selective_pipeline
from keras_sb.data.stale_filtering import StaleFilter
from keras_sb.data.stale_filtering import stale_filter
from keras_sb.data.tf_pipelines import evaluation_pipeline
from keras_sb.data.tf_pipelines import pad_crop_flip
from keras_sb.data.tf_pipelines import scale_images
from keras_sb.data.tf_pipelines import training_pipeline
