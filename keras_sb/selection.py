"""Selection math of Selective-Backprop, as small pure functions.

Everything here works on tensors with `keras.ops`, so the same code runs on
every Keras backend and inside compiled (XLA) functions. Nothing here owns
state: the loss history is passed in and the updated history is returned.

The rule (Jiang et al., 2019, "Accelerating Deep Learning by Focusing on the
Biggest Losers") for one batch of per-example losses `L`:

1. append the finite losses of the batch to the history of recent losses,
2. `pct(L)` = fraction of the (updated) history strictly below `L`,
3. `P = max(min_probability, pct(L) ** beta)`,
4. select each example independently with probability `P`.

Losses that are exactly equal to others in the history (ties) get the
probability they would have if the ties were broken at random (see
`biggest_losers_probability`); distinct losses follow the rule exactly.
Ties are what a loss computed from clipped probabilities gives: Keras's
cross-entropy on softmax outputs clips them to `[1e-7, 1 - 1e-7]` on the
JAX backend (TensorFlow computes it from the logits), so every example the
model gets confidently wrong has the same loss, 16.118.
"""

import math
import numbers

from keras import ops
from keras import random

EMPTY_HISTORY_SLOT = float("nan")
"""Value of a history slot that holds no loss yet (NaN compares as False)."""


def append_to_history(history, position, losses):
    """Appends the finite values of `losses` to a ring buffer of losses.

    Non-finite losses (NaN, +/-inf) are left out, so they can never corrupt
    the percentiles computed from the history. If more finite losses arrive
    than the history holds, only the most recent ones are kept.

    Args:
        history: float tensor of shape `(history_size,)`. Empty slots hold
            NaN.
        position: int32 scalar, the slot the next loss is written to.
        losses: float tensor of shape `(batch_size,)`.

    Returns:
        Tuple `(new_history, new_position)`.

    Example:

    >>> history = keras.ops.full((4,), float("nan"))
    >>> history, position = append_to_history(
    ...     history, 0, keras.ops.array([1.0, float("nan"), 2.0]))
    >>> history  # [1.0, 2.0, nan, nan]; position == 2
    """
    history_size = ops.shape(history)[0]
    losses = ops.cast(losses, history.dtype)
    finite = ops.isfinite(losses)
    num_finite = ops.sum(ops.cast(finite, "int32"))
    # Finite losses first, in their original order.
    finite_first = _stable_order(finite, ops.shape(losses)[0])
    compacted = ops.take(losses, finite_first, axis=0)
    # Slot h receives the most recent finite loss whose rank r satisfies
    # (position + r) % history_size == h, if there is one.
    slots = ops.arange(history_size, dtype="int32")
    rank = (num_finite - 1) - ops.mod(
        position + num_finite - 1 - slots, history_size
    )
    written = rank >= 0
    incoming = ops.take(compacted, ops.maximum(rank, 0), axis=0)
    new_history = ops.where(written, incoming, history)
    new_position = ops.mod(position + num_finite, history_size)
    return new_history, ops.cast(new_position, "int32")


def percentile_rank(losses, history):
    """Fraction of the recorded history strictly below each loss.

    Empty (NaN) slots of the history are ignored. A non-finite loss gets
    rank 0 (callers decide separately what to do with it).

    Args:
        losses: float tensor of shape `(batch_size,)`.
        history: float tensor of shape `(history_size,)`, NaN where empty.

    Returns:
        float32 tensor of shape `(batch_size,)` with values in `[0, 1]`.
        A loss that is itself in the history is never above all of it, so
        its rank is below 1.

    Example:

    >>> percentile_rank(keras.ops.array([0.5, 3.0]),
    ...                 keras.ops.array([0.0, 1.0, 2.0, float("nan")]))
    # [1/3, 3/3]
    """
    return percentile_range(losses, history)[0]


def percentile_range(losses, history):
    """The ranks a loss can take among equal losses of the history.

    For each loss: the fraction of the history strictly below it (its
    `percentile_rank`), and that fraction plus the fraction of *other*
    history entries equal to it. The loss itself is assumed to be in the
    history (the rule appends a batch before scoring it), so one equal entry
    is not counted. A loss that ties with nothing has `upper == lower`, and
    so does a loss of 0 or less: a loss of exactly 0 (a sample or class
    weight of 0, a perfect prediction) gives no gradient, so equal zeros
    keep the strict rank, and the lowest of them is never selected without
    a `min_probability`.

    Args:
        losses: float tensor of shape `(batch_size,)`.
        history: float tensor of shape `(history_size,)`, NaN where empty.

    Returns:
        Tuple `(lower, upper)` of float32 tensors of shape `(batch_size,)`
        with values in `[0, 1]`, `lower <= upper`.

    Example:

    >>> percentile_range(keras.ops.array([1.0, 2.0]),
    ...                  keras.ops.array([0.0, 1.0, 1.0, 2.0]))
    # lower [1/4, 3/4], upper [2/4, 3/4]
    """
    losses = ops.expand_dims(ops.cast(losses, "float32"), 1)
    history = ops.expand_dims(ops.cast(history, "float32"), 0)
    count = ops.sum(ops.cast(ops.isfinite(history), "float32"))

    def matches(compared):
        return ops.sum(ops.cast(compared, "float32"), axis=1)

    lower = ops.divide_no_nan(matches(history < losses), count)
    others_equal = ops.divide_no_nan(
        ops.maximum(matches(history == losses) - 1.0, 0.0), count)
    return lower, lower + ops.where(losses[:, 0] > 0, others_equal, 0.0)


def biggest_losers_probability(percentile, beta, min_probability=0.0,
                               upper_percentile=None):
    """Selection probability of the paper: `max(min_probability, pct**beta)`.

    With `upper_percentile` (from `percentile_range`), a loss tied with
    others could take any rank from `percentile` to `upper_percentile`; its
    probability is then the mean of `pct**beta` over that range, which is
    the probability it has when the ties are broken at random. So a group
    of equal high losses is selected as often as if the losses differed,
    instead of almost never (every member of the group would otherwise
    count only the losses below the group). Where the range is empty this
    is exactly the paper's rule.

    Args:
        percentile: tensor of percentile ranks in `[0, 1]`.
        beta: selectivity, `>= 0`. Larger values select fewer examples.
        min_probability: floor of the probability, in `[0, 1]`.
        upper_percentile: None, or a tensor like `percentile` with
            `upper_percentile >= percentile`.

    Returns:
        Tensor of probabilities, same shape as `percentile`.

    Example:

    >>> biggest_losers_probability(keras.ops.array([0.5]), 2.0)
    # [0.25]
    >>> biggest_losers_probability(keras.ops.array([0.1]), 2.0,
    ...                            upper_percentile=keras.ops.array([1.0]))
    # [(1 - 0.1**3) / (3 * 0.9)] = [0.37]
    """
    low = ops.cast(percentile, "float32")
    probability = ops.power(low, beta)
    if upper_percentile is not None:
        high = ops.cast(upper_percentile, "float32")
        width = high - low
        tied = width > 1e-6
        # Mean of x**beta over [low, high]: the integral over the width.
        mean = ops.divide(
            ops.power(high, beta + 1.0) - ops.power(low, beta + 1.0),
            (beta + 1.0) * ops.where(tied, width, 1.0))
        probability = ops.where(tied, mean, probability)
    return ops.maximum(ops.cast(min_probability, "float32"), probability)


def bernoulli(probabilities, seed, stream=0, num_streams=1):
    """Draws one Bernoulli variable per probability.

    Args:
        probabilities: float tensor of probabilities in `[0, 1]`.
        seed: a `keras.random.SeedGenerator` (or anything
            `keras.random.uniform` accepts as seed).
        stream: which of `num_streams` independent draws to use (an int or
            int tensor). Data-parallel replicas share one seed and each
            uses its own stream, so they do not draw the same numbers.
        num_streams: number of streams drawn from `seed`.

    Returns:
        Boolean tensor: `True` where `uniform() < probability`, so a
        probability of 1 always selects and 0 never does.
    """
    if num_streams == 1:
        draws = random.uniform(ops.shape(probabilities), seed=seed)
    else:
        shape = (num_streams,) + tuple(ops.shape(probabilities))
        draws = ops.take(random.uniform(shape, seed=seed), stream, axis=0)
    return draws < ops.cast(probabilities, draws.dtype)


def expected_selected_fraction(beta, min_probability=0.0):
    """Expected fraction selected by the paper's rule for uniform percentiles.

    With `U ~ Uniform(0, 1)` and `p = min_probability`, this is
    `E[max(p, U**beta)] = p**(1 + 1/beta) + (1 - p**(1 + 1/beta)) / (beta + 1)`,
    which is `1 / (beta + 1)` without a floor.

    Args:
        beta: selectivity, `>= 0`.
        min_probability: floor of the probability, in `[0, 1]`.

    Returns:
        A Python float in `[0, 1]`.
    """
    if beta == 0 or min_probability >= 1:
        return 1.0
    if min_probability <= 0:
        return 1.0 / (beta + 1.0)
    mass = min_probability ** (1.0 + 1.0 / beta)
    return mass + (1.0 - mass) / (beta + 1.0)


def beta_for_fraction(target_fraction, min_probability=0.0):
    """The `beta` whose expected selected fraction is `target_fraction`.

    Inverts `expected_selected_fraction` (exactly without a floor, by
    bisection with one).

    Args:
        target_fraction: requested fraction of examples to select, in
            `(min_probability, 1]`.
        min_probability: floor of the probability, in `[0, 1)`.

    Returns:
        A Python float `beta >= 0`.

    Example:

    >>> beta_for_fraction(0.25)
    3.0
    """
    if not min_probability < target_fraction <= 1:
        raise ValueError(
            "`target_fraction` must be in (min_probability, 1], since the "
            "rule never selects fewer than `min_probability` of the "
            f"examples. Received: target_fraction={target_fraction}, "
            f"min_probability={min_probability}"
        )
    if min_probability <= 0:
        return 1.0 / target_fraction - 1.0
    low, high = 0.0, 1.0
    while expected_selected_fraction(high, min_probability) > target_fraction:
        high *= 2.0
    for _ in range(200):
        middle = 0.5 * (low + high)
        if expected_selected_fraction(middle, min_probability) > target_fraction:
            low = middle
        else:
            high = middle
    return 0.5 * (low + high)


def _stable_order(first, size):
    """Indices that put the `True` entries of `first` first, order kept."""
    index = ops.arange(size, dtype="int32")
    key = ops.where(first, index, index + size)
    return ops.cast(ops.argsort(key), "int32")


def selected_first_order(selected):
    """Permutation of a batch that puts the selected examples first.

    The order among selected (and among skipped) examples is kept, so the
    queue receives examples in the order they were scored.

    Args:
        selected: boolean tensor of shape `(batch_size,)`.

    Returns:
        int32 tensor of shape `(batch_size,)`.
    """
    return _stable_order(selected, ops.shape(selected)[0])


def is_integer(value):
    """Whether `value` is an int (Python or NumPy), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value):
    """Whether `value` is a real number (Python or NumPy), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_fraction(name, value, low=0.0, high=1.0, low_open=False):
    """Raises a ValueError unless `value` is a number in the given interval."""
    ok = is_real(value)
    ok = ok and math.isfinite(value)
    ok = ok and (value > low if low_open else value >= low) and value <= high
    if not ok:
        bracket = "(" if low_open else "["
        raise ValueError(
            f"`{name}` must be a number in {bracket}{low}, {high}]. "
            f"Received: {name}={value!r}"
        )
