"""Loops and conditionals of the compiled step: each costs an accelerator a
round trip to the host, so a batch that fills the queue at most once gets
one conditional and no loop."""

import keras
import numpy as np
import pytest
from conftest import compile_model
from keras import ops

import keras_sb
from keras_sb import backend
from keras_sb import queue as queue_ops
from keras_sb.benchmark import step_profile


def compiled_control_flow(fn, *args):
    """`{"loops", "conditionals"}` of `fn(*args)` compiled by the backend."""
    if keras.backend.backend() == "jax":
        import jax

        return step_profile.count_control_flow(
            jax.jit(fn).lower(*args).as_text())
    import tensorflow as tf

    graph = tf.function(fn).get_concrete_function(*args).graph.as_graph_def()
    # The ops of the graph and of the functions it calls (loop bodies and
    # branches).
    kinds = [node.op for node in graph.node] + [
        node.op for function in graph.library.function
        for node in function.node_def]
    return {"loops": sum(kind in ("While", "StatelessWhile") for kind in kinds),
            "conditionals": sum(kind in ("If", "StatelessIf")
                                for kind in kinds)}


@pytest.mark.parametrize("batch_size,capacity,loops", [
    (16, 16, 0), (8, 16, 0), (17, 16, 1), (64, 16, 1)])
def test_drain_loops_only_when_a_batch_can_fill_the_queue_twice(
        batch_size, capacity, loops):
    def drain(queue, size, ids, selected):
        def backward_if_full(is_full, queue, carry):
            return backend.run_if(is_full, lambda c: c + queue[0][0], carry)
        return queue_ops.drain([queue], size, [ids], selected,
                               backward_if_full, carry=ops.zeros((), "int32"))
    counts = compiled_control_flow(
        drain, ops.zeros((capacity,), "int32"), ops.convert_to_tensor(3),
        ops.arange(batch_size, dtype="int32"),
        ops.convert_to_tensor(np.arange(batch_size) % 2 == 0))
    assert counts == {"loops": loops, "conditionals": 1}


@pytest.mark.skipif(keras.backend.backend() != "jax",
                    reason="`control_flow` reads JAX programs")
@pytest.mark.parametrize("backprop_batch_size,loops", [(None, 0), (8, 1)])
def test_selective_step_control_flow(backprop_batch_size, loops):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 5)).astype("float32")
    y = rng.integers(0, 3, 64)
    inputs = keras.Input((5,))
    outputs = keras.layers.Dense(3, activation="softmax")(inputs)
    model = compile_model(keras_sb.SelectiveBackpropModel(
        inputs, outputs, beta=2.0, backprop_batch_size=backprop_batch_size))
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    counts = step_profile.control_flow(model, (x[:32], y[:32]))
    assert counts == {"loops": loops, "conditionals": 1}


def test_count_control_flow_skips_the_random_generator():
    text = "\n".join([
        "func.func public @main(%arg0: tensor<i32>) {",
        "  %0 = stablehlo.case(%arg0) ({",
        "func.func private @threefry2x32(%arg0: tensor<i32>) {",
        "  %1:3 = stablehlo.while(%iterArg = %arg0)",
        "func.func private @drain(%arg0: tensor<i32>) {",
        "  %2:3 = stablehlo.while(%iterArg = %arg0)",
    ])
    assert step_profile.count_control_flow(text) == {"loops": 1,
                                                     "conditionals": 1}
