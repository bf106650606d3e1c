"""The selection math of ALGORITHM.md, tested as pure functions."""

import math

import keras
import numpy as np
import pytest
from keras import ops

from keras_sb import selection
from keras_sb import strategies

NAN = float("nan")


def numpy(x):
    return ops.convert_to_numpy(x)


def z_tolerance(p, n, z=5.0):
    """Half-width of a z-sigma interval for a binomial frequency.

    A frequency of n Bernoulli(p) draws has standard deviation
    sqrt(p (1 - p) / n); a 5-sigma interval is wrongly left with probability
    below 1e-6 per check. For p in {0, 1} the frequency is exact.
    """
    return z * math.sqrt(p * (1 - p) / n)


class TestHistory:
    def test_appends_in_order_and_advances(self):
        history = ops.full((5,), NAN)
        history, position = selection.append_to_history(
            history, 0, ops.array([1.0, 2.0, 3.0]))
        np.testing.assert_array_equal(numpy(history)[:3], [1, 2, 3])
        assert np.isnan(numpy(history)[3:]).all()
        assert int(position) == 3
        history, position = selection.append_to_history(
            history, position, ops.array([4.0, 5.0, 6.0]))
        # Ring buffer: 6 overwrote the oldest value.
        np.testing.assert_array_equal(numpy(history), [6, 2, 3, 4, 5])
        assert int(position) == 1

    def test_non_finite_losses_never_enter(self):
        history = ops.full((4,), NAN)
        history, position = selection.append_to_history(
            history, 0, ops.array([1.0, NAN, float("inf"), -float("inf"), 2.0]))
        values = numpy(history)
        np.testing.assert_array_equal(values[:2], [1, 2])
        assert np.isnan(values[2:]).all()
        assert int(position) == 2

    def test_batch_larger_than_history_keeps_most_recent(self):
        history = ops.full((4,), NAN)
        losses = ops.arange(10, dtype="float32")
        history, position = selection.append_to_history(history, 1, losses)
        # Losses 0..9 go to slots (1 + r) % 4; the last write wins.
        expected = np.full(4, np.nan)
        for rank in range(10):
            expected[(1 + rank) % 4] = rank
        np.testing.assert_array_equal(numpy(history), expected)
        assert int(position) == (1 + 10) % 4

    def test_matches_a_python_deque(self):
        rng = np.random.default_rng(3)
        size = 7
        history, position = ops.full((size,), NAN), 0
        reference = []
        for _ in range(30):
            batch = rng.normal(size=rng.integers(1, 12)).astype("float32")
            batch[rng.random(batch.shape) < 0.2] = np.nan
            history, position = selection.append_to_history(
                history, position, ops.array(batch))
            reference.extend(v for v in batch if np.isfinite(v))
            reference = reference[-size:]
            assert sorted(v for v in numpy(history) if np.isfinite(v)) == sorted(
                reference)


class TestPercentileRank:
    def test_fraction_strictly_below(self):
        history = ops.array([0.0, 1.0, 1.0, 2.0, NAN])
        ranks = numpy(selection.percentile_rank(
            ops.array([-1.0, 0.0, 1.0, 1.5, 2.0, 3.0]), history))
        np.testing.assert_allclose(ranks, [0, 0, 0.25, 0.75, 0.75, 1.0])

    def test_empty_history_gives_zero(self):
        ranks = selection.percentile_rank(ops.array([1.0]), ops.full((3,), NAN))
        assert numpy(ranks).tolist() == [0.0]


class TestTiedLosses:
    """Equal losses (Keras clips softmax probabilities to [1e-7, 1 - 1e-7]
    on JAX, so confidently wrong examples all have loss 16.118) get the
    probability of a random tie-break; distinct losses the exact rule."""

    def test_range_counts_other_equal_losses(self):
        history = ops.array([0.0, 1.0, 1.0, 1.0, 2.0, NAN])
        lower, upper = (numpy(t) for t in selection.percentile_range(
            ops.array([0.0, 1.0, 2.0]), history))
        np.testing.assert_allclose(lower, [0.0, 0.2, 0.8])
        np.testing.assert_allclose(upper, [0.0, 0.6, 0.8])

    def test_zero_losses_keep_the_strict_rank(self):
        """Zero losses (weight 0) give no gradient: never spread over ties."""
        history = ops.array([0.0, 0.0, 0.0, 1.0])
        lower, upper = selection.percentile_range(ops.array([0.0, 1.0]),
                                                  history)
        assert numpy(lower).tolist() == numpy(upper).tolist() == [0.0, 0.75]

    def test_empty_history_gives_empty_range(self):
        lower, upper = selection.percentile_range(ops.array([1.0]),
                                                  ops.full((3,), NAN))
        assert numpy(lower).tolist() == numpy(upper).tolist() == [0.0]

    @pytest.mark.parametrize("beta,min_probability", [(1, 0), (2, 0), (3, 0),
                                                      (2, 0.1)])
    def test_ties_select_as_a_random_tie_break_would(self, beta,
                                                     min_probability):
        """A history of 100 distinct low losses, 800 tied at the clipped
        maximum and 124 tied at the clipped minimum: each group's probability
        is the mean over random orders within the group (Monte Carlo)."""
        rng = np.random.default_rng(beta)
        low, middle, high = 1e-7, rng.uniform(0.1, 5.0, 100), 16.118
        history = np.concatenate([[low] * 124, middle, [high] * 800])
        losses = ops.array(history.astype("float32"))
        lower, upper = selection.percentile_range(losses, losses)
        probability = numpy(selection.biggest_losers_probability(
            lower, beta, min_probability, upper_percentile=upper))
        # Reference: break the ties with tiny random offsets, apply the
        # paper's rule to the distinct losses, average per group.
        reference = np.zeros(len(history))
        for _ in range(200):
            jittered = history + rng.uniform(0, 1e-3, len(history)) * (
                (history == low) | (history == high))
            ranks = (jittered[None, :] < jittered[:, None]).mean(axis=1)
            reference += np.maximum(min_probability, ranks ** beta) / 200
        for group in (history == low, history == high):
            assert probability[group].mean() == pytest.approx(
                reference[group].mean(), abs=0.01)
        distinct = ~((history == low) | (history == high))
        np.testing.assert_allclose(probability[distinct], reference[distinct],
                                   atol=1e-6)
        # Over the whole history, as the rule promises for any losses.
        assert probability.mean() == pytest.approx(
            selection.expected_selected_fraction(beta, min_probability),
            abs=0.01)


class TestProbabilityRule:
    @pytest.mark.parametrize("beta", [0.0, 1.0, 2.0, 3.0, 0.5])
    @pytest.mark.parametrize("min_probability", [0.0, 0.2])
    def test_formula(self, beta, min_probability):
        pct = np.linspace(0, 1, 11).astype("float32")
        got = numpy(selection.biggest_losers_probability(
            ops.array(pct), beta, min_probability))
        np.testing.assert_allclose(
            got, np.maximum(min_probability, pct ** beta), rtol=1e-6)

    @pytest.mark.parametrize("beta,min_probability", [(1, 0), (2, 0), (3, 0),
                                                      (2, 0.1), (3, 0.3)])
    def test_empirical_frequency_per_percentile(self, beta, min_probability):
        """Selection frequency at each percentile matches max(p_min, pct^beta).

        The history is a fixed grid of 1000 distinct losses, so a loss placed
        just above grid value k has percentile rank exactly (k + 1) / 1000.
        """
        size, draws = 1000, 20000
        history = ops.arange(size, dtype="float32")
        seed = keras.random.SeedGenerator(int(10 * beta + 100 * min_probability))
        for k in (-1, 99, 249, 499, 749, 899, 989, 998):
            pct = (k + 1) / size
            expected = max(min_probability, pct ** beta)
            losses = ops.full((draws,), k + 0.5)
            probability = selection.biggest_losers_probability(
                selection.percentile_rank(losses, history), beta, min_probability)
            frequency = float(np.mean(numpy(selection.bernoulli(probability, seed))))
            assert abs(frequency - expected) <= z_tolerance(expected, draws) + 1e-9, (
                pct, frequency, expected)

    def test_lowest_loss_is_never_selected_without_floor(self):
        """The lowest loss, itself in the history as in the model, has rank
        0. Ranked by `<=` it would have (1/4) ** 3 = 1/64: about 78 of the
        5000 draws, and P(none) = e ** -78."""
        history = ops.array([1.0, 2.0, 3.0, 4.0])
        losses = ops.ones((5000,))
        probability = strategies.BiggestLosers(beta=3.0).probabilities(
            losses, history)
        np.testing.assert_array_equal(numpy(probability), 0.0)
        seed = keras.random.SeedGenerator(0)
        assert not numpy(selection.bernoulli(probability, seed)).any()

    @pytest.mark.parametrize("beta,min_probability", [(1, 0), (3, 0),
                                                      (2, 0.1)])
    def test_frequency_when_the_losses_are_in_the_history(
            self, beta, min_probability):
        """As in the model: a batch of 20 distinct losses is appended to the
        history, then ranked, so the loss of rank r (from 0) has
        pct = r / 20 exactly, not (r + 1) / 20. Each loss is drawn 20,000
        times; the frequency must be within 5 sigma of
        max(min_probability, pct ** beta). A rank counted with `<=` moves
        p by at least 0.05 ** beta at r = 0 (beta 1: 0.05, over 14 sigma)."""
        size, draws = 20, 20000
        losses = np.random.default_rng(beta).permutation(
            np.arange(1, size + 1)).astype("float32")
        history, _ = selection.append_to_history(
            ops.full((size,), NAN), 0, ops.array(losses))
        probability = strategies.BiggestLosers(
            beta, min_probability).probabilities(ops.array(losses), history)
        rank = np.argsort(np.argsort(losses))
        expected = np.maximum(min_probability, (rank / size) ** beta)
        np.testing.assert_allclose(numpy(probability), expected, rtol=1e-6,
                                   atol=1e-7)
        seed = keras.random.SeedGenerator(beta)
        repeated = ops.tile(ops.expand_dims(probability, 0), (draws, 1))
        frequency = numpy(selection.bernoulli(repeated, seed)).mean(axis=0)
        for observed, p in zip(frequency, expected):
            assert abs(observed - p) <= z_tolerance(p, draws) + 1e-9, (p, observed)

    def test_frequency_in_the_low_probability_tail(self):
        """Where beta = 3 puts most examples: p = 0.2 ** 3, 0.3 ** 3 and
        0.4 ** 3 (0.008 to 0.064), 10 ** 6 draws each. Sigma is at most
        0.0112 p there, so the 5-sigma band is under 5.6% of p and a 10%
        bias of the draws is at least 9 sigma."""
        size, draws = 1000, 1_000_000
        history = ops.arange(size, dtype="float32")
        seed = keras.random.SeedGenerator(11)
        strategy = strategies.BiggestLosers(beta=3.0)
        for k in (200, 300, 400):
            expected = (k / size) ** 3
            # Loss k is in the history once: pct = k / size.
            probability = strategy.probabilities(ops.full((1,), float(k)),
                                                 history)
            probability = ops.tile(probability, (draws,))
            frequency = float(np.mean(numpy(selection.bernoulli(probability,
                                                                seed))))
            assert abs(frequency - expected) <= z_tolerance(expected, draws), (
                k, frequency, expected)

    @pytest.mark.parametrize("beta,min_probability", [(1, 0), (2, 0), (3, 0),
                                                      (2, 0.25)])
    def test_selected_fraction_of_the_full_rule(self, beta, min_probability):
        """Streaming i.i.d. losses through history, rank and draw selects
        E[max(p_min, U^beta)] of the examples: 1/(beta+1) without a floor."""
        rng = np.random.default_rng(beta)
        history, position = ops.full((1024,), NAN), 0
        seed = keras.random.SeedGenerator(7)
        selected = scored = 0
        for step in range(208):
            losses = ops.array(rng.exponential(size=128).astype("float32"))
            history, position = selection.append_to_history(history, position, losses)
            probability = selection.biggest_losers_probability(
                selection.percentile_rank(losses, history), beta, min_probability)
            if step >= 8:  # Once the history is full.
                selected += int(numpy(selection.bernoulli(probability, seed)).sum())
                scored += 128
        expected = selection.expected_selected_fraction(beta, min_probability)
        if min_probability == 0:
            assert expected == pytest.approx(1 / (beta + 1))
        assert abs(selected / scored - expected) <= z_tolerance(expected, scored)


class TestExpectedFraction:
    @pytest.mark.parametrize("beta,min_probability", [(1, 0), (3, 0), (2, 0.1),
                                                      (0.5, 0.4), (3, 0.9)])
    def test_matches_monte_carlo(self, beta, min_probability):
        u = np.random.default_rng(0).random(2_000_000)
        monte_carlo = np.maximum(min_probability, u ** beta).mean()
        assert selection.expected_selected_fraction(
            beta, min_probability) == pytest.approx(monte_carlo, abs=2e-3)

    @pytest.mark.parametrize("fraction,min_probability", [(0.5, 0), (0.25, 0),
                                                          (0.1, 0), (0.3, 0.1),
                                                          (0.6, 0.5)])
    def test_beta_for_fraction_inverts_it(self, fraction, min_probability):
        beta = selection.beta_for_fraction(fraction, min_probability)
        assert selection.expected_selected_fraction(
            beta, min_probability) == pytest.approx(fraction, abs=1e-9)

    def test_paper_values(self):
        assert selection.beta_for_fraction(0.5) == 1.0
        assert selection.beta_for_fraction(0.25) == 3.0

    @pytest.mark.parametrize("fraction,min_probability", [(0.0, 0), (1.5, 0),
                                                          (0.1, 0.2)])
    def test_unreachable_fraction_raises(self, fraction, min_probability):
        with pytest.raises(ValueError, match="Received: target_fraction="):
            selection.beta_for_fraction(fraction, min_probability)


def test_bernoulli_extremes():
    seed = keras.random.SeedGenerator(0)
    draws = numpy(selection.bernoulli(ops.array([0.0, 1.0] * 5000), seed))
    assert not draws[0::2].any() and draws[1::2].all()


def test_selected_first_order_is_stable():
    order = numpy(selection.selected_first_order(
        ops.array([False, True, False, True, True])))
    assert order.tolist() == [1, 3, 4, 0, 2]
