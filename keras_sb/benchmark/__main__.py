"""`python -m keras_sb.benchmark`: the same as `keras-sb bench`."""

from keras_sb.benchmark.command import main

if __name__ == "__main__":
    main()
