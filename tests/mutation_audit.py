"""Audit of the test suite: puts each deliberate bug below into a copy of
the code, one at a time, and lists the tests that fail (issue 23).

    python tests/mutation_audit.py tensorflow tests/test_selection.py ...

Runs in a detached `git worktree` of HEAD under a temporary folder, so the
checkout is never changed; each bug is reverted before the next. Not a test
itself (pytest does not collect it).
"""
import os
import subprocess
import sys
import tempfile

# name -> (file, the code, the bug put in its place)
BUGS = {
 "M1 percentile counts <=": ("keras_sb/selection.py", "lower = ops.divide_no_nan(matches(history < losses), count)", "lower = ops.divide_no_nan(matches(history <= losses), count)"),
 "M2 pct ** (beta / 2)": ("keras_sb/selection.py", "    probability = ops.power(low, beta)\n", "    probability = ops.power(low, beta / 2)\n"),
 "M3 queue drops a row": ("keras_sb/queue.py", "    return new_queue, size + moved, consumed + moved\n", "    return new_queue, size + moved, consumed + moved + ops.cast(moved > 0, \"int32\")\n"),
 "M4 scoring with training=True": ("keras_sb/step.py", "    y_pred = forward(model, x, training=False)", "    y_pred = forward(model, x, training=True)"),
 "M5 score table shifted by one id": ("keras_sb/score_table.py", "    indices = ops.expand_dims(_safe_ids(example_ids, size), -1)\n    epochs", "    indices = ops.expand_dims(_safe_ids(example_ids + 1, size), -1)\n    epochs"),
 "M6 stores the percentile, not the probability": ("keras_sb/step.py", "            table_values(state), example_ids, losses, probabilities,\n", "            table_values(state), example_ids, losses,\n            ops.power(probabilities, 1.0 / getattr(model.strategy, 'beta', 1.0)),\n"),
 "M7 padded replica rows weighted 1": ("keras_sb/replicas.py", "run, train, (head, ops.cast(mask, \"float32\"))", "run, train, (head, ops.ones_like(ops.cast(mask, \"float32\")))"),
}


def main():
    checkout = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    root = os.path.join(tempfile.mkdtemp(), "audit")
    subprocess.run(["git", "worktree", "add", "-q", "--detach", root, "HEAD"],
                   cwd=checkout, check=True)
    tests = sys.argv[2:]
    backend = sys.argv[1]
    for name, (path, old, new) in BUGS.items():
        full = os.path.join(root, path)
        original = open(full).read()
        assert original.count(old) == 1, (name, original.count(old))
        open(full, "w").write(original.replace(old, new))
        try:
            env = dict(os.environ, KERAS_BACKEND=backend, PYTHONPATH=root)
            out = subprocess.run(
                [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                 "-rf", *tests],
                cwd=root, env=env, capture_output=True, text=True).stdout
            failed = [line for line in out.splitlines()
                      if line.startswith("FAILED")]
            print(f"## {name} ({backend}): {len(failed)} failed", flush=True)
            for line in failed:
                print("  ", line[:200], flush=True)
            print("  ", out.strip().splitlines()[-1], flush=True)
        finally:
            open(full, "w").write(original)
    subprocess.run(["git", "worktree", "remove", "--force", root], cwd=checkout,
                   check=True)


if __name__ == "__main__":
    main()
