"""Time-to-accuracy benchmark (the same as `keras-sb bench`).

See `keras_sb/benchmark.py` for what it measures. The results of the runs
reported in README.md are in benchmarks/results/time_to_accuracy.json (and
.png). Example, with the CIFAR-10 copy of this project:

    python benchmarks/time_to_accuracy.py \
        --path ../shared/data/cifar10-jpeg.tar.xz --epochs 10
    python benchmarks/time_to_accuracy.py --path ... --quick   # a few minutes
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from keras_sb.benchmark import main  # noqa: E402

if __name__ == "__main__":
    main()
