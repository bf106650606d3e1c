"""The options of `keras-sb bench`."""

import argparse
import importlib.util
import os

from keras_sb import datasets
from keras_sb.benchmark.outputs import QUICK_OUTPUT
from keras_sb.benchmark.outputs import RESULTS_DIR
from keras_sb.benchmark.outputs import default_output
from keras_sb_cli import positive_int

def fraction(text):
    """An argparse type: a float in [0, 1)."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(
            f"must be a number in [0, 1). Received: {text!r}")
    return value


# What --quick sets, where those options are not given.
QUICK = {"train_size": 2048, "test_size": 1000, "epochs": 4}


def build_parser():
    """The `argparse.ArgumentParser` of `keras-sb bench` (see `parse_args`
    for the defaults that depend on other options)."""
    parser = argparse.ArgumentParser(
        prog="keras-sb bench",
        description="Time-to-accuracy and accuracy at equal wall-clock of "
                    "Selective-Backprop and InfoBatch vs plain Keras (full "
                    "and shortened schedules) and random-subset controls.")
    parser.add_argument("--dataset", default="cifar10",
                        choices=sorted(datasets.DATASETS),
                        help="image dataset (default cifar10)")
    parser.add_argument("--path", default=None,
                        help="local copy (folder or .tar.xz); default: TFDS")
    parser.add_argument("--data-dir", default=None, help="TFDS data dir")
    parser.add_argument("--train-size", type=positive_int, default=None,
                        help="use the first N training images (default all)")
    parser.add_argument("--test-size", type=positive_int, default=None,
                        help="evaluate on the first N test images (default "
                             "all)")
    parser.add_argument("--validation-size", type=positive_int, default=None,
                        help="evaluate on the N training images after the "
                             "first --train-size instead of the test split "
                             "(to choose settings without the test set); "
                             "the accuracies called test accuracy are then "
                             "these images'")
    parser.add_argument("--label-noise", type=fraction, default=0.0,
                        help="give this fraction of the training labels a "
                             "wrong class, drawn uniformly among the others "
                             "(the same examples and classes in every run: a "
                             "fixed seed, not --seeds); the evaluation labels "
                             "stay true (default 0)")
    parser.add_argument("--epochs", type=positive_int, default=10,
                        help="epochs of each method (default 10); the "
                             "learning rate decays to 0 over them")
    parser.add_argument("--selective-epochs", type=positive_int, default=None,
                        help="epochs of every selective method (default "
                             "--epochs), to compare at equal wall-clock time; "
                             "not of infobatch, which runs --epochs, nor of "
                             "the methods sized from other runs")
    parser.add_argument("--methods", nargs="+", default=None,
                        help="run these methods (default: plain infobatch "
                             "infobatch-equal-time random-subset plain-short "
                             "sb-beta<reference beta> and its -stale3; 'all': "
                             "every method). Also: sb-beta<b> (--betas), "
                             "-stale<n> (--stalenesses), -anneal, -pmin<P>, "
                             "uniform, importance. infobatch-equal-time runs "
                             "as long as plain, random-subset keeps "
                             "infobatch's fractions and plain-short lasts as "
                             "long as the fastest other method, each by the "
                             "runs of the same seed (which must be chosen "
                             "too); without plain, give --target")
    parser.add_argument("--batch-size", type=positive_int, default=128,
                        help="examples per batch, also the backprop batch "
                             "size of Selective-Backprop (default 128)")
    parser.add_argument("--no-augment", dest="augment", action="store_false",
                        help="train without the random crop and flip (a "
                             "network that can fit its training set)")
    parser.add_argument("--learning-rate", type=float, default=0.1,
                        help="initial learning rate of SGD with Nesterov "
                             "momentum, decayed per epoch on a cosine "
                             "(default 0.1)")
    parser.add_argument("--widths", type=int, nargs="+", default=[16, 32, 64],
                        help="channels per ResNet stage (ResNet-18 class: "
                             "64 128 256 512 with --blocks 2)")
    parser.add_argument("--blocks", type=positive_int, default=1,
                        help="basic blocks per stage")
    parser.add_argument("--batch-norm-momentum", type=float, default=0.99,
                        help="momentum of BatchNorm's moving statistics "
                             "(default 0.99, Keras's; 0.9 follows the "
                             "weights faster)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1],
                        help="seeds of the initial weights and draws; every "
                             "method runs once per seed (default 0 1)")
    parser.add_argument("--betas", type=float, nargs="+", default=[1, 2, 3],
                        help="Selective-Backprop selectivities to compare, "
                             "one method sb-beta<b> each (default 1 2 3)")
    parser.add_argument("--stalenesses", type=int, nargs="*", default=[2, 3],
                        help="stale selection at the reference beta with "
                             "these stalenesses")
    parser.add_argument("--stale-draws", default="pipeline",
                        choices=["pipeline", "step"],
                        help="where stale epochs draw their examples: in the "
                             "tf.data pipeline (data.stale_filter: skipped "
                             "examples are not augmented or batched; with "
                             "--pipeline numpy, the ArrayPipeline) or in the "
                             "train step; infobatch and random-subset always "
                             "draw in the pipeline")
    parser.add_argument("--anneal-from", type=float, default=0.875,
                        help="the sb-beta<reference beta>-anneal method "
                             "trains on every example from this fraction of "
                             "its epochs on")
    parser.add_argument("--min-probabilities", type=float, nargs="*",
                        default=[],
                        help="add the methods sb-beta<reference beta>-pmin<P>:"
                             " the paper's rule with the floor "
                             "min_probability=P")
    parser.add_argument("--reference-beta", type=float, default=2.0,
                        help="beta whose backprop fraction 1/(beta+1) the "
                             "uniform and importance baselines use")
    parser.add_argument("--target", type=float, default=None,
                        help="target test accuracy (default: plain's final "
                             "accuracy minus --target-gap)")
    parser.add_argument("--target-gap", type=float, default=0.005,
                        help="the default target is plain training's mean "
                             "final accuracy minus this (default 0.005, half "
                             "a point)")
    parser.add_argument("--jit-compile", default="auto",
                        choices=["auto", "true", "false"],
                        help="compile the steps with XLA: Keras's choice "
                             "(auto, the default), always or never")
    parser.add_argument("--pipeline", default=None,
                        choices=["tf.data", "numpy", "device"],
                        help="input pipeline (default: tf.data where "
                             "TensorFlow is installed, else numpy, which "
                             "needs --path; device: DevicePipeline, the "
                             "NumPy arrays kept and batched on the "
                             "accelerator)")
    parser.add_argument("--mixed-precision", action="store_true",
                        help="train in mixed_bfloat16 (for GPUs)")
    parser.add_argument("--quick", action="store_true",
                        help="a check in a few minutes: the first "
                             f"{QUICK['train_size']} training and "
                             f"{QUICK['test_size']} test images, "
                             f"{QUICK['epochs']} epochs (where those options "
                             "are not given), results in the current folder "
                             f"as {QUICK_OUTPUT}")
    parser.add_argument("--output", default=None,
                        help="name of the result files, <results dir>/"
                             "<name>.json and .png (a path, e.g. /tmp/x, "
                             "writes there), replacing existing ones. "
                             f"Default: {QUICK_OUTPUT} with --quick, else "
                             "time_to_accuracy_<dataset>_<epochs>ep_train<N> "
                             "(train-all without --train-size), and never "
                             "over existing files")
    parser.add_argument("--overwrite", action="store_true",
                        help="without --output, replace existing result "
                             "files of the default name")
    parser.add_argument("--results-dir", default=None,
                        help=f"folder of the result files (default "
                             f"{RESULTS_DIR} under the current folder; with "
                             "--quick, the current folder)")
    return parser


def parse_args(argv=None):
    """The parsed `keras-sb bench` options, with the defaults that depend on
    others filled in (`--pipeline`, `--quick`'s settings, `--results-dir`,
    `--output`).

    Args:
        argv: the options (without the command name); None: `sys.argv`.

    Returns:
        An `argparse.Namespace`; its `replace_existing` says whether the run
        may replace existing result files.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.pipeline is None:
        has_tensorflow = importlib.util.find_spec("tensorflow") is not None
        args.pipeline = "tf.data" if has_tensorflow else "numpy"
    if args.quick:
        for key, value in QUICK.items():
            if getattr(args, key) in (None, parser.get_default(key)):
                setattr(args, key, value)
    # A name given with --output is the files the user means to write; a
    # default name must not replace results written before, such as the
    # published ones that README.md cites.
    args.replace_existing = args.overwrite or args.output is not None
    if args.results_dir is None:
        args.results_dir = os.curdir if args.quick else RESULTS_DIR
    if args.output is None:
        args.output = default_output(args)
    return args
