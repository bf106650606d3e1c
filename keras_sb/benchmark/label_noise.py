"""Label noise on the training set (`keras-sb bench --label-noise`).

Loss-based selection is known to suffer from mislabelled examples (their
loss stays high, so they keep being chosen). `--label-noise F` gives a
fraction `F` of the training examples a wrong label, the same ones in every
run (a fixed seed, independent of the runs' seeds); the evaluation set keeps
its true labels.
"""

import numpy as np

# The seed of the relabelling: the same noisy labels for every run and
# method, whatever `--seeds` are.
LABEL_NOISE_SEED = 0


def noisy_labels(labels, fraction, classes, seed=LABEL_NOISE_SEED):
    """Labels with exactly `round(fraction * n)` of them changed.

    The changed examples are a uniform random subset of the `n` examples;
    each gets a class drawn uniformly among the `classes - 1` classes that
    are not its label, so every chosen label really changes (symmetric
    label noise without the unchanged draws).

    A pure function of its arguments: the same labels, fraction, classes
    and seed give the same result.

    Args:
        labels: int array `(n,)` of classes `0 ... classes - 1`.
        fraction: in `[0, 1]`, the fraction of labels to change.
        classes: number of classes, >= 2.
        seed: seed of the draws (not the runs' seeds).

    Returns:
        A new int array of `labels`' dtype and shape; `labels` is unchanged.
    """
    labels = np.asarray(labels)
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(
            f"`fraction` must be in [0, 1]. Received: fraction={fraction!r}")
    if classes < 2:
        raise ValueError(
            f"Label noise needs >= 2 classes. Received: classes={classes!r}")
    if labels.ndim != 1:
        raise ValueError("`labels` must be one class per example, shape (n,). "
                         f"Received: shape {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= classes):
        raise ValueError(
            f"`labels` must be in [0, {classes - 1}]. Received: labels from "
            f"{labels.min()} to {labels.max()}")
    rng = np.random.default_rng(seed)
    count = int(round(fraction * len(labels)))
    # The first draw: `changed_examples` repeats it.
    changed = rng.choice(len(labels), size=count, replace=False)
    offsets = rng.integers(1, classes, size=count)
    noisy = labels.copy()
    noisy[changed] = (labels[changed] + offsets) % classes
    return noisy


def changed_examples(count, fraction, seed=LABEL_NOISE_SEED):
    """The indices of the examples whose label `noisy_labels` changes, for
    `count` labels (its first draw, from the same seed).

    Args:
        count: the number of labels.
        fraction: in `[0, 1]`, as given to `noisy_labels`.
        seed: as given to `noisy_labels`.
    """
    rng = np.random.default_rng(seed)
    return rng.choice(count, size=int(round(fraction * count)), replace=False)


def with_noisy_labels(train, fraction, classes, seed=LABEL_NOISE_SEED):
    """A loaded training set with `noisy_labels`.

    Args:
        train: `(images, labels)` NumPy arrays, or an unbatched
            `tf.data.Dataset` of `(image, label)` whose order is the same in
            every pass (as `keras_sb.datasets.load`'s is).
        fraction, classes, seed: see `noisy_labels`.

    Returns:
        The same kind of training set, with the noisy labels.
    """
    if isinstance(train, tuple):
        images, labels = train
        return images, noisy_labels(labels, fraction, classes, seed)
    import tensorflow as tf

    labels = np.fromiter((int(label) for _, label in train.as_numpy_iterator()),
                         dtype="int64")
    noisy = tf.constant(noisy_labels(labels, fraction, classes, seed),
                        dtype=train.element_spec[1].dtype)

    def relabel(index, element):
        image, _ = element
        return image, tf.gather(noisy, index)

    return train.enumerate().map(relabel)
