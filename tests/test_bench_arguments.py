"""The options of `keras-sb bench` (and `keras-sb demo`'s counts)."""

import pytest

from keras_sb import benchmark
from keras_sb import demo


@pytest.mark.parametrize("module", [benchmark, demo])
@pytest.mark.parametrize("flag", ["--epochs", "--batch-size"])
@pytest.mark.parametrize("value", ["0", "-1", "x"])
def test_counts_must_be_positive(module, flag, value, capsys):
    with pytest.raises(SystemExit) as exit_info:
        module.main([flag, value])
    assert exit_info.value.code == 2
    assert f"must be an int >= 1. Received: '{value}'" in capsys.readouterr().err


def test_every_option_has_a_help_text():
    parser = benchmark.build_parser()
    assert [action.option_strings for action in parser._actions
            if not action.help] == []


def test_quick_says_in_words_what_it_sets():
    parser = benchmark.build_parser()
    (quick,) = [action.help for action in parser._actions
                if "--quick" in action.option_strings]
    assert "{" not in quick
    for setting in ("2048 training", "1000 test", "4 epochs",
                    "time_to_accuracy_quick"):
        assert setting in quick
    # What it says: options given explicitly win.
    args = benchmark.parse_args(["--quick", "--epochs", "2"])
    assert (args.train_size, args.test_size, args.epochs) == (2048, 1000, 2)
