"""The methods the benchmark compares, as `SelectiveBackpropModel` options."""

from keras_sb import strategies


def methods(betas=(1.0, 2.0, 3.0), reference_beta=2.0, stalenesses=(2, 3),
            anneal_from=0.875, min_probabilities=()):
    """The compared methods: name -> SelectiveBackpropModel options (None:
    plain keras.Model). A `staleness` option means training with
    `StaleSelection(staleness)` on data with example ids. The `-anneal`
    method selects until `anneal_from` of its epochs (`end=`), then trains
    on every example, as InfoBatch anneals to the full data. The `-pmin`
    methods are the paper's rule at the reference beta with a floor
    `min_probability` on the selection probability."""
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
    return compared


def choose_methods(compared, names):
    """The methods of `compared` (see `methods`) named in `names`, in that
    order; a ValueError for a name that is not one of them."""
    unknown = sorted(set(names) - set(compared))
    if unknown:
        raise ValueError(f"Unknown methods {unknown}; the methods are "
                         f"{list(compared)}. Received: --methods "
                         f"{' '.join(names)}")
    return {name: compared[name] for name in names}
