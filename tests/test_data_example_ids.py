"""Example ids: `with_example_ids` and `keep_example_ids` on their own."""

import pytest

import keras_sb

tf = pytest.importorskip("tensorflow")


class TestWithExampleIds:
    def test_with_example_ids_errors(self):
        with pytest.raises(ValueError, match="infinite"):
            keras_sb.data.with_example_ids(tf.data.Dataset.range(3).repeat())
        with pytest.raises(ValueError, match="no ids"):
            keras_sb.data.keep_example_ids(lambda x: x)(tf.constant(1))
