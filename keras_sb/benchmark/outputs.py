"""Where `keras-sb bench` writes its results.

`--results-dir` (default `benchmarks/results` under the current folder;
with `--quick`, the current folder) holds `<output>.json` and
`<output>.png`. Without `--output`, the name is `time_to_accuracy_quick` for
`--quick` runs and `time_to_accuracy_<dataset>_<epochs>ep_train<N>`
(`train-all` without `--train-size`; `_noise<F>` added with
`--label-noise F`) for others, and the run refuses, before
it loads data or trains, to replace existing files. So the published
results, which README.md cites, are replaced only by a run that names them
with `--output` (or passes `--overwrite`).
"""

import os

QUICK_OUTPUT = "time_to_accuracy_quick"
RESULTS_DIR = os.path.join("benchmarks", "results")


def default_output(args):
    """The name of the result files when `--output` is not given.

    Args:
        args: the parsed options, with `--quick`'s settings applied.

    Returns:
        `QUICK_OUTPUT` for a `--quick` run, else
        `time_to_accuracy_<dataset>_<epochs>ep_train<N>` (`train-all`
        without `--train-size`), with `_noise<F>` for `--label-noise F`.
    """
    if args.quick:
        return QUICK_OUTPUT
    train = f"train{args.train_size}" if args.train_size else "train-all"
    noise = (f"_noise{args.label_noise:g}"
             if getattr(args, "label_noise", 0.0) else "")
    return f"time_to_accuracy_{args.dataset}_{args.epochs}ep_{train}{noise}"


def result_paths(args):
    """The JSON and PNG paths the run of the parsed `args` writes.

    Args:
        args: the parsed options (`parse_args`).

    Returns:
        `(json_path, png_path)`.

    Raises:
        FileExistsError: when one of them exists and the run may not replace
            it (no `--output`, no `--overwrite`).
    """
    stem = os.path.join(args.results_dir, args.output)
    paths = stem + ".json", stem + ".png"
    existing = [path for path in paths if os.path.exists(path)]
    if existing and not args.replace_existing:
        raise FileExistsError(
            f"{existing[0]} exists, and a run without --output does not "
            "replace results: give --output with another name, or "
            f"--output {args.output} (or --overwrite) to replace it.")
    return paths
