"""Image classification datasets of the Selective-Backprop paper.

`load` returns a split of CIFAR-10, CIFAR-100 or SVHN as an unbatched
`tf.data.Dataset` of `(uint8 image, int32 label)`, decoded once and cached in
memory, from one of two sources:

- a local copy, when `path` is given: a folder laid out as
  `<path>/<split>/<class name>/<image file>` (class folders in label order,
  e.g. the CIFAR-10 JPEG copy in `../shared/data`), or a `.tar.xz` /
  `.tar.gz` / `.tar` archive holding one such folder, extracted once (into
  `~/.keras/datasets` by default);
- TensorFlow Datasets (`tfds.load`) otherwise, which needs the data already
  in `data_dir` or a network connection.

`load_arrays` reads a local copy into NumPy arrays instead, without
TensorFlow (for the JAX backend, e.g. on a GPU machine without TensorFlow).

Batching, shuffling and augmentation are in `keras_sb.data`.
"""

import os
import tarfile

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog",
                   "frog", "horse", "ship", "truck")

# name: (TFDS name, number of classes, class folder names of a local copy)
DATASETS = {
    "cifar10": ("cifar10", 10, CIFAR10_CLASSES),
    "cifar100": ("cifar100", 100, None),
    "svhn": ("svhn_cropped", 10, None),
}
SPLITS = ("train", "test")
_ARCHIVE_SUFFIXES = (".tar.xz", ".tar.gz", ".tgz", ".tar")
# Image files of a local copy (those `keras.utils.image_dataset_from_directory`
# reads).
_IMAGE_SUFFIXES = (".bmp", ".gif", ".jpeg", ".jpg", ".png")


def num_classes(name):
    """Number of classes of dataset `name`."""
    return DATASETS[_check_name(name)][1]


def load(name, split, path=None, data_dir=None, extract_dir=None, limit=None):
    """Loads one split of an image classification dataset.

    Args:
        name: `"cifar10"`, `"cifar100"` or `"svhn"`.
        split: `"train"` or `"test"`.
        path: a local copy: a folder with `<split>/<class>/` subfolders, or an
            archive of one such folder. None: use TensorFlow Datasets.
        data_dir: TFDS data directory (when `path` is None).
        limit: keep only the first `limit` examples (None: all). The
            examples of a local copy come in a fixed shuffled order, so any
            prefix holds every class; it is the order of `load_arrays`, the
            same in every pass and process (example ids stay attached to
            the same images).
        extract_dir: where an archive is extracted (once). Defaults to
            `~/.keras/datasets/<archive name>` (`$KERAS_HOME/datasets/...`).

    Returns:
        An unbatched `tf.data.Dataset` of `(image, label)`: uint8 images of
        shape `(height, width, 3)` and int32 labels. Decoding is cached: the
        first full pass decodes, later passes (epochs) read memory.

    Example:

    ```python
    train = keras_sb.datasets.load(
        "cifar10", "train", path="../shared/data/cifar10-jpeg.tar.xz")
    train = keras_sb.data.training_pipeline(train, batch_size=128)
    ```
    """
    _check_arguments(name, split, limit)
    if path is not None:
        dataset = _load_folder(name, split, _as_folder(path, extract_dir), limit)
    else:
        dataset = _load_tfds(name, split, data_dir)
        if limit is not None:
            dataset = dataset.take(limit)
    return dataset.cache()


def load_arrays(name, split, path, extract_dir=None, limit=None):
    """Loads one split of a local copy as NumPy arrays, without TensorFlow.

    The images are decoded with Pillow, in threads.

    Args:
        name: `"cifar10"`, `"cifar100"` or `"svhn"`.
        split: `"train"` or `"test"`.
        path: a folder with `<split>/<class>/` subfolders, or an archive of
            one such folder (extracted once, as in `load`).
        extract_dir: where an archive is extracted (see `load`).
        limit: keep only the first `limit` examples (None: all). The
            examples come in a fixed shuffled order, so any prefix holds
            every class.

    Returns:
        Tuple `(images, labels)`: uint8 array `(n, height, width, 3)` and
        int32 array `(n,)`.

    Example:

    ```python
    images, labels = keras_sb.datasets.load_arrays(
        "cifar10", "train", "../shared/data/cifar10-jpeg.tar.xz")
    train = keras_sb.data.ArrayPipeline(images, labels, batch_size=128)
    ```
    """
    import concurrent.futures

    import numpy as np
    from PIL import Image

    _check_arguments(name, split, limit)
    files, labels = _files_and_labels(name, split,
                                      _as_folder(path, extract_dir), limit)

    def decode(file):
        with Image.open(file) as image:
            return np.asarray(image.convert("RGB"))

    with concurrent.futures.ThreadPoolExecutor(os.cpu_count()) as pool:
        images = list(pool.map(decode, files, chunksize=256))
    return np.stack(images), labels


def _check_split(split):
    if split not in SPLITS:
        raise ValueError(f"`split` must be one of {SPLITS}. Received: split={split!r}")


def _check_name(name):
    if name not in DATASETS:
        raise ValueError(
            f"`name` must be one of {sorted(DATASETS)}. Received: name={name!r}"
        )
    return name


def _as_folder(path, extract_dir):
    """The dataset folder at `path`, extracting `path` if it is an archive."""
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(
            "`path` must be a dataset folder or a .tar(.xz/.gz) archive of "
            f"one. Received: path={path!r}"
        )
    path = os.fspath(path)
    if os.path.isdir(path):
        return path
    if not os.path.isfile(path) or not path.endswith(_ARCHIVE_SUFFIXES):
        raise ValueError(
            "`path` must be a dataset folder or a .tar(.xz/.gz) archive of "
            f"one. Received: path={path!r}"
        )
    if extract_dir is None:
        base = os.path.basename(path)
        for suffix in _ARCHIVE_SUFFIXES:
            base = base.removesuffix(suffix)
        keras_home = os.environ.get("KERAS_HOME",
                                    os.path.join(os.path.expanduser("~"), ".keras"))
        extract_dir = os.path.join(keras_home, "datasets", base)
    done = os.path.join(extract_dir, ".extracted")
    if not os.path.exists(done):
        os.makedirs(extract_dir, exist_ok=True)
        with tarfile.open(path) as archive:
            archive.extractall(extract_dir, filter="data")
        open(done, "w").close()
    entries = [e for e in os.listdir(extract_dir) if not e.startswith(".")]
    if len(entries) == 1 and os.path.isdir(os.path.join(extract_dir, entries[0])):
        return os.path.join(extract_dir, entries[0])
    return extract_dir


def _split_folder(split, folder):
    directory = os.path.join(folder, split)
    if not os.path.isdir(directory):
        raise ValueError(
            f"No '{split}' folder in {folder!r}: a local copy must hold "
            f"'{split}/<class name>/<image files>'."
        )
    return directory


def _class_names(name, directory):
    """Class folder names of `directory`, in label order (numbered folders
    in the order of their numbers, others in the order of their names)."""
    _, classes, class_names = DATASETS[name]
    found = sorted(os.listdir(directory))
    if class_names is None:
        if len(found) != classes:
            raise ValueError(
                f"{name} has {classes} classes, but {directory!r} has "
                f"{len(found)} class folders: {found[:12]}"
            )
        if all(folder.isdigit() for folder in found):
            return sorted(found, key=int)
        return found
    if sorted(class_names) != found:
        raise ValueError(
            f"The class folders of {directory!r} are {found}; {name} needs "
            f"{sorted(class_names)}."
        )
    return class_names


def _files_and_labels(name, split, folder, limit=None):
    """The image files of a split of a local copy and their int32 labels, in
    a fixed shuffled order (seed 0, so that classes are mixed and any prefix
    holds every class), the first `limit` of them. `load` and `load_arrays`
    share it: the same position is the same image in both, in every process
    (example ids are positions)."""
    import numpy as np

    directory = _split_folder(split, folder)
    files, labels = [], []
    for label, class_name in enumerate(_class_names(name, directory)):
        class_folder = os.path.join(directory, class_name)
        for file in sorted(os.listdir(class_folder)):
            if file.lower().endswith(_IMAGE_SUFFIXES):
                files.append(os.path.join(class_folder, file))
                labels.append(label)
    order = np.random.default_rng(0).permutation(len(files))[:limit]
    return [files[i] for i in order], np.asarray(labels, "int32")[order]


def _check_arguments(name, split, limit):
    """Checks the arguments of `load` and `load_arrays` but `path`."""
    from keras_sb.selection import is_integer

    _check_name(name)
    _check_split(split)
    if limit is not None and (not is_integer(limit) or limit < 1):
        raise ValueError(
            f"`limit` must be None or an int >= 1. Received: limit={limit!r}"
        )


def _load_folder(name, split, folder, limit):
    from keras_sb.data import require_tensorflow

    tf = require_tensorflow("keras_sb.datasets.load")

    files, labels = _files_and_labels(name, split, folder, limit)
    height, width = tf.io.decode_image(
        tf.io.read_file(files[0]), channels=3, expand_animations=False
    ).shape[:2]

    def decode(file, label):
        image = tf.io.decode_image(tf.io.read_file(file), channels=3,
                                   expand_animations=False)
        return tf.ensure_shape(image, (height, width, 3)), label

    return tf.data.Dataset.from_tensor_slices((files, labels)).map(
        decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def _load_tfds(name, split, data_dir):
    try:
        import tensorflow_datasets as tfds
    except ImportError as error:
        raise ImportError(
            "Loading without `path` uses TensorFlow Datasets: "
            "`pip install tensorflow-datasets`, or pass `path=` to a local "
            "copy of the data."
        ) from error
    from keras_sb.data import require_tensorflow

    tf = require_tensorflow("keras_sb.datasets.load")
    try:
        dataset = tfds.load(DATASETS[name][0], split=split, as_supervised=True,
                            data_dir=data_dir)
    except Exception as error:  # Download failures come in many types.
        raise RuntimeError(
            f"TensorFlow Datasets could not load {DATASETS[name][0]!r} "
            f"(data_dir={data_dir!r}); it is not prepared there and could not "
            "be downloaded. Pass `path=` to a local copy of the data, or "
            "prepare it with `tfds build` where there is a network."
        ) from error
    return dataset.map(
        lambda image, label: (image, tf.cast(label, tf.int32)),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
