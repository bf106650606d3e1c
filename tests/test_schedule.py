"""The selection window (`keras_sb.schedule`)."""

import pytest

from keras_sb import schedule


class TestSchedule:
    @pytest.mark.parametrize("value,parsed", [
        (None, None), (0, (0, "steps")), (250, (250, "steps")),
        (0.5, (0.5, "fraction")), ("1ep", (1.0, "epochs")),
        ("2 epochs", (2.0, "epochs")), (1.0, (1.0, "fraction")),
    ])
    def test_parse(self, value, parsed):
        assert schedule.parse_time("start", value) == parsed

    @pytest.mark.parametrize("value", [-1, 1.5, "soon", True, [1]])
    def test_parse_rejects(self, value):
        with pytest.raises(ValueError, match="Received: start="):
            schedule.parse_time("start", value)

    def test_epochs_count_over_the_model_life(self):
        position = dict(step=100, epoch=0, epochs=5, steps_per_epoch=10)
        start = schedule.parse_time("start", "2ep")
        assert schedule.time_to_step(start, epochs_completed=0, **position) == 120
        assert schedule.time_to_step(start, epochs_completed=2, **position) == 0

    def test_fraction_of_the_fit(self):
        position = dict(step=30, epochs=10, epochs_completed=3, steps_per_epoch=10)
        half = schedule.parse_time("end", 0.5)
        # Resumed at epoch 3 of 10: half-way is 2 epochs (20 steps) ahead.
        assert schedule.time_to_step(half, epoch=3, **position) == 50
        assert schedule.time_to_step(half, epoch=6, **position) == 0

    def test_unknown_epoch_length_switches_at_epoch_boundaries(self):
        start = schedule.parse_time("start", "1ep")
        position = dict(step=7, epoch=0, epochs=3, steps_per_epoch=None)
        assert schedule.time_to_step(start, epochs_completed=0,
                                     **position) == schedule.NEVER
        assert schedule.time_to_step(start, epochs_completed=1, **position) == 0

    def test_window(self):
        assert schedule.window_thresholds(
            None, None, step=0, epoch=0, epochs=1, epochs_completed=0,
            steps_per_epoch=1) == (0, schedule.NEVER)
