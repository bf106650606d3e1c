"""The benchmark's network."""

import keras

from keras_sb import benchmark


def test_network_from_config():
    network = benchmark.network_from_config({
        "input_shape": (8, 8, 3), "classes": 5, "widths": (4, 8),
        "blocks_per_stage": 2, "batch_norm_momentum": 0.9})
    assert network.output_shape == (None, 5)
    convolutions = [layer for layer in network.layers
                    if isinstance(layer, keras.layers.Conv2D)]
    # The stem, 2 stages of 2 blocks of 2, and the projection shortcut of
    # the second stage's first block (stride 2, more channels).
    assert len(convolutions) == 1 + 2 * 2 * 2 + 1
    assert {layer.momentum for layer in network.layers
            if isinstance(layer, keras.layers.BatchNormalization)} == {0.9}
