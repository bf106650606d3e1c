"""Training of the compared methods: models, schedule, input pipelines and
the run over every method and seed.

The learning rate decays on a cosine to 0 over each method's epochs. Plain
`keras.Model` methods follow `keras.optimizers.schedules.CosineDecay` over
their optimizer steps (`epochs * ceil(train_examples / batch_size)`); the
selective and pruning methods take fewer optimizer steps per epoch, so the
same schedule is wrapped in `keras_sb.EpochSchedule`, which makes it follow
the fraction of the planned epochs done: every method gets the same
learning rate per epoch of data.
"""

import functools
import math

import keras

from keras_sb import data as data_utils
from keras_sb.benchmark import provenance
from keras_sb.benchmark import sizing
from keras_sb.benchmark.comparison import RUN_OPTIONS
from keras_sb.benchmark.comparison import methods
from keras_sb.benchmark.models import network_from_config
from keras_sb.benchmark.results import summarize
from keras_sb.benchmark.timing import LearningCurve
from keras_sb.epoch_schedule import EpochSchedule
from keras_sb.model import SelectiveBackpropModel
from keras_sb.pruning import InfoBatch
from keras_sb.pruning import RandomSubset
from keras_sb.stale import StaleSelection


def cosine_learning_rate(base, epochs):
    """Per-epoch cosine decay from `base` to 0 (for LearningRateScheduler;
    `keras-sb bench` itself uses `learning_rate_schedule`)."""
    def schedule(epoch, learning_rate=None):
        return base * 0.5 * (1.0 + math.cos(math.pi * epoch / epochs))

    return schedule


def steps_per_epoch(config):
    """Optimizer steps of an epoch of plain training:
    `ceil(train_examples / batch_size)`."""
    return math.ceil(config["train_examples"] / config["batch_size"])


def learning_rate_schedule(options, config, epochs):
    """The learning rate of a method trained for `epochs` epochs: a cosine
    decay from `config["learning_rate"]` to 0 over `epochs` epochs of plain
    training's steps; for a selective or pruning method (whose epochs have
    fewer steps), wrapped in `keras_sb.EpochSchedule` to follow the epochs
    done instead of the optimizer steps."""
    steps = steps_per_epoch(config)
    cosine = keras.optimizers.schedules.CosineDecay(
        config["learning_rate"], decay_steps=epochs * steps)
    if sizing.is_plain_training(options):
        return cosine
    return EpochSchedule(cosine, steps)


def epochs_of(config, options):
    """Epochs of a method: its `"epochs"` where sized (see `sizing`), the
    fractions of `"kept_fraction"` where it is a list, `epochs` for plain
    training and InfoBatch, else `selective_epochs` (default `epochs`)."""
    if sizing.is_plain_training(options) and not (options or {}).get("epochs"):
        return config["epochs"]
    if isinstance(options.get("epochs"), int):
        return options["epochs"]
    if isinstance(options.get("kept_fraction"), (list, tuple)):
        return len(options["kept_fraction"])
    if options.get("pruning") == "infobatch":
        return config["epochs"]
    return config.get("selective_epochs") or config["epochs"]


def build_model(options, config, seed, initial_weights=None,
                learning_rate=None):
    """The compiled model of one method: the network of `config` (with
    `initial_weights`), as a `SelectiveBackpropModel` with the model options
    of `options` (those not in `RUN_OPTIONS`), or plain when `options` is
    None or says `"plain"`. `learning_rate` (a float or schedule) defaults
    to `config["learning_rate"]`."""
    network = network_from_config(config)
    if initial_weights is not None:
        network.set_weights(initial_weights)
    if sizing.is_plain_training(options):
        model = network
    else:
        options = {k: v for k, v in options.items() if k not in RUN_OPTIONS}
        model = SelectiveBackpropModel.from_model(network, seed=seed, **options)
    if learning_rate is None:
        learning_rate = config["learning_rate"]
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate, momentum=0.9,
                                       nesterov=True, weight_decay=5e-4),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        jit_compile=config["jit_compile"],
    )
    return model


def pruning_callback(options, config):
    """The `keras_sb.InfoBatch` or `keras_sb.RandomSubset` callback of a
    method with a `"pruning"` option (None without one)."""
    pruning = (options or {}).get("pruning")
    if pruning is None:
        return None
    if pruning == "infobatch":
        return InfoBatch(prune_ratio=options["prune_ratio"],
                         anneal=options["anneal"],
                         num_examples=config["train_examples"])
    if pruning == "random-subset":
        if not isinstance(options.get("kept_fraction"), (int, float, list,
                                                          tuple)):
            raise ValueError(
                "random-subset needs its kept fractions (see `sizing`). "
                f"Received: kept_fraction={options.get('kept_fraction')!r}")
        return RandomSubset(options["kept_fraction"],
                            num_examples=config["train_examples"])
    raise ValueError(f"Unknown pruning {pruning!r}; expected 'infobatch' or "
                     "'random-subset'.")


def train_one(options, initial_weights, train, test, config, seed,
              progress=None, train_with_ids=None, on_trained=None):
    """Trains one method from `initial_weights`; returns its learning curve.

    Methods with a `staleness` train with `StaleSelection`, and pruning
    methods with their callback (`pruning_callback`), on
    `train_with_ids(model)`: the same training data with example ids, whose
    pipeline draws the examples each epoch keeps (for stale selection, where
    the function makes it so). The other selective methods train on
    `train_with_ids(model, in_pipeline=False)` where it is given, so that
    they too keep a per-example report. `on_trained(model)` is called after
    training.
    """
    keras.utils.set_random_seed(seed)
    epochs = epochs_of(config, options)
    model = build_model(options, config, seed, initial_weights,
                        learning_rate_schedule(options, config, epochs))
    curve = LearningCurve(config["train_examples"], progress)
    callbacks = [curve]
    staleness = (options or {}).get("staleness")
    pruning = pruning_callback(options, config)
    if staleness or pruning:
        if train_with_ids is None:
            raise ValueError("A method with `staleness` or `pruning` needs "
                             "`train_with_ids`.")
        if pruning:
            train = train_with_ids(model, in_pipeline=True)
            callbacks.insert(0, pruning)
        else:
            train = train_with_ids(model)
            callbacks.insert(0, StaleSelection(staleness))
    elif train_with_ids is not None and not sizing.is_plain_training(options):
        train = train_with_ids(model, in_pipeline=False)
    # The training batches shuffle themselves (a tf.data shuffle, or the
    # ArrayPipeline's seeded permutation): `fit` ignores `shuffle` for a
    # tf.data dataset (with a warning per call) and would only reorder the
    # ArrayPipeline's already shuffled batches.
    model.fit(train, epochs=epochs, validation_data=test,
              callbacks=callbacks, shuffle=False, verbose=0)
    if on_trained is not None:
        on_trained(model)
    return curve.points


def pipelines(train, test, config):
    """Training and test batches from a loaded dataset.

    `train` and `test` are unbatched `tf.data.Dataset`s (`datasets.load`),
    or `(images, labels)` NumPy arrays (`datasets.load_arrays`), which give
    `data.ArrayPipeline`s and need no TensorFlow, or with
    `config["pipeline"] == "device"`, `data.DevicePipeline`s.
    """
    if isinstance(train, tuple):
        test_batches = array_pipeline_class(config)(
            *test, 500, augment=False, shuffle=False)
    else:
        test_batches = data_utils.evaluation_pipeline(test, 500)
        for _ in train.concatenate(test):  # Fill the decoding caches once.
            pass
    return training_batches(train, config), test_batches


def array_pipeline_class(config):
    """The pipeline of NumPy arrays for `config["pipeline"]` (`--pipeline`):
    `data.DevicePipeline` (batches made on the accelerator) for `"device"`,
    else `data.ArrayPipeline`."""
    kind = config.get("pipeline", "numpy")
    if kind not in ("numpy", "device"):
        raise ValueError("`pipeline` must be 'numpy' or 'device' for NumPy "
                         f"arrays. Received: pipeline={kind!r}")
    if kind == "device":
        return data_utils.DevicePipeline
    return data_utils.ArrayPipeline


def training_batches(train, config, example_ids=False, stale_model=None):
    """The training batches of `config` from a loaded training set.

    Args:
        train: unbatched `tf.data.Dataset` or `(images, labels)` arrays.
        config: dict with `batch_size` and `seeds` (and `augment`, default
            True).
        example_ids: whether batches carry example ids (stale selection,
            pruning).
        stale_model: the model whose stale or pruned epochs are drawn in the
            pipeline (`data.stale_filter`); None: the train step draws.
    """
    augment = config.get("augment", True)
    if isinstance(train, tuple):
        return array_pipeline_class(config)(
            *train, config["batch_size"], augment=augment,
            seed=config["seeds"][0], example_ids=example_ids,
            stale_model=stale_model)
    return data_utils.training_pipeline(
        train, config["batch_size"], augment=augment, seed=config["seeds"][0],
        example_ids=example_ids, stale_model=stale_model)


def run(train, test, config, compared=None, progress=True, reports=None):
    """Runs every method with every seed; returns `(runs, summary)`.

    The methods of a seed run in `sizing.run_order`: those sized from other
    runs of the seed (`infobatch-equal-time`, `random-subset`, `plain-short`)
    after the runs they are sized from. `runs` keeps the order of `compared`.

    Args:
        train, test: unbatched `tf.data.Dataset`s of `(uint8 image, label)`,
            or `(images, labels)` NumPy arrays (see `pipelines`).
        config: dict with `epochs`, `batch_size`, `seeds`, `learning_rate`,
            `jit_compile`, `train_examples`, `input_shape`, `classes`, and
            optionally `target` / `target_gap`.
        compared: dict name -> options (see `methods`); defaults to all.
        reports: optional dict that receives, for each selective method,
            the per-example report of its first seed's model.
    """
    # Read before training: results record the commit of the code that ran,
    # even if the checkout changes during a long run.
    provenance.source_commit()
    compared = compared or methods()
    sizing.check_dependencies(compared)
    train_batches, test_batches = pipelines(train, test, config)
    pipeline_draws = config.get("stale_draws", "pipeline") == "pipeline"

    def train_with_ids(model, in_pipeline=pipeline_draws):
        return training_batches(train, config, example_ids=True,
                                stale_model=model if in_pipeline else None)
    bar = None
    if progress:
        # Sized methods count plain's epochs until they are sized.
        bar = keras.utils.Progbar(
            len(config["seeds"]) * sum(epochs_of(config, options)
                                       if not sizing.dependencies(options)
                                       else config["epochs"]
                                       for options in compared.values()),
            unit_name="epoch")
    runs = {name: [] for name in compared}
    for seed in config["seeds"]:
        keras.utils.set_random_seed(seed)
        initial = network_from_config(config).get_weights()
        seed_runs = {}
        for name in sizing.run_order(compared):
            options = sizing.sized_options(name, compared[name], seed_runs,
                                           config["epochs"])
            if bar is not None and options is not compared[name]:
                bar.target += epochs_of(config, options) - config["epochs"]
            keep_report = None
            if reports is not None and seed == config["seeds"][0]:
                keep_report = functools.partial(_keep_report, reports, name)
            seed_runs[name] = train_one(options, initial, train_batches,
                                        test_batches, config, seed, bar,
                                        train_with_ids, keep_report)
        for name in compared:
            runs[name].append(seed_runs[name])
    summary = summarize(runs, config.get("target_gap", 0.005),
                        config.get("target"))
    return runs, summary


def _keep_report(reports, name, model):
    state = getattr(model, "selection_state", None)
    if state is not None and state.score_table is not None:
        reports[name] = model.selection_report()
