"""keras-sb demo: plain Keras vs Selective-Backprop on real handwritten digits.

Trains the same network from the same initial weights on scikit-learn's
bundled digits (1,797 8x8 images, no download), once with `keras.Model` and
once with `keras_sb.SelectiveBackpropModel`, and prints wall-clock time,
backpropagated examples and test accuracy of each.

Run: `keras-sb demo [--epochs 40] [--beta 2.0] [--batch-size 128]` (or
`python examples/demo.py`).
"""

import argparse
import time

import keras

import keras_sb
from keras_sb_cli import positive_int


def network():
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(64, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.Conv2D(128, 3, padding="same", activation="relu")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(256, activation="relu")(x)
    outputs = keras.layers.Dense(10, activation="softmax")(x)
    return inputs, outputs


def train(model, data, args):
    x_train, y_train, x_test, y_test = data
    model.compile(
        optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    # One untimed batch traces and compiles the training step.
    model.train_on_batch(x_train[: args.batch_size], y_train[: args.batch_size])
    steps_before = int(model.optimizer.iterations.numpy())
    start = time.perf_counter()
    model.fit(x_train, y_train, batch_size=args.batch_size, epochs=args.epochs,
              verbose=0)
    seconds = time.perf_counter() - start
    _, accuracy = model.evaluate(x_test, y_test, verbose=0)
    if isinstance(model, keras_sb.SelectiveBackpropModel):
        # Examples backpropagated during the fit: every backward step trains
        # on exactly one backprop batch.
        steps = int(model.optimizer.iterations.numpy()) - steps_before
        backprops = steps * model.backprop_batch_size
    else:
        backprops = args.epochs * len(x_train)
    return seconds, backprops, accuracy


def main(argv=None):
    parser = argparse.ArgumentParser(prog="keras-sb demo",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=positive_int, default=40,
                        help="epochs of each model (default 40)")
    parser.add_argument("--batch-size", type=positive_int, default=128,
                        help="batch size, also the backprop batch size "
                             "(default 128)")
    parser.add_argument("--beta", type=float, default=2.0,
                        help="selectivity of Selective-Backprop (default 2)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the split, weights and draws (default 0)")
    args = parser.parse_args(argv)

    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images / 16.0).astype("float32")[..., None]
    x_train, x_test, y_train, y_test = train_test_split(
        x, digits.target, test_size=0.25, random_state=args.seed,
        stratify=digits.target)
    data = (x_train, y_train, x_test, y_test)
    print(f"digits: {len(x_train)} training and {len(x_test)} test images; "
          f"{args.epochs} epochs, batch size {args.batch_size}")

    keras.utils.set_random_seed(args.seed)
    plain = train(keras.Model(*network()), data, args)
    keras.utils.set_random_seed(args.seed)
    model = keras_sb.SelectiveBackpropModel(
        *network(), beta=args.beta, seed=args.seed)
    selective = train(model, data, args)

    print(f"\n{'':28}{'time (s)':>10}{'backprops':>12}{'test accuracy':>15}")
    for name, (seconds, backprops, accuracy) in [
            ("plain keras.Model", plain),
            (f"SelectiveBackprop beta={args.beta:g}", selective)]:
        print(f"{name:28}{seconds:10.1f}{backprops:12d}{accuracy:15.3f}")
    print(f"\nSelective-Backprop: {plain[0] / selective[0]:.2f}x the speed, "
          f"{selective[1] / plain[1]:.0%} of the backward passes, accuracy "
          f"{100 * (selective[2] - plain[2]):+.1f} points.")
    if keras.backend.backend() == "jax":
        import jax

        if jax.default_backend() == "cpu":
            print("On a CPU, JAX compiles with XLA, which runs a convolution's "
                  "backward pass inside a conditional many times slower than "
                  "outside it: use KERAS_BACKEND=tensorflow on CPUs (README, "
                  "'Backends').")


if __name__ == "__main__":
    main()
