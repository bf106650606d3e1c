"""keras-sb: Selective-Backprop for Keras 3.

Train on the examples with the highest loss (the "biggest losers"): every
example gets a cheap inference-mode forward pass, and only the selected ones
get the backward pass.

```python
import keras, keras_sb

inputs = keras.Input((64,))
outputs = keras.layers.Dense(10, activation="softmax")(inputs)
model = keras_sb.SelectiveBackpropModel(inputs, outputs, beta=2.0)
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
              metrics=["accuracy"])
model.fit(x_train, y_train, batch_size=128, epochs=30,
          validation_data=(x_test, y_test))
```

The README has a complete example and which method to use when.
"""

from keras_sb import data
from keras_sb import pruning
from keras_sb import report
from keras_sb import datasets
from keras_sb import schedule
from keras_sb import selection
from keras_sb import stale
from keras_sb import strategies
from keras_sb.callbacks import SelectionWindow
from keras_sb.epoch_schedule import EpochSchedule
from keras_sb.functional import FunctionalSelectiveBackpropModel
from keras_sb.functional import WrappedModel
from keras_sb.model import SelectiveBackpropModel
from keras_sb.pruning import InfoBatch
from keras_sb.pruning import RandomSubset
from keras_sb.stale import StaleSelection
from keras_sb.summaries import SelectionSummaries
from keras_sb.state import SelectionState
from keras_sb.strategies import BiggestLosers
from keras_sb.strategies import LossProportional
from keras_sb.strategies import SelectionStrategy
from keras_sb.strategies import UniformSubset

__version__ = "0.1.0"
