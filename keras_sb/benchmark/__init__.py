"""Time-to-accuracy benchmark: Selective-Backprop and data pruning against
their baselines.

Trains the same network, from the same initial weights, with the same data,
optimizer and per-epoch learning-rate schedule, with each method:

- `plain`: `keras.Model`, every example every step;
- `sb-beta<b>`: `SelectiveBackpropModel` with the paper's rule (and
  `-stale<n>`, `-anneal`, `-pmin<P>` variants);
- `uniform`: a uniform random subset at the backprop fraction of the
  reference beta (`1 / (beta + 1)`), the control;
- `importance`: loss-proportional importance sampling with unbiased
  re-weighting (Katharopoulos & Fleuret-like) at the same fraction;
- `infobatch`: `keras_sb.InfoBatch` for plain training's epochs, and
  `infobatch-equal-time` for as many epochs as take plain training's time;
- `random-subset`: a fresh uniform random subset each epoch
  (`keras_sb.RandomSubset`, RS2) keeping per epoch what `infobatch` kept;
- `plain-short`: plain training whose schedule fully decays within about
  the time of the fastest other method.

The last three are sized from the runs of the same seed (`sizing`).

After every epoch the test accuracy is recorded against the training
wall-clock time (evaluation excluded) and against the examples
backpropagated. The time to a target accuracy (default: plain training's
final accuracy minus 0.5 points, averaged over seeds) gives each method's
speedup over plain training; the final accuracies at equal wall-clock time
(within 10%) say whether a selective or pruning method beat plain training
(`plain` or `plain-short`) and the `random-subset` control, and so whether
it is faster (`results.equal_time_statements`).

The learning rate decays on a cosine over each method's epochs: per
optimizer step for plain training, and through `keras_sb.EpochSchedule`
(the fraction of epochs done) for the selective and pruning methods, which
take fewer optimizer steps per epoch: every method gets the same schedule
per epoch of data.

`--label-noise F` gives a fraction F of the training labels a wrong class
(`label_noise`).

Run `keras-sb bench --help` (or `python benchmarks/time_to_accuracy.py`).

Modules: `models` (the network), `comparison` (the compared methods),
`sizing` (methods sized from other runs), `label_noise`,
`training` and `timing` (training and its measurements), `results`
(summaries and merging), `plotting`, `provenance` (machine and commit of a
result), and the command line: `arguments`, `outputs` (where results go)
and `command`.
"""

from keras_sb.benchmark.arguments import QUICK
from keras_sb.benchmark.arguments import build_parser
from keras_sb.benchmark.arguments import parse_args
from keras_sb.benchmark.command import chosen_methods
from keras_sb.benchmark.command import load_data
from keras_sb.benchmark.command import main
from keras_sb.benchmark.command import run_config
from keras_sb.benchmark.comparison import choose_methods
from keras_sb.benchmark.comparison import default_method_names
from keras_sb.benchmark.comparison import methods
from keras_sb.benchmark.label_noise import noisy_labels
from keras_sb.benchmark.label_noise import with_noisy_labels
from keras_sb.benchmark.models import network_from_config
from keras_sb.benchmark.models import small_resnet
from keras_sb.benchmark.outputs import QUICK_OUTPUT
from keras_sb.benchmark.outputs import RESULTS_DIR
from keras_sb.benchmark.outputs import default_output
from keras_sb.benchmark.outputs import result_paths
from keras_sb.benchmark.plotting import plot
from keras_sb.benchmark.provenance import machine
from keras_sb.benchmark.provenance import source_commit
from keras_sb.benchmark.results import equal_time_statements
from keras_sb.benchmark.results import format_summary
from keras_sb.benchmark.results import merge_results
from keras_sb.benchmark.results import summarize
from keras_sb.benchmark.results import time_to_accuracy
from keras_sb.benchmark.timing import EpochTimer
from keras_sb.benchmark.timing import LearningCurve
from keras_sb.benchmark.timing import wait_for_device
from keras_sb.benchmark.training import build_model
from keras_sb.benchmark.training import cosine_learning_rate
from keras_sb.benchmark.training import epochs_of
from keras_sb.benchmark.training import learning_rate_schedule
from keras_sb.benchmark.training import pipelines
from keras_sb.benchmark.training import run
from keras_sb.benchmark.training import train_one
from keras_sb.benchmark.training import training_batches

# The names these had in the single-module harness, which
# benchmarks/gpu.py and benchmarks/batch_norm_recalibration.py use.
_network = network_from_config
_epochs = epochs_of
