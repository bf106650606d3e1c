"""What users see of selection: the per-example report, its picture, and
the TensorBoard summaries, for each method, on both backends."""

import os

import keras
import numpy as np
import pytest
from conftest import compile_model
from conftest import mlp
from keras import ops

import keras_sb
from keras_sb import report as report_lib
from keras_sb.data import selective_pipeline

tf = pytest.importorskip("tensorflow")


def numpy(x):
    return ops.convert_to_numpy(x)


def trained_model(digits, callbacks=(), epochs=3, beta=1.0, start=0,
                  num_examples=600, batch_size=32, **fit_options):
    """A classifier of the digits trained with selection on data with ids."""
    x, y = digits[0][:num_examples], digits[1][:num_examples]
    model = compile_model(keras_sb.SelectiveBackpropModel(
        *mlp(), beta=beta, start=start, seed=1, history_size=256))
    train = selective_pipeline((x, y), model, batch_size, seed=0)
    history = model.fit(train, epochs=epochs, verbose=0,
                        callbacks=list(callbacks), **fit_options)
    return model, history


def check_conservation(model):
    """The report's counts add up to the model's own counters."""
    report = model.selection_report()
    counters = model.selection_state.counters()
    assert report["times_selected"].sum() == counters["selected_total"]
    assert report["times_backpropagated"].sum() == counters["backprops"]
    # Selected examples are backpropagated once, unless still queued.
    assert (counters["selected_total"] - counters["backprops"]
            == counters["queue_size"] + counters["dropped_examples"])
    return report


class TestReport:
    def test_paper_rule_counts_every_selection_and_backprop(self, digits):
        model, history = trained_model(digits, epochs=3)
        report = check_conservation(model)
        assert len(report) == 600
        np.testing.assert_array_equal(report["example_id"], np.arange(600))
        # Every example is scored once an epoch, so selected at most 3 times.
        assert report["times_selected"].max() <= 3
        np.testing.assert_array_equal(report["last_scored_epoch"], 2)
        # The selected fraction is the history's mean over the epochs.
        fractions = history.history["selected_fraction"]
        assert report["times_selected"].sum() == pytest.approx(
            600 * sum(fractions), abs=1)
        assert np.all((report["last_probability"] >= 0)
                      & (report["last_probability"] <= 1))
        assert np.all(np.isfinite(report["last_loss"]))

    def test_examples_selected_more_often_have_higher_losses(self, digits):
        """The paper's rule selects high losses: the more often an example
        was selected, the higher its loss (frozen weights: each example's
        loss is the same in every epoch)."""
        x, y = digits[0][:600], digits[1][:600]
        model = compile_model(keras_sb.SelectiveBackpropModel(
            *mlp(), beta=3.0, start=0, seed=1, history_size=256),
            learning_rate=0.0)
        model.fit(selective_pipeline((x, y), model, 32, seed=0),
                  epochs=4, verbose=0)
        report = check_conservation(model)
        counts, losses = report["times_selected"], report["last_loss"]
        mean_losses = [losses[counts == k].mean() for k in range(5)]
        assert np.all(np.diff(mean_losses) > 0), mean_losses

    def test_stale_selection_counts(self, digits):
        model, history = trained_model(
            digits, callbacks=[keras_sb.StaleSelection(3)], epochs=3)
        report = check_conservation(model)
        assert report["times_selected"].max() <= 3

    def test_infobatch_kept_examples_are_each_backpropagated_once(self, digits):
        model, history = trained_model(
            digits, callbacks=[keras_sb.InfoBatch(0.5, anneal=0.75)],
            epochs=4)
        report = check_conservation(model)
        # Pruning has no queue: kept is trained on, once an epoch.
        np.testing.assert_array_equal(report["times_selected"],
                                      report["times_backpropagated"])
        # Epochs 0 (nothing scored yet) and 3 (annealed) keep every example.
        assert report["times_selected"].min() >= 2
        assert report["times_selected"].max() <= 4
        kept = history.history["kept_fraction"]
        assert report["times_selected"].sum() == pytest.approx(
            600 * sum(kept), abs=1)

    def test_saved_and_loaded_with_the_model(self, digits, tmp_path):
        model, _ = trained_model(digits, epochs=2)
        path = os.path.join(tmp_path, "model.keras")
        model.save(path)
        loaded = keras.saving.load_model(path)
        expected, restored = model.selection_report(), loaded.selection_report()
        for name in expected.dtype.names:
            np.testing.assert_array_equal(restored[name], expected[name])

    def test_table_saved_before_the_counts_loads_with_zero_counts(self):
        state = keras_sb.SelectionState(16)
        state.build_score_table(5)
        store = {name: numpy(variable.value)
                 for name, variable in state._named_variables().items()}
        store.update(score_loss=np.arange(5, dtype="float32"),
                     score_probability=np.ones(5, "float32"),
                     score_epoch=np.zeros(5, "int32"))
        loaded = keras_sb.SelectionState(16)
        loaded.load_own_variables(store)
        report = report_lib.selection_report(loaded)
        np.testing.assert_array_equal(report["last_loss"], np.arange(5))
        np.testing.assert_array_equal(report["times_selected"], 0)
        np.testing.assert_array_equal(report["times_backpropagated"], 0)

    def test_fit_on_data_of_another_size_warns(self, digits):
        model, _ = trained_model(digits, epochs=1, num_examples=600)
        other = selective_pipeline((digits[0][:300], digits[1][:300]),
                                   model, 32)
        with pytest.warns(UserWarning, match="for 600 examples, but this "
                          "`fit`'s training data have 300"):
            model.fit(other, epochs=1, verbose=0)

    def test_data_without_ids_has_no_report(self, digits):
        x, y = digits[0][:200], digits[1][:200]
        model = compile_model(keras_sb.SelectiveBackpropModel(
            *mlp(), beta=1.0, start=0, history_size=64))
        model.fit(x, y, batch_size=32, epochs=1, verbose=0)
        with pytest.raises(ValueError, match="example ids"):
            model.selection_report()

    def test_rank_most_selected_breaks_ties_by_backprops_then_loss(self):
        report = np.zeros(5, dtype=[(n, d) for n, d, _ in report_lib.REPORT_FIELDS])
        report["example_id"] = np.arange(5)
        report["times_selected"] = [2, 3, 2, 2, 0]
        report["times_backpropagated"] = [1, 3, 2, 1, 0]
        report["last_loss"] = [0.5, 0.1, 0.2, 0.9, np.nan]
        np.testing.assert_array_equal(
            report_lib.rank_most_selected(report), [1, 2, 3, 0, 4])


class TestPicture:
    def test_grid_of_most_and_least_selected(self, tmp_path):
        pytest.importorskip("matplotlib")
        rng = np.random.default_rng(0)
        images = rng.integers(0, 255, (40, 8, 8, 3), dtype="uint8")
        labels = rng.integers(0, 3, 40)
        report = np.zeros(40, dtype=[(n, d) for n, d, _ in report_lib.REPORT_FIELDS])
        report["example_id"] = np.arange(40)
        report["times_selected"] = np.arange(40)
        path = os.path.join(tmp_path, "grid.png")
        mislabelled = np.arange(40) == 38
        figure = report_lib.plot_selection_extremes(
            images, labels, report, count=6, columns=3,
            class_names=["cat", "dog", "ship"], path=path,
            mislabelled=mislabelled)
        assert os.path.getsize(path) > 0
        most, least = figure.subfigs
        titles = [a.get_title() for a in most.axes if a.get_title()]
        assert [t.split("\n")[1] for t in titles] == [
            f"{n}x" for n in range(39, 33, -1)]
        assert titles[0].split("\n")[0] == ["cat", "dog", "ship"][labels[39]]
        colors = [a.title.get_color() for a in most.axes if a.get_title()]
        assert colors == ["black", "red"] + ["black"] * 4
        least_titles = [a.get_title() for a in least.axes if a.get_title()]
        assert [t.split("\n")[1] for t in least_titles] == [
            f"{n}x" for n in range(6)]

    def test_mismatched_images_are_refused(self):
        report = np.zeros(4, dtype=[(n, d) for n, d, _ in report_lib.REPORT_FIELDS])
        with pytest.raises(ValueError, match="Received: 3 images"):
            report_lib.plot_selection_extremes(
                np.zeros((3, 4, 4)), np.zeros(3), report, count=2)
        with pytest.raises(ValueError, match="count=0"):
            report_lib.plot_selection_extremes(
                np.zeros((4, 4, 4)), np.zeros(4), report, count=0)


def read_events(log_dir):
    """Scalars and histograms of a TensorBoard run, read back with
    TensorBoard's own reader."""
    from tensorboard.backend.event_processing import event_accumulator

    accumulator = event_accumulator.EventAccumulator(
        os.path.join(log_dir, "train"),
        size_guidance={event_accumulator.TENSORS: 0,
                       event_accumulator.HISTOGRAMS: 0})
    accumulator.Reload()
    tensors = {
        tag: [(e.step, tf.make_ndarray(e.tensor_proto))
              for e in accumulator.Tensors(tag)]
        for tag in accumulator.Tags()["tensors"]
    }
    return tensors


def histogram_count(value):
    """Examples in a histogram summary (rows of [left, right, count])."""
    return float(np.sum(value[:, 2]))


class TestSummaries:
    def test_writes_what_the_epochs_did(self, digits, tmp_path):
        pytest.importorskip("tensorboard")
        log_dir = str(tmp_path)
        model, history = trained_model(
            digits, callbacks=[keras_sb.SelectionSummaries(log_dir)],
            epochs=3)
        events = read_events(log_dir)
        steps = [step for step, _ in events["selection/backprops"]]
        assert steps == [0, 1, 2]
        backprops = [float(v) for _, v in events["selection/backprops"]]
        assert backprops == [float(b) for b in history.history["backprops"]]
        fractions = [float(v) for _, v in events["selection/selected_fraction"]]
        np.testing.assert_allclose(
            fractions, history.history["selected_fraction"], rtol=1e-6)
        queued = float(events["selection/queued"][-1][1])
        assert queued == model.selection_state.counters()["queue_size"]
        # Every example is scored once an epoch: 600 in each histogram.
        for tag in ("selection/loss", "selection/probability"):
            assert [histogram_count(v) for _, v in events[tag]] == [600.0] * 3
        # The probabilities' histogram lies in [0, 1].
        last = events["selection/probability"][-1][1]
        assert last[:, 0].min() >= 0 and last[:, 1].max() <= 1.0 + 1e-6

    def test_pruning_writes_the_kept_fraction(self, digits, tmp_path):
        pytest.importorskip("tensorboard")
        log_dir = str(tmp_path)
        _, history = trained_model(
            digits, epochs=3, callbacks=[
                keras_sb.InfoBatch(0.5), keras_sb.SelectionSummaries(log_dir)])
        events = read_events(log_dir)
        kept = [float(v) for _, v in events["selection/selected_fraction"]]
        np.testing.assert_allclose(kept, history.history["kept_fraction"],
                                   rtol=1e-6)
        assert kept[0] == 1.0 and kept[1] < 1.0
        # The examples trained on in each epoch are its scores.
        counts = [histogram_count(v) for _, v in events["selection/loss"]]
        np.testing.assert_allclose(counts, 600 * np.array(kept), atol=0.5)

    def test_without_ids_the_histograms_show_the_loss_history(self, digits,
                                                              tmp_path):
        pytest.importorskip("tensorboard")
        x, y = digits[0][:300], digits[1][:300]
        model = compile_model(keras_sb.SelectiveBackpropModel(
            *mlp(), beta=1.0, start=0, history_size=128))
        model.fit(x, y, batch_size=32, epochs=2, verbose=0,
                  callbacks=[keras_sb.SelectionSummaries(str(tmp_path),
                                                         histogram_freq=2)])
        events = read_events(str(tmp_path))
        # Histograms in epoch 0 only (every 2 epochs); the history is full.
        assert [step for step, _ in events["selection/loss"]] == [0]
        assert histogram_count(events["selection/loss"][0][1]) == 128.0
        assert len(events["selection/backprops"]) == 2

    def test_refuses_a_plain_model_and_a_bad_frequency(self, digits, tmp_path):
        with pytest.raises(ValueError, match="histogram_freq=-1"):
            keras_sb.SelectionSummaries(str(tmp_path), histogram_freq=-1)
        model = compile_model(keras.Model(*mlp()))
        with pytest.raises(ValueError, match="SelectiveBackpropModel"):
            model.fit(digits[0][:64], digits[1][:64], epochs=1, verbose=0,
                      callbacks=[keras_sb.SelectionSummaries(str(tmp_path))])
