"""The methods the benchmark compares, as `SelectiveBackpropModel` options."""

from keras_sb import strategies
from keras_sb.benchmark import sizing

# Options of a method that are not `SelectiveBackpropModel` arguments: how
# the benchmark trains it (see `methods`).
RUN_OPTIONS = ("staleness", "plain", "pruning", "prune_ratio", "anneal",
               "kept_fraction", "sized_by", "epochs")

# InfoBatch's defaults (Qin et al., ICLR 2024).
INFOBATCH_DEFAULTS = {"prune_ratio": 0.5, "anneal": 0.875}


def methods(betas=(1.0, 2.0, 3.0), reference_beta=2.0, stalenesses=(2, 3),
            anneal_from=0.875, min_probabilities=()):
    """The compared methods: name -> SelectiveBackpropModel options (None:
    plain keras.Model).

    Besides model arguments, options may hold (`RUN_OPTIONS`):
    - `staleness`: train with `StaleSelection(staleness)` on data with
      example ids;
    - `pruning`: `"infobatch"` (the `keras_sb.InfoBatch` callback, with
      `prune_ratio` and `anneal`) or `"random-subset"` (`keras_sb.RandomSubset`
      with `kept_fraction`), on data with example ids whose pipeline draws
      the kept examples;
    - `plain`: True for plain `keras.Model` training (as None);
    - `sized_by`, and `kept_fraction` naming a method: sized from other
      runs of the same seed (see `sizing`);
    - `epochs`: an int, the method's epochs (set by `sizing`).

    The methods:
    - `plain`, `sb-beta<b>`, `-pmin<P>` (the paper's rule at the reference
      beta with a floor `min_probability`), `-stale<n>`, `-anneal` (selects
      until `anneal_from` of its epochs (`end=`), then trains on every
      example), `uniform` and `importance` (at the backprop fraction of the
      reference beta, `1 / (beta + 1)`);
    - `infobatch`: InfoBatch with its defaults, for plain training's epochs;
    - `infobatch-equal-time`: the same, for as many epochs as take plain
      training's wall-clock;
    - `random-subset`: a fresh uniform random subset each epoch (RS2), of
      the fraction the seed's `infobatch` run kept in that epoch: the
      control of InfoBatch;
    - `plain-short`: plain training whose schedule fully decays within about
      the wall-clock of the seed's fastest other method.
    """
    fraction = 1.0 / (reference_beta + 1.0)
    compared = {"plain": None}
    for beta in betas:
        compared[f"sb-beta{beta:g}"] = {"beta": float(beta)}
    for floor in min_probabilities:
        compared[f"sb-beta{reference_beta:g}-pmin{floor:g}"] = {
            "beta": float(reference_beta), "min_probability": float(floor)}
    for staleness in stalenesses:
        compared[f"sb-beta{reference_beta:g}-stale{staleness}"] = {
            "beta": float(reference_beta), "staleness": int(staleness)}
    compared[f"sb-beta{reference_beta:g}-anneal"] = {
        "beta": float(reference_beta), "end": float(anneal_from)}
    compared["uniform"] = {"strategy": strategies.UniformSubset(fraction)}
    compared["importance"] = {
        "strategy": strategies.LossProportional(fraction, reweight=True)
    }
    compared[sizing.INFOBATCH] = {"pruning": "infobatch", **INFOBATCH_DEFAULTS}
    compared["infobatch-equal-time"] = {"pruning": "infobatch",
                                        **INFOBATCH_DEFAULTS,
                                        "sized_by": "equal-time"}
    compared["random-subset"] = {"pruning": "random-subset",
                                 "kept_fraction": sizing.INFOBATCH}
    compared["plain-short"] = {"plain": True, "sized_by": "fastest"}
    return compared


def default_method_names(reference_beta=2.0, staleness=3):
    """The methods `keras-sb bench` runs without `--methods`: plain training,
    InfoBatch (same epochs and equal time), its random-subset control, plain
    training at the fastest method's time, and the paper's rule at the
    reference beta, fresh and stale."""
    return ["plain", sizing.INFOBATCH, "infobatch-equal-time", "random-subset",
            "plain-short", f"sb-beta{reference_beta:g}",
            f"sb-beta{reference_beta:g}-stale{staleness}"]


def choose_methods(compared, names):
    """The methods of `compared` (see `methods`) named in `names`, in that
    order; a ValueError for a name that is not one of them."""
    unknown = sorted(set(names) - set(compared))
    if unknown:
        raise ValueError(f"Unknown methods {unknown}; the methods are "
                         f"{list(compared)}. Received: --methods "
                         f"{' '.join(names)}")
    return {name: compared[name] for name in names}
