"""What depends on the Keras backend: running without TensorFlow on JAX, the
compiled step's structure on JAX, and `.keras` files across backends."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from conftest import compile_model
from conftest import mlp

import keras_sb

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OTHER_BACKEND = {"tensorflow": "jax", "jax": "tensorflow"}[keras.backend.backend()]


def run_python(code, backend, timeout=240):
    """Runs `code` in a fresh Python with `KERAS_BACKEND=backend`; returns
    its stdout."""
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONPATH=os.pathsep.join([ROOT, os.path.join(ROOT, "tests")]))
    process = subprocess.run([sys.executable, "-c", code], env=env,
                             capture_output=True, text=True, timeout=timeout)
    assert process.returncode == 0, process.stderr[-3000:]
    return process.stdout


WITHOUT_TENSORFLOW = """
import importlib.abc, sys

class NoTensorFlow(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "tensorflow_datasets"):
            raise ModuleNotFoundError(f"No module named {name!r}")

sys.meta_path.insert(0, NoTensorFlow())
import numpy as np, keras, keras_sb
from conftest import compile_model, mlp

x = np.random.default_rng(0).random((256, 64)).astype("float32")
y = (x[:, 0] > 0.5).astype("int32")
model = compile_model(keras_sb.SelectiveBackpropModel(
    *mlp(), beta=1.0, start=0, seed=0), jit_compile=True)
history = model.fit(x, y, batch_size=32, epochs=2, verbose=0)
try:
    keras_sb.data.training_pipeline(None, 32)
except ImportError as error:
    message = str(error)
print("tensorflow" in sys.modules, history.history["backprops"][-1], message)
"""


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="JAX backend only")
def test_jax_runs_without_tensorflow():
    imported, backprops, message = run_python(WITHOUT_TENSORFLOW, "jax").split(
        " ", 2)
    assert imported == "False"
    assert 0 < float(backprops) < 2 * 256
    assert "needs TensorFlow" in message and "ArrayPipeline" in message


def _eqns(jaxpr):
    """All equations of a jaxpr, descending into loops and branches."""
    for eqn in jaxpr.eqns:
        yield eqn
        for value in eqn.params.values():
            for sub in value if isinstance(value, (list, tuple)) else [value]:
                if hasattr(sub, "jaxpr"):  # ClosedJaxpr
                    yield from _eqns(sub.jaxpr)
                elif hasattr(sub, "eqns"):
                    yield from _eqns(sub)


def _matmuls(jaxpr):
    return sum(eqn.primitive.name == "dot_general" for eqn in _eqns(jaxpr))


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="JAX backend only")
def test_jax_backward_pass_only_in_the_taken_branch(digits):
    """The compiled step holds the backward pass (matrix products of the
    training forward, the gradients and nothing else) only inside the true
    branch of a `lax.cond`, so a step with the queue not full runs the
    scoring forward pass alone."""
    import jax

    x, y, _, _ = digits
    model = compile_model(keras_sb.SelectiveBackpropModel(
        *mlp(), beta=1.0, start=0, seed=0))
    model.fit(x[:64], y[:64], batch_size=32, epochs=1, verbose=0)
    state = (
        [v.value for v in model.trainable_variables],
        [v.value for v in model.non_trainable_variables],
        [v.value for v in model.optimizer.variables],
        [v.value for v in model.metrics_variables],
    )
    jaxpr = jax.make_jaxpr(model.train_step)(state, (x[:32], y[:32])).jaxpr
    conds = [eqn for eqn in _eqns(jaxpr) if eqn.primitive.name == "cond"]
    assert len(conds) == 1
    skip, run = conds[0].params["branches"]
    assert _matmuls(skip.jaxpr) == 0
    # Training forward (2 Dense layers) and backward (2 weight gradients,
    # 1 input gradient of the second layer) inside the branch.
    assert _matmuls(run.jaxpr) == 5
    # Outside it: the scoring forward pass only.
    assert _matmuls(jaxpr) - _matmuls(run.jaxpr) == 2


LOAD_IN_OTHER_BACKEND = """
import json, numpy as np, keras, keras_sb
model = keras.saving.load_model({path!r})
x = np.load({inputs!r})
print(json.dumps({{
    "predictions": model.predict(x, verbose=0).tolist(),
    "counters": model.selection_state.counters(),
    "beta": model.strategy.beta,
    "backprops": float(model.fit(x, np.zeros(len(x), "int32"), batch_size=16,
                                 epochs=1, verbose=0).history["backprops"][-1]),
}}))
"""


def test_keras_file_loads_in_the_other_backend(digits, tmp_path):
    x, y, _, _ = digits
    model = compile_model(keras_sb.SelectiveBackpropModel(
        *mlp(), beta=2.0, start=0, seed=0, backprop_batch_size=16))
    model.fit(x[:200], y[:200], batch_size=50, epochs=2, verbose=0)
    counters = model.selection_state.counters()
    assert counters["queue_size"] > 0 or counters["backprops"] > 0
    path = str(tmp_path / "model.keras")
    inputs = str(tmp_path / "x.npy")
    model.save(path)
    np.save(inputs, x[:32])
    loaded = json.loads(run_python(
        LOAD_IN_OTHER_BACKEND.format(path=path, inputs=inputs), OTHER_BACKEND))
    np.testing.assert_allclose(loaded["predictions"], model.predict(
        x[:32], verbose=0), rtol=1e-5, atol=1e-6)
    assert loaded["counters"] == counters
    assert loaded["beta"] == 2.0
    # Training goes on there, from the saved queue and counters.
    assert loaded["backprops"] >= counters["backprops"]
