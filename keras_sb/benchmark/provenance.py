"""Where a result came from: the machine, the software versions and the
commit of the code."""

import functools
import os
import platform
import subprocess
import sys

import keras


def machine():
    """This machine, the software versions and, when keras-sb runs from a
    git checkout, its commit (with "-dirty" if tracked files had changed)
    as `source_commit` first read it in this process: the code this process
    runs, even if the checkout changes while a long benchmark runs."""
    info = {
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
        "keras": keras.__version__,
        "keras_backend": keras.backend.backend(),
    }
    if keras.backend.backend() == "jax":
        import jax

        info["jax"] = jax.__version__
        info["devices"] = [f"{d.platform}: {d.device_kind}" for d in jax.devices()]
    try:
        import tensorflow as tf
    except ImportError:
        pass
    else:
        info["tensorflow"] = tf.__version__
        info["gpus"] = [d.name for d in tf.config.list_physical_devices("GPU")]
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            info["cpu_model"] = next(line.split(":", 1)[1].strip()
                                     for line in cpuinfo
                                     if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    commit = source_commit()
    if commit:
        info["git_commit"] = commit
    return info


@functools.cache
def source_commit():
    """The commit of the checkout keras-sb runs from, read once per process.

    The first call runs git and every later call returns what it read, so a
    run that calls this when it starts (as `keras-sb bench` and `run` do)
    records the commit of the code it ran, even if the checkout moves (a
    pull, a commit) before its results are written. It is not read at
    import, which would run git in every process that imports the module.

    Returns:
        The short commit, with "-dirty" if tracked files had changed, or
        None when keras-sb does not run from a git checkout.
    """
    return _git_commit()


def _git_commit():
    """The short commit of the checkout keras-sb runs from, or None."""
    folder = os.path.dirname(os.path.abspath(__file__))
    try:
        commit = subprocess.check_output(
            ["git", "rev-parse", "--short", "HEAD"], cwd=folder, text=True,
            stderr=subprocess.DEVNULL).strip()
        changed = subprocess.check_output(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=folder, text=True, stderr=subprocess.DEVNULL).strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + "-dirty" if changed else commit
