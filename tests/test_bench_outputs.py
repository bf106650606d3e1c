"""Where `keras-sb bench` writes its results, and that a run replaces only
the result files it was told to."""

import os

import pytest

from keras_sb import benchmark


def test_quick_runs_write_to_the_current_folder_under_their_own_name():
    args = benchmark.parse_args(["--quick"])
    assert args.results_dir == os.curdir
    assert args.output == "time_to_accuracy_quick"
    args = benchmark.parse_args(["--quick", "--results-dir", "elsewhere",
                                 "--output", "mine"])
    assert (args.results_dir, args.output) == ("elsewhere", "mine")


def test_default_names_say_the_settings():
    args = benchmark.parse_args([])
    assert args.results_dir == os.path.join("benchmarks", "results")
    assert args.output == "time_to_accuracy_cifar10_10ep_train-all"
    args = benchmark.parse_args(["--dataset", "svhn", "--epochs", "3",
                                 "--train-size", "500"])
    assert args.output == "time_to_accuracy_svhn_3ep_train500"
    # The published results' name is written only when asked for.
    assert benchmark.parse_args(["--output", "time_to_accuracy"]).output == (
        "time_to_accuracy")


@pytest.mark.parametrize("argv, existing", [
    ([], os.path.join("benchmarks", "results",
                      "time_to_accuracy_cifar10_10ep_train-all.json")),
    (["--quick"], "time_to_accuracy_quick.png"),
])
def test_a_run_without_output_does_not_replace_results(argv, existing, tmp_path,
                                                       monkeypatch):
    """Refused before the data are loaded (not after an hour of training);
    an explicit `--output` of that name, or `--overwrite`, replaces them."""
    monkeypatch.chdir(tmp_path)
    os.makedirs(os.path.dirname(existing) or os.curdir, exist_ok=True)
    with open(existing, "w") as file:
        file.write("published")

    def load_data(args):
        raise RuntimeError("loading the data")

    monkeypatch.setattr(benchmark.command, "load_data", load_data)
    with pytest.raises(FileExistsError, match=f"{existing} exists"):
        benchmark.main(argv)
    with open(existing) as file:
        assert file.read() == "published"
    stem = os.path.splitext(os.path.basename(existing))[0]
    for replacing in (["--output", stem], ["--overwrite"]):
        with pytest.raises(RuntimeError, match="loading the data"):
            benchmark.main(argv + replacing)
