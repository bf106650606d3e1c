"""The `keras-sb` command: `keras-sb demo` and `keras-sb bench`.

A module of its own, outside the `keras_sb` package, whose `__init__`
imports Keras (and so TensorFlow or JAX): `keras-sb --help` and a mistyped
command answer at once, and a subcommand's module is imported only when that
subcommand runs.
"""

import argparse
import importlib
import os
import sys

COMMANDS = {
    "demo": ("keras_sb.demo",
             "plain Keras vs Selective-Backprop on scikit-learn's digits"),
    "bench": ("keras_sb.benchmark",
              "time-to-accuracy benchmark on CIFAR-10/100 or SVHN, with "
              "baselines, JSON results and a plot"),
}


def positive_int(text):
    """An argparse type: an int >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(
            f"must be an int >= 1. Received: {text!r}")
    return value


def main(argv=None):
    """Entry point of the `keras-sb` console script."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(
        prog="keras-sb",
        description="Selective-Backprop for Keras 3. "
                    "`keras-sb <command> --help` for a command's options.",
    )
    commands = parser.add_subparsers(dest="command", metavar="command")
    for name, (_, help_text) in COMMANDS.items():
        commands.add_parser(name, help=help_text, add_help=False)
    if not argv:
        parser.print_help()
        return 0
    if argv[0] not in COMMANDS:
        parser.parse_args(argv[:1])  # --help, or an error naming the choices.
        return 2
    # Before the subcommand's module imports TensorFlow.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    module = importlib.import_module(COMMANDS[argv[0]][0])
    module.main(argv[1:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
