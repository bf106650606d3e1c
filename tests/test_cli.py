"""The `keras-sb` command line."""

import subprocess
import sys

import pytest

import keras_sb_cli as cli


def test_command_line_help(capsys):
    assert cli.main([]) == 0
    assert "demo" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["bench", "--help"])
    assert exit_info.value.code == 0
    assert "--quick" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["demo", "--help"])
    assert exit_info.value.code == 0
    assert "--beta" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train"])
    assert exit_info.value.code == 2


HELP_IMPORTS_NO_KERAS = """
import sys

import keras_sb_cli

try:
    keras_sb_cli.main(["--help"])
except SystemExit as exit:
    assert exit.code == 0, exit.code
imported = [name for name in ("keras", "tensorflow", "jax")
            if name in sys.modules]
assert not imported, imported
"""


def test_help_imports_no_keras():
    """`keras-sb --help` answers without importing Keras or a backend (and
    so without their seconds of start-up and TensorFlow's log lines)."""
    process = subprocess.run([sys.executable, "-c", HELP_IMPORTS_NO_KERAS],
                             capture_output=True, text=True, timeout=120)
    assert process.returncode == 0, process.stderr[-3000:]
    assert "bench" in process.stdout
