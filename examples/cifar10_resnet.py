"""Train a ResNet on CIFAR-10 with Selective-Backprop.

Copy and adapt. With the CIFAR-10 copy of this project (no download):

    python examples/cifar10_resnet.py --path ../shared/data/cifar10-jpeg.tar.xz

Without `--path` the data comes from TensorFlow Datasets. `--staleness 3`
adds stale selection (scores reused for 2 epochs in 3). On a GPU, use a
ResNet-18-class network (`--widths 64 128 256 512 --blocks 2`), more epochs
(`--epochs 100`) and XLA (`keras-sb bench --help` shows the GPU options).
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402

import keras_sb  # noqa: E402
from keras_sb.benchmark import cosine_learning_rate  # noqa: E402
from keras_sb.benchmark import small_resnet  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--path", default=None)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--beta", type=float, default=2.0)
    parser.add_argument("--widths", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--blocks", type=int, default=1)
    parser.add_argument("--staleness", type=int, default=1,
                        help="score every example once in this many epochs")
    parser.add_argument("--train-size", type=int, default=None,
                        help="train on the first N images (default all)")
    parser.add_argument("--save", default="cifar10_resnet_sb.keras",
                        help="where to save the trained model")
    args = parser.parse_args()

    train = keras_sb.datasets.load("cifar10", "train", path=args.path,
                                   limit=args.train_size)
    test = keras_sb.datasets.load("cifar10", "test", path=args.path)
    stale = args.staleness > 1
    network = small_resnet(widths=args.widths, blocks_per_stage=args.blocks)
    model = keras_sb.SelectiveBackpropModel.from_model(network, beta=args.beta)
    # Stale selection stores a score per example, so the examples carry ids;
    # in stale epochs the pipeline drops the skipped ones before augmenting.
    train = keras_sb.data.training_pipeline(
        train, args.batch_size, stale_model=model if stale else None)
    test = keras_sb.data.evaluation_pipeline(test, 500)
    model.compile(
        optimizer=keras.optimizers.SGD(0.1, momentum=0.9, nesterov=True,
                                       weight_decay=5e-4),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    # The optimizer takes fewer steps per epoch than plain training (one per
    # backprop batch), so the learning rate follows the epoch.
    callbacks = [keras.callbacks.LearningRateScheduler(
        cosine_learning_rate(0.1, args.epochs))]
    if stale:
        callbacks.append(keras_sb.StaleSelection(args.staleness))
    model.fit(train, epochs=args.epochs, validation_data=test,
              callbacks=callbacks)
    model.save(args.save)


if __name__ == "__main__":
    main()
