"""The kinds of `SelectiveBackpropModel` that `from_model` and the
functional API make: `FunctionalSelectiveBackpropModel`, `WrappedModel`."""

import keras

from keras_sb import _keras_compat
from keras_sb import options as options_lib
from keras_sb.model import SelectiveBackpropModel


@keras.saving.register_keras_serializable(package="keras_sb")
class FunctionalSelectiveBackpropModel(SelectiveBackpropModel,
                                       _keras_compat.Functional):
    """A `SelectiveBackpropModel` built from inputs and outputs.

    `SelectiveBackpropModel(inputs, outputs, ...)` returns one of these; use
    the class directly only to subclass a functional model.
    """

    def __init__(self, inputs, outputs, name=None, **kwargs):
        source = _keras_compat.cloning_source(type(self))
        if source is not None:
            # The source's options, but those this call sets (a subclass
            # may fix some in its `__init__`).
            options = source._selection_config()
            if set(kwargs) & {"strategy", *options_lib.PAPER_OPTIONS}:
                del options["strategy"]
            else:
                options["strategy"] = keras.saving.deserialize_keras_object(
                    options["strategy"])
            kwargs = {**options, **kwargs}
        super().__init__(inputs, outputs, name=name, **kwargs)


@keras.saving.register_keras_serializable(package="keras_sb")
class WrappedModel(SelectiveBackpropModel):
    """A `SelectiveBackpropModel` around another (e.g. subclassed) model.

    Made by `SelectiveBackpropModel.from_model` for models that are not
    functional. Calling it calls the wrapped model.

    Args:
        model: the `keras.Model` to train.
        **kwargs: the options of `SelectiveBackpropModel`.
    """

    def __init__(self, model, **kwargs):
        kwargs.setdefault("name", f"selective_backprop_{model.name}")
        super().__init__(**kwargs)
        self.model = model

    def call(self, inputs, training=None):
        return self.model(inputs, training=training)

    def get_config(self):
        config = {"name": self.name, "trainable": self.trainable,
                  "model": keras.saving.serialize_keras_object(self.model)}
        config.update(self._selection_config())
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        config["model"] = keras.saving.deserialize_keras_object(
            config["model"], custom_objects=custom_objects
        )
        return cls(**config)


def from_model(model, **options):
    """`SelectiveBackpropModel.from_model`: see there."""
    if isinstance(model, SelectiveBackpropModel):
        raise ValueError(
            f"The model {model.name!r} is a SelectiveBackpropModel already."
        )
    if not isinstance(model, keras.Model):
        raise ValueError(
            f"`model` must be a keras.Model. Received: model={model!r}"
        )
    # A `name` among the options names the new model.
    if isinstance(model, _keras_compat.Functional):
        return FunctionalSelectiveBackpropModel(
            inputs=model.input, outputs=model.output,
            **{"name": model.name, **options},
        )
    if isinstance(model, keras.Sequential) and model.built and model.inputs:
        return FunctionalSelectiveBackpropModel(
            inputs=model.inputs[0], outputs=model.outputs[0],
            **{"name": model.name, **options},
        )
    return WrappedModel(model, **options)
