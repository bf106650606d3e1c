"""The benchmark's network: a small CIFAR ResNet, built from a run's
configuration."""

import keras


def small_resnet(input_shape=(32, 32, 3), classes=10, widths=(16, 32, 64),
                 blocks_per_stage=1, batch_norm_momentum=0.99):
    """A small CIFAR ResNet (basic blocks, BatchNorm), as a functional model.

    With the defaults it is a ResNet-8 (3 stages of one basic block); use
    `widths=(64, 128, 256, 512)` and `blocks_per_stage=2` for a
    ResNet-18-class network on a GPU.

    `batch_norm_momentum` (Keras's default 0.99) sets how fast BatchNorm's
    moving statistics follow the weights. Selective-Backprop scores examples
    with those statistics (inference mode) and updates them only in backward
    steps, so short schedules with large learning rates want a faster
    average, e.g. 0.9 (PyTorch's default).
    """
    layers = keras.layers

    def batch_norm():
        return layers.BatchNormalization(momentum=batch_norm_momentum)

    inputs = keras.Input(input_shape)
    x = layers.Conv2D(widths[0], 3, padding="same", use_bias=False)(inputs)
    x = layers.ReLU()(batch_norm()(x))
    for stage, width in enumerate(widths):
        for block in range(blocks_per_stage):
            strides = 2 if stage > 0 and block == 0 else 1
            shortcut = x
            y = layers.Conv2D(width, 3, strides=strides, padding="same",
                              use_bias=False)(x)
            y = layers.ReLU()(batch_norm()(y))
            y = layers.Conv2D(width, 3, padding="same", use_bias=False)(y)
            y = batch_norm()(y)
            if strides != 1 or shortcut.shape[-1] != width:
                shortcut = layers.Conv2D(width, 1, strides=strides,
                                         use_bias=False)(shortcut)
                shortcut = batch_norm()(shortcut)
            x = layers.ReLU()(layers.Add()([y, shortcut]))
    x = layers.GlobalAveragePooling2D()(x)
    # float32 softmax, also under a mixed precision policy.
    outputs = layers.Dense(classes, activation="softmax", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="small_resnet")


def network_from_config(config):
    """The `small_resnet` of a run's configuration.

    Args:
        config: dict with `input_shape` and `classes`, and optionally
            `widths`, `blocks_per_stage` and `batch_norm_momentum` (the
            defaults of `small_resnet` otherwise).

    Returns:
        An uncompiled `keras.Model`.
    """
    return small_resnet(config["input_shape"], config["classes"],
                        widths=config.get("widths", (16, 32, 64)),
                        blocks_per_stage=config.get("blocks_per_stage", 1),
                        batch_norm_momentum=config.get("batch_norm_momentum",
                                                       0.99))
