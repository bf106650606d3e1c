"""The control flow of a compiled selective step (JAX).

On an accelerator, XLA reads the predicate of each conditional, and of each
iteration of a loop whose trip count it does not know, back on the host:
each is a round trip that stalls the device. `control_flow` counts them in
the step's lowered program, for the GPU benchmark's record and the tests.
"""

import keras

# JAX's random bits (threefry) loop a fixed number of rounds, a trip count
# XLA knows: no predicate goes back to the host.
_FIXED_LOOPS = ("threefry",)


def control_flow(model, data):
    """The loops and conditionals of `model`'s train step on the batch
    `data` (JAX only), besides those of the random-number generator.

    Args:
        model: a `SelectiveBackpropModel` that has trained at least one step
            (so its optimizer and queue exist).
        data: a batch as `fit` passes it to the step.

    Returns:
        Dict `{"loops": int, "conditionals": int}`.
    """
    if keras.backend.backend() != "jax":
        raise ValueError("`control_flow` reads a JAX program; the backend is "
                         f"{keras.backend.backend()!r}.")
    import jax

    from keras_sb.backend import jax as jax_backend

    state = tuple([variable.value for variable in group]
                  for group in jax_backend.state_variables(model))
    text = jax.jit(model.train_step).lower(state, data).as_text()
    return count_control_flow(text)


def count_control_flow(text):
    """Loops and conditionals of a StableHLO module's text, besides those in
    functions of `_FIXED_LOOPS`."""
    counts = {"loops": 0, "conditionals": 0}
    function = ""
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("func.func"):
            function = line.split("@", 1)[1].split("(", 1)[0]
        if any(name in function for name in _FIXED_LOOPS):
            continue
        if "stablehlo.while" in line:
            counts["loops"] += 1
        if "stablehlo.case" in line or "stablehlo.if" in line:
            counts["conditionals"] += 1
    return counts
