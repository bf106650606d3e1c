"""Argument checks shared by the pipelines and the stale filter."""

from keras_sb.selection import is_integer


def check_batch_size(batch_size):
    """`batch_size` as a Python int, or a ValueError."""
    if not is_integer(batch_size) or batch_size < 1:
        raise ValueError(
            f"`batch_size` must be an int >= 1. Received: batch_size={batch_size!r}"
        )
    return int(batch_size)


def check_uint8_images(dtype, what):
    """Raises a ValueError unless images of `dtype` are uint8: the pipelines
    scale them by 1/255, so images already scaled would be scaled twice."""
    if dtype != "uint8":
        raise ValueError(
            f"The images must be uint8 (0-255); `{what}` scales them to "
            f"[0, 1]. Received: images of dtype {dtype}"
        )
