"""Do BatchNorm statistics from selected examples cost test accuracy?

With Selective-Backprop, BatchNormalization updates its moving mean and
variance only in backward steps, so only from the selected, high-loss
examples; the scoring pass (inference mode) reads them and does not update
them. If statistics of hard examples were what leaves Selective-Backprop
below plain training, re-estimating them from all examples after training
would raise its test accuracy.

This script trains each method as `keras-sb bench` does (ResNet-8 on
CIFAR-10 with augmentation, the same initial weights, per-epoch cosine
learning rate), then evaluates the test set:

1. as trained;
2. after re-estimating every BatchNormalization's moving statistics over
   `--batches` augmented training batches of every example, as a cumulative
   average of their batch statistics (the "BN update" of stochastic weight
   averaging), with the weights unchanged.

Plain training is the control: its statistics already come from every
example. Run (about 11 minutes per seed on this project's 2-core CPU):

    python benchmarks/batch_norm_recalibration.py \
        --path ../shared/data/cifar10-jpeg.tar.xz

Writes benchmarks/results/batch_norm_recalibration.json.
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402

from common import OUTPUT_HELP  # noqa: E402
from common import write_result  # noqa: E402
from keras_sb import benchmark  # noqa: E402
from keras_sb import datasets  # noqa: E402


def recalibrate_batch_norm(model, batches, steps):
    """Re-estimates the moving statistics of every BatchNormalization layer of
    `model` as the plain average of their batch statistics over `steps`
    batches of `batches` (training-mode forward passes; no weight changes).
    """
    layers = [layer for layer in model.layers
              if isinstance(layer, keras.layers.BatchNormalization)]
    momenta = [layer.momentum for layer in layers]
    for step, (images, _) in zip(range(steps), batches):
        # moving = moving * momentum + batch * (1 - momentum): with momentum
        # step / (step + 1), moving is the mean of the batches seen so far.
        for layer in layers:
            layer.momentum = step / (step + 1.0)
        model(images, training=True)
    for layer, momentum in zip(layers, momenta):
        layer.momentum = momentum
    return len(layers)


def test_accuracy(model, test):
    return float(model.evaluate(test, verbose=0, return_dict=True)["accuracy"])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--path", required=True,
                        help="CIFAR-10 folder or archive (see keras-sb bench)")
    parser.add_argument("--methods", nargs="+", default=["plain", "sb-beta2"])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--selective-epochs", type=int, default=15)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--batch-norm-momentum", type=float, default=0.99)
    parser.add_argument("--batches", type=int, default=100,
                        help="training batches that re-estimate the statistics")
    parser.add_argument("--output", default="batch_norm_recalibration",
                        help=OUTPUT_HELP)
    args = parser.parse_args()

    compared = benchmark.choose_methods(
        benchmark.methods(betas=(1, 2, 3), stalenesses=()), args.methods)
    train = datasets.load("cifar10", "train", args.path)
    test = datasets.load("cifar10", "test", args.path)
    config = {
        "epochs": args.epochs, "selective_epochs": args.selective_epochs,
        "batch_size": 128, "learning_rate": 0.1, "seeds": args.seeds,
        "jit_compile": "auto", "input_shape": (32, 32, 3), "classes": 10,
        "batch_norm_momentum": args.batch_norm_momentum,
    }
    train_batches, test_batches = benchmark.pipelines(train, test, config)
    runs = {name: [] for name in args.methods}
    for seed in args.seeds:
        keras.utils.set_random_seed(seed)
        initial = benchmark._network(config).get_weights()
        for name, options in compared.items():
            keras.utils.set_random_seed(seed)
            model = benchmark.build_model(options, config, seed, initial)
            epochs = benchmark._epochs(config, options)
            start = time.perf_counter()
            model.fit(train_batches, epochs=epochs, verbose=0, callbacks=[
                keras.callbacks.LearningRateScheduler(
                    benchmark.cosine_learning_rate(config["learning_rate"],
                                                   epochs))])
            seconds = time.perf_counter() - start
            as_trained = test_accuracy(model, test_batches)
            recalibrate_batch_norm(model, train_batches, args.batches)
            recalibrated = test_accuracy(model, test_batches)
            runs[name].append({
                "seed": seed, "epochs": epochs, "training_seconds": seconds,
                "test_accuracy": as_trained,
                "test_accuracy_recalibrated": recalibrated,
            })
            print(f"seed {seed} {name}: {epochs} epochs in {seconds:.0f} s, "
                  f"test accuracy {as_trained:.4f} as trained, "
                  f"{recalibrated:.4f} after recalibrating BatchNorm")
    summary = {
        name: {"mean_change_points": 100 * statistics.mean(
            run["test_accuracy_recalibrated"] - run["test_accuracy"]
            for run in method_runs)}
        for name, method_runs in runs.items()
    }
    path = write_result(args.output, {
        "config": {**config, "input_shape": list(config["input_shape"]),
                   "recalibration_batches": args.batches,
                   "model": "small_resnet (ResNet-8)",
                   "augmentation": "random crop (4 px padding) + horizontal "
                                   "flip, also in the recalibration batches"},
        "summary": summary,
        "runs": runs,
    })
    print(f"mean change of test accuracy by recalibration (points): "
          f"{ {name: round(s['mean_change_points'], 2) for name, s in summary.items()} }")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
