"""The machine and commit that results record."""

import subprocess
import sys

import pytest

from keras_sb import benchmark
from keras_sb.benchmark import provenance

IMPORT_RUNS_NO_GIT = """
import subprocess

commands = []


class RecordingPopen(subprocess.Popen):
    def __init__(self, args, *rest, **options):
        commands.append(args)
        super().__init__(args, *rest, **options)


subprocess.Popen = RecordingPopen
import keras_sb.benchmark

assert not [c for c in commands if "git" in str(c)], commands
"""


def test_importing_the_benchmark_runs_no_git():
    """Importing it (for `benchmarks/*.py`, `examples/`, `keras-sb bench
    --help`) starts no process; the commit is read when a run starts."""
    process = subprocess.run([sys.executable, "-c", IMPORT_RUNS_NO_GIT],
                             capture_output=True, text=True, timeout=300)
    assert process.returncode == 0, process.stderr[-3000:]


@pytest.fixture
def unread_commit():
    provenance.source_commit.cache_clear()
    yield
    provenance.source_commit.cache_clear()


def test_results_record_the_commit_read_first(monkeypatch, unread_commit):
    commits = iter(["1111111", "2222222-dirty"])
    monkeypatch.setattr(provenance, "_git_commit", lambda: next(commits))
    assert benchmark.source_commit() == "1111111"
    # The checkout has changed since: results still record the first commit.
    assert benchmark.machine()["git_commit"] == "1111111"
    assert benchmark.source_commit() == "1111111"


def test_bench_reads_the_commit_before_loading_data(tmp_path, monkeypatch,
                                                    unread_commit):
    reads = []
    monkeypatch.setattr(provenance, "_git_commit",
                        lambda: reads.append("read") or "1111111")

    def load_data(args):
        assert reads == ["read"]
        raise RuntimeError("loading the data")

    monkeypatch.setattr(benchmark.command, "load_data", load_data)
    with pytest.raises(RuntimeError, match="loading the data"):
        benchmark.main(["--results-dir", str(tmp_path)])
