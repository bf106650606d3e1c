"""One worker of `test_multi_worker_mirrored_strategy` (tests/test_distributed.py).

Run as `python multi_worker_train.py OUTPUT.npz` with `TF_CONFIG` set; trains
a SelectiveBackpropModel under `MultiWorkerMirroredStrategy` and writes the
final weights and selection counters to OUTPUT.npz.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["KERAS_BACKEND"] = "tensorflow"

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

strategy = tf.distribute.MultiWorkerMirroredStrategy()

import keras  # noqa: E402

import keras_sb  # noqa: E402


def main(output):
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(512, 16)).astype("float32")
    y = x[:, :4].argmax(axis=1).astype("int32")
    with strategy.scope():
        inputs = keras.Input((16,))
        hidden = keras.layers.Dense(32, activation="relu")(inputs)
        outputs = keras.layers.Dense(4, activation="softmax")(hidden)
        model = keras_sb.SelectiveBackpropModel(
            inputs, outputs, beta=1.0, start=0, seed=0
        )
        model.compile(optimizer=keras.optimizers.SGD(0.1),
                      loss="sparse_categorical_crossentropy")
    initial_kernel = model.trainable_weights[0].numpy()
    # A global batch of 64: each worker scores 32 per step.
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(64)
    model.fit(dataset, epochs=2, verbose=0)
    counters = model.selection_state.counters()
    weights = {f"weight_{index}": variable.numpy()
               for index, variable in enumerate(model.trainable_weights)}
    np.savez(
        output,
        kernel=model.trainable_weights[0].numpy(),
        initial_kernel=initial_kernel,
        epoch_scored=counters["epoch_scored"],
        backprops=counters["backprops"],
        selected_total=counters["selected_total"],
        **weights,
    )


if __name__ == "__main__":
    main(sys.argv[1])
