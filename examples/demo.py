"""keras-sb demo: plain Keras vs Selective-Backprop on scikit-learn's digits.

The same as `keras-sb demo`; see `keras_sb/demo.py`. Run:
`python examples/demo.py [--epochs 40] [--beta 2.0] [--batch-size 128]`.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from keras_sb.demo import main  # noqa: E402

if __name__ == "__main__":
    main()
