"""Methods sized from other methods' runs of the same seed.

Some compared methods are defined by what other methods measured in the same
seed's runs (see `comparison.methods`):

- `infobatch-equal-time` (`"sized_by": "equal-time"`): InfoBatch for as many
  epochs as fit in plain training's wall-clock, by the time per epoch of the
  seed's `infobatch` run: `round(E * plain seconds / infobatch seconds)`, with
  `E` the epochs of the `infobatch` run (plain's);
- `plain-short` (`"sized_by": "fastest"`): plain training with a schedule
  that fully decays within about the wall-clock of the fastest other method
  of the seed (not plain itself): `max(1, round(plain epochs * fastest
  seconds / plain seconds))`;
- `random-subset` (`"kept_fraction": "infobatch"`): per epoch, the fraction
  of the training examples that the seed's `infobatch` run kept.

So the methods of a seed run in an order where those runs exist
(`run_order`), and `sized_options` turns the options of a sized method into
concrete ones (`"epochs"` an int, `"kept_fraction"` a list).
"""

# Name of the run that `"sized_by": "equal-time"` and
# `"kept_fraction": "infobatch"` take their measures from.
INFOBATCH = "infobatch"
PLAIN = "plain"


def is_plain_training(options):
    """Whether the method of `options` is a plain `keras.Model` (`plain`,
    `plain-short`): None, or options with `"plain": True`."""
    return options is None or bool(options.get("plain"))


def dependencies(options):
    """Names of the methods whose runs of the same seed the method of
    `options` is sized from (`"fastest"`: plain, and every other method
    run before it, which `run_order` puts first)."""
    if options is None:
        return set()
    needed = set()
    if options.get("sized_by") == "equal-time":
        needed |= {PLAIN, INFOBATCH}
    elif options.get("sized_by") == "fastest":
        needed.add(PLAIN)
    if isinstance(options.get("kept_fraction"), str):
        needed.add(options["kept_fraction"])
    return needed


def check_dependencies(compared):
    """Raises a ValueError naming the methods a chosen method needs and that
    are not chosen (`compared`: name -> options)."""
    for name, options in compared.items():
        missing = sorted(dependencies(options) - set(compared))
        if missing:
            raise ValueError(
                f"The method {name} is sized from the runs of {missing} of "
                f"the same seed: add them to --methods. Received: methods "
                f"{list(compared)}")
        if (options or {}).get("sized_by") == "fastest" and not any(
                not is_plain_training(other) for other in compared.values()):
            raise ValueError(
                f"The method {name} is plain training as long as the fastest "
                "other method: add a selective or pruning method to "
                f"--methods. Received: methods {list(compared)}")


def run_order(compared):
    """The names of `compared` in the order a seed runs them: the methods
    sized from nothing (in their order), then those sized from other runs,
    with the `"fastest"`-sized ones last (they take the fastest of all)."""
    def rank(name):
        options = compared[name]
        if (options or {}).get("sized_by") == "fastest":
            return 2
        return 1 if dependencies(options) else 0

    return sorted(compared, key=rank)  # Stable: keeps the order within a rank.


def equal_time_epochs(epochs, plain_seconds, seconds):
    """Epochs for as long as plain training took: `max(1, round(epochs *
    plain_seconds / seconds))`, for a method that took `seconds` for
    `epochs` epochs."""
    return max(1, int(round(epochs * plain_seconds / seconds)))


def plain_short_epochs(plain_epochs, plain_seconds, fastest_seconds):
    """Epochs of plain training for about `fastest_seconds`: `max(1,
    round(plain_epochs * fastest_seconds / plain_seconds))`."""
    return max(1, int(round(plain_epochs * fastest_seconds / plain_seconds)))


def kept_fractions(points):
    """The per-epoch `kept_fraction` of a learning curve (of an `infobatch`
    run)."""
    fractions = [point.get("kept_fraction") for point in points]
    if not fractions or any(f is None for f in fractions):
        raise ValueError(
            "The run to take kept fractions from recorded no `kept_fraction` "
            f"in some epochs. Received: {fractions}")
    return [float(f) for f in fractions]


def sized_options(name, options, seed_runs, plain_epochs):
    """The options of method `name` with its sizes made concrete.

    Args:
        name: the method's name (for messages).
        options: its options (see `comparison.methods`).
        seed_runs: dict name -> learning curve of the methods this seed ran
            so far.
        plain_epochs: epochs of plain training.

    Returns:
        `options` itself when nothing in it is sized, else a copy with an
        int `"epochs"` and/or a list `"kept_fraction"` (one per epoch; the
        epochs are then as many).
    """
    if not dependencies(options):
        return options
    missing = sorted(dependencies(options) - set(seed_runs))
    if missing:
        raise ValueError(f"{name} needs the runs of {missing} of the same "
                         f"seed first. Received: runs of {sorted(seed_runs)}")
    options = dict(options)
    seconds = {other: points[-1]["seconds"] for other, points in seed_runs.items()}
    sized_by = options.pop("sized_by", None)
    if sized_by == "equal-time":
        options["epochs"] = equal_time_epochs(
            len(seed_runs[INFOBATCH]), seconds[PLAIN], seconds[INFOBATCH])
    elif sized_by == "fastest":
        others = [s for other, s in seconds.items()
                  if other != PLAIN and other != name]
        if not others:
            raise ValueError(f"{name} needs the run of another method than "
                             "plain in the same seed first.")
        options["epochs"] = plain_short_epochs(plain_epochs, seconds[PLAIN],
                                               min(others))
    if isinstance(options.get("kept_fraction"), str):
        fractions = kept_fractions(seed_runs[options["kept_fraction"]])
        options["kept_fraction"] = fractions
        options["epochs"] = len(fractions)
    return options
