"""Training of the compared methods: models, schedule, input pipelines and
the run over every method and seed.

The learning rate follows the epoch (a cosine decay over the epochs, set at
each epoch's start), not `optimizer.iterations`, because Selective-Backprop
takes fewer optimizer steps per epoch: every method gets the same schedule
per epoch of data.
"""

import math

import keras

from keras_sb import data as data_utils
from keras_sb.benchmark import provenance
from keras_sb.benchmark.comparison import methods
from keras_sb.benchmark.models import network_from_config
from keras_sb.benchmark.results import summarize
from keras_sb.benchmark.timing import LearningCurve
from keras_sb.model import SelectiveBackpropModel
from keras_sb.stale import StaleSelection


def cosine_learning_rate(base, epochs):
    """Per-epoch cosine decay from `base` to 0 (for LearningRateScheduler)."""
    def schedule(epoch, learning_rate=None):
        return base * 0.5 * (1.0 + math.cos(math.pi * epoch / epochs))

    return schedule


def epochs_of(config, options):
    """Epochs of a method: `selective_epochs` for all but plain training."""
    if options is None:
        return config["epochs"]
    return config.get("selective_epochs") or config["epochs"]


def build_model(options, config, seed, initial_weights=None):
    """The compiled model of one method: the network of `config` (with
    `initial_weights`), as a `SelectiveBackpropModel` with `options`, or
    plain when `options` is None."""
    network = network_from_config(config)
    if initial_weights is not None:
        network.set_weights(initial_weights)
    if options is None:
        model = network
    else:
        options = {k: v for k, v in options.items() if k != "staleness"}
        model = SelectiveBackpropModel.from_model(network, seed=seed, **options)
    model.compile(
        optimizer=keras.optimizers.SGD(config["learning_rate"], momentum=0.9,
                                       nesterov=True, weight_decay=5e-4),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        jit_compile=config["jit_compile"],
    )
    return model


def train_one(options, initial_weights, train, test, config, seed,
              progress=None, train_with_ids=None):
    """Trains one method from `initial_weights`; returns its learning curve.

    Methods with a `staleness` train with `StaleSelection` on
    `train_with_ids(model)`: the same training data with example ids (and,
    if the function makes them so, the stale draws in the input pipeline).
    """
    keras.utils.set_random_seed(seed)
    model = build_model(options, config, seed, initial_weights)
    epochs = epochs_of(config, options)
    curve = LearningCurve(config["train_examples"], progress)
    schedule = keras.callbacks.LearningRateScheduler(
        cosine_learning_rate(config["learning_rate"], epochs))
    callbacks = [schedule, curve]
    staleness = (options or {}).get("staleness")
    if staleness:
        if train_with_ids is None:
            raise ValueError("A method with `staleness` needs `train_with_ids`.")
        train = train_with_ids(model)
        callbacks.insert(0, StaleSelection(staleness))
    # The training batches shuffle themselves (a tf.data shuffle, or the
    # ArrayPipeline's seeded permutation): `fit` ignores `shuffle` for a
    # tf.data dataset (with a warning per call) and would only reorder the
    # ArrayPipeline's already shuffled batches.
    model.fit(train, epochs=epochs, validation_data=test,
              callbacks=callbacks, shuffle=False, verbose=0)
    return curve.points


def pipelines(train, test, config):
    """Training and test batches from a loaded dataset.

    `train` and `test` are unbatched `tf.data.Dataset`s (`datasets.load`),
    or `(images, labels)` NumPy arrays (`datasets.load_arrays`), which give
    `data.ArrayPipeline`s and need no TensorFlow.
    """
    if isinstance(train, tuple):
        test_batches = data_utils.ArrayPipeline(*test, 500, augment=False,
                                                shuffle=False)
    else:
        test_batches = data_utils.evaluation_pipeline(test, 500)
        for _ in train.concatenate(test):  # Fill the decoding caches once.
            pass
    return training_batches(train, config), test_batches


def training_batches(train, config, example_ids=False, stale_model=None):
    """The training batches of `config` from a loaded training set.

    Args:
        train: unbatched `tf.data.Dataset` or `(images, labels)` arrays.
        config: dict with `batch_size` and `seeds` (and `augment`, default
            True).
        example_ids: whether batches carry example ids (stale selection).
        stale_model: the model whose stale epochs are drawn in the pipeline
            (`data.stale_filter`); None: the train step draws.
    """
    augment = config.get("augment", True)
    if isinstance(train, tuple):
        return data_utils.ArrayPipeline(
            *train, config["batch_size"], augment=augment,
            seed=config["seeds"][0], example_ids=example_ids,
            stale_model=stale_model)
    return data_utils.training_pipeline(
        train, config["batch_size"], augment=augment, seed=config["seeds"][0],
        example_ids=example_ids, stale_model=stale_model)


def run(train, test, config, compared=None, progress=True):
    """Runs every method with every seed; returns `(runs, summary)`.

    Args:
        train, test: unbatched `tf.data.Dataset`s of `(uint8 image, label)`,
            or `(images, labels)` NumPy arrays (see `pipelines`).
        config: dict with `epochs`, `batch_size`, `seeds`, `learning_rate`,
            `jit_compile`, `train_examples`, `input_shape`, `classes`, and
            optionally `target` / `target_gap`.
        compared: dict name -> options (see `methods`); defaults to all.
    """
    # Read before training: results record the commit of the code that ran,
    # even if the checkout changes during a long run.
    provenance.source_commit()
    compared = compared or methods()
    train_batches, test_batches = pipelines(train, test, config)
    pipeline_draws = config.get("stale_draws", "pipeline") == "pipeline"

    def train_with_ids(model):
        return training_batches(train, config, example_ids=True,
                                stale_model=model if pipeline_draws else None)
    bar = None
    if progress:
        bar = keras.utils.Progbar(
            len(config["seeds"]) * sum(epochs_of(config, options)
                                       for options in compared.values()),
            unit_name="epoch")
    runs = {name: [] for name in compared}
    for seed in config["seeds"]:
        keras.utils.set_random_seed(seed)
        initial = network_from_config(config).get_weights()
        for name, options in compared.items():
            runs[name].append(train_one(options, initial, train_batches,
                                        test_batches, config, seed, bar,
                                        train_with_ids))
    summary = summarize(runs, config.get("target_gap", 0.005),
                        config.get("target"))
    return runs, summary
