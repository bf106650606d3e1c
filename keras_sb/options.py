"""The selection options of `SelectiveBackpropModel` and their checks.

`SelectionOptions` is what the constructor was given, checked once;
`get_config` saves it (`to_config`) and `from_config` rebuilds from it.
"""

from typing import NamedTuple

import keras

from keras_sb import schedule
from keras_sb import selection
from keras_sb import strategies

# The options of the default strategy, which `strategy` replaces.
PAPER_OPTIONS = ("beta", "min_probability", "target_fraction")


class SelectionOptions(NamedTuple):
    """The checked selection options of a model.

    Attributes:
        strategy: a `keras_sb.strategies.SelectionStrategy`.
        history_size: int, recent losses the percentiles are taken over.
        backprop_batch_size: int, or None for the batch size of `fit`.
        start: when selection starts, as parsed by `schedule.parse_time`.
        end: when it stops (parsed), or None.
        seed: int seed of the draws, or None.
    """

    strategy: strategies.SelectionStrategy
    history_size: int
    backprop_batch_size: int | None
    start: object
    end: object
    seed: int | None

    def to_config(self):
        """The options as `get_config` saves them (`CONFIG_KEYS`)."""
        return {
            "strategy": keras.saving.serialize_keras_object(self.strategy),
            "history_size": self.history_size,
            "backprop_batch_size": self.backprop_batch_size,
            "start": schedule.format_time(self.start),
            "end": schedule.format_time(self.end),
            "seed": self.seed,
        }


# The keys of `SelectionOptions.to_config`, which `get_config` adds to Keras's.
CONFIG_KEYS = ("strategy", "history_size", "backprop_batch_size", "start",
               "end", "seed")


def selection_options(*, beta=None, min_probability=None, target_fraction=None,
                      strategy=None, history_size=1024,
                      backprop_batch_size=None, start="1ep", end=None,
                      seed=None):
    """Checks the constructor's selection options (see
    `SelectiveBackpropModel`).

    Returns:
        A `SelectionOptions`.

    Raises:
        ValueError: for an option out of range, or `strategy` given together
            with an option of the paper's rule.
    """
    paper_options = {"beta": beta, "min_probability": min_probability,
                     "target_fraction": target_fraction}
    if strategy is not None:
        given = {k: v for k, v in paper_options.items() if v is not None}
        if given:
            raise ValueError(
                "Pass either `strategy` or the options of the default "
                f"strategy ({', '.join(paper_options)}), not both. "
                f"Received: strategy={strategy!r}, "
                + ", ".join(f"{k}={v!r}" for k, v in given.items())
            )
        strategy = strategies.get(strategy)
    else:
        strategy = strategies.BiggestLosers(
            beta=beta,
            min_probability=0.0 if min_probability is None else min_probability,
            target_fraction=target_fraction,
        )
    if not selection.is_integer(history_size) or history_size < 1:
        raise ValueError(
            "`history_size` must be an int >= 1. "
            f"Received: history_size={history_size!r}"
        )
    if backprop_batch_size is not None and (
        not selection.is_integer(backprop_batch_size) or backprop_batch_size < 1
    ):
        raise ValueError(
            "`backprop_batch_size` must be None or an int >= 1. "
            f"Received: backprop_batch_size={backprop_batch_size!r}"
        )
    if seed is not None and not selection.is_integer(seed):
        raise ValueError(f"`seed` must be None or an int. Received: seed={seed!r}")
    start = schedule.parse_time("start", start)
    end = schedule.parse_time("end", end)
    schedule.check_window(start, end)
    return SelectionOptions(
        strategy=strategy,
        history_size=int(history_size),
        backprop_batch_size=(None if backprop_batch_size is None
                             else int(backprop_batch_size)),
        start=start,
        end=end,
        seed=None if seed is None else int(seed),
    )


def is_functional_call(args, kwargs):
    """Whether constructor arguments describe a functional model."""
    return (
        len(args) == 2
        or (len(args) == 1 and "outputs" in kwargs)
        or ("inputs" in kwargs and "outputs" in kwargs)
    )
