"""The `keras-sb bench` command: loads the data, runs every method and
writes the results (see `outputs` for where)."""

import json
import os
import sys
import time

import keras
import numpy as np

from keras_sb import datasets
from keras_sb.benchmark import label_noise
from keras_sb.benchmark import provenance
from keras_sb.benchmark import selection_reports
from keras_sb.benchmark import sizing
from keras_sb.benchmark.arguments import parse_args
from keras_sb.benchmark.comparison import INFOBATCH_DEFAULTS
from keras_sb.benchmark.comparison import choose_methods
from keras_sb.benchmark.comparison import default_method_names
from keras_sb.benchmark.comparison import methods
from keras_sb.benchmark.outputs import result_paths
from keras_sb.benchmark.plotting import plot
from keras_sb.benchmark.results import EQUAL_TIME_TOLERANCE
from keras_sb.benchmark.results import format_summary
from keras_sb.benchmark.training import run


def load_data(args):
    """The training and evaluation sets of the parsed command line `args`:
    `(images, labels)` arrays with `--pipeline numpy`, else unbatched
    `tf.data.Dataset`s. The evaluation set is the test split, or with
    `--validation-size N` the N training images after the first
    `--train-size`, so that settings can be chosen without the test set.
    With `--label-noise F`, a fraction F of the training labels is wrong
    (`label_noise.with_noisy_labels`); the evaluation labels are not."""
    train, evaluation = _load_clean_data(args)
    if getattr(args, "label_noise", 0.0):
        train = label_noise.with_noisy_labels(
            train, args.label_noise, datasets.num_classes(args.dataset),
            label_noise.LABEL_NOISE_SEED)
    return train, evaluation


def mislabelled_examples(args, count):
    """With `--label-noise`, a bool array of the `count` training examples
    that says whose label `load_data` changed (by example id); else None."""
    if not getattr(args, "label_noise", 0.0):
        return None
    mislabelled = np.zeros(count, bool)
    mislabelled[label_noise.changed_examples(
        count, args.label_noise, label_noise.LABEL_NOISE_SEED)] = True
    return mislabelled


def _load_clean_data(args):
    """`load_data` without label noise."""
    if args.pipeline in ("numpy", "device"):
        if args.path is None:
            raise ValueError(f"--pipeline {args.pipeline} reads a local copy: "
                             "give --path.")
        if args.validation_size:
            images, labels = datasets.load_arrays(
                args.dataset, "train", args.path,
                limit=args.train_size + args.validation_size)
            return ((images[:args.train_size], labels[:args.train_size]),
                    (images[args.train_size:], labels[args.train_size:]))
        return (datasets.load_arrays(args.dataset, "train", args.path,
                                     limit=args.train_size),
                datasets.load_arrays(args.dataset, "test", args.path,
                                     limit=args.test_size))
    if args.validation_size:
        images = datasets.load(args.dataset, "train", args.path, args.data_dir,
                               limit=args.train_size + args.validation_size)
        for _ in images:  # Decode into the cache once; take/skip read it.
            pass
        return images.take(args.train_size), images.skip(args.train_size)
    return (datasets.load(args.dataset, "train", args.path, args.data_dir,
                          limit=args.train_size),
            datasets.load(args.dataset, "test", args.path, args.data_dir,
                          limit=args.test_size))


def run_config(args, train_examples, image_shape):
    """The configuration of a run (`run`'s `config`, recorded in the
    results) from the parsed `args` and the loaded training set's size and
    image shape."""
    return {
        "dataset": args.dataset,
        "epochs": args.epochs,
        "selective_epochs": args.selective_epochs,
        "batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "seeds": args.seeds,
        "jit_compile": {"auto": "auto", "true": True,
                        "false": False}[args.jit_compile],
        "train_examples": train_examples,
        "input_shape": image_shape,
        "classes": datasets.num_classes(args.dataset),
        "target": args.target,
        "target_gap": args.target_gap,
        "evaluated_on": (
            f"validation: training images {args.train_size} to "
            f"{args.train_size + args.validation_size - 1}"
            if args.validation_size else "test split"),
        "stale_draws": args.stale_draws,
        "anneal_from": args.anneal_from,
        "widths": args.widths,
        "blocks_per_stage": args.blocks,
        "batch_norm_momentum": args.batch_norm_momentum,
        "model": f"small_resnet (widths {args.widths}, {args.blocks} "
                 "basic block(s) per stage)",
        "augment": args.augment,
        "augmentation": ("random crop (4 px padding) + horizontal flip"
                         if args.augment else "none"),
        "pipeline": args.pipeline,
        "dtype_policy": "mixed_bfloat16" if args.mixed_precision else "float32",
        "optimizer": "SGD nesterov momentum 0.9, weight decay 5e-4, "
                     "cosine decay to 0 over each method's epochs: "
                     "CosineDecay over plain steps for plain keras.Model, "
                     "wrapped in keras_sb.EpochSchedule (fraction of epochs "
                     "done) for selective and pruning methods",
        "selection_start": "1ep (default priming epoch)",
        "label_noise": args.label_noise,
        "label_noise_seed": label_noise.LABEL_NOISE_SEED,
        "infobatch": dict(INFOBATCH_DEFAULTS),
        "sizing": {
            "infobatch-equal-time": "epochs = max(1, round(infobatch epochs "
                                    "* plain seconds / infobatch seconds)), "
                                    "same seed",
            "random-subset": "kept fraction per epoch = infobatch's "
                             "kept_fraction of that epoch, same seed",
            "plain-short": "epochs = max(1, round(plain epochs * fastest "
                           "other method's seconds (not plain's) / plain "
                           "seconds)), same seed",
        },
        "equal_time_tolerance": EQUAL_TIME_TOLERANCE,
    }


def chosen_methods(args):
    """The methods the parsed `args` run (name -> options, see
    `comparison.methods`): those of `--methods`, every one for `--methods
    all`, and without `--methods` those of `default_method_names` that
    the options make (e.g. no `-stale3` without 3 in `--stalenesses`).

    Raises:
        ValueError: for an unknown name, or a method sized from runs that
            are not chosen (`sizing.check_dependencies`).
    """
    compared = methods(args.betas, args.reference_beta, args.stalenesses,
                       args.anneal_from, args.min_probabilities)
    if args.methods is None:
        compared = choose_methods(compared, [
            name for name in default_method_names(args.reference_beta)
            if name in compared])
    elif args.methods != ["all"]:
        compared = choose_methods(compared, args.methods)
    sizing.check_dependencies(compared)
    return compared


def main(argv=None):
    """Runs `keras-sb bench`: trains every method, writes the JSON results
    and the plot, and prints the summary.

    Args:
        argv: the options (without the command name); None: `sys.argv`.

    Returns:
        The result dict written as JSON.
    """
    args = parse_args(argv)
    # The commit of the code that runs, read before anything that takes time
    # (see `provenance.source_commit`).
    provenance.source_commit()
    compared = chosen_methods(args)
    if "plain" not in compared and args.target is None:
        raise ValueError("Without the plain method, give --target.")
    if args.validation_size is not None and args.train_size is None:
        raise ValueError(
            "--validation-size needs --train-size (the validation images "
            "follow the training ones). Received: --validation-size "
            f"{args.validation_size} without --train-size")
    # Refused before the data load and the training, not after them.
    json_path, png_path = result_paths(args)
    train, test = load_data(args)
    if args.pipeline in ("numpy", "device"):
        train_examples = len(train[0])
        image_shape = tuple(train[0].shape[1:])
    else:
        train_examples = int(train.reduce(0, lambda count, _: count + 1))
        image_shape = tuple(train.element_spec[0].shape)
    config = run_config(args, train_examples, image_shape)
    print(f"{args.dataset}: {train_examples} training images"
          + (f" ({args.label_noise:.0%} of their labels wrong)"
             if args.label_noise else "")
          + f", {len(compared)} methods x {len(args.seeds)} seeds x "
          f"{args.epochs} epochs")
    if args.mixed_precision:
        keras.config.set_dtype_policy("mixed_bfloat16")
    reports = {}
    runs, summary = run(train, test, config, compared, reports=reports)
    os.makedirs(args.results_dir, exist_ok=True)
    selection = selection_reports.write(
        reports, train, os.path.splitext(json_path)[0],
        class_names=datasets.DATASETS[args.dataset][2],
        mislabelled=mislabelled_examples(args, train_examples))
    result = {
        "command": " ".join(["keras-sb bench"] + (argv if argv is not None
                                                   else sys.argv[1:])),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": provenance.machine(),
        "config": {k: (list(v) if isinstance(v, tuple) else v)
                   for k, v in config.items()},
        "summary": summary,
        "selection_reports": selection,
        "runs": runs,
    }
    with open(json_path, "w") as file:
        json.dump(result, file, indent=2)
    plot(runs, summary, png_path, config["evaluated_on"])
    print(format_summary(summary))
    print(selection_reports.format_detection(selection))
    print(f"wrote {json_path} and {png_path}")
    return result
