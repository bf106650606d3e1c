"""TensorFlow, imported only by the code that needs it (tf.data), so that
keras-sb runs without it on other backends."""


def require_tensorflow(what):
    """Imports TensorFlow, or says clearly that `what` needs it."""
    try:
        import tensorflow as tf
    except ImportError as error:
        raise ImportError(
            f"{what} needs TensorFlow (tf.data): `pip install tensorflow-cpu` "
            "(or `tensorflow`). Without TensorFlow, use "
            "`keras_sb.datasets.load_arrays` and `keras_sb.data.ArrayPipeline`."
        ) from error
    return tf
