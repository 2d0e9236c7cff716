"""Progress bars, durations, and Laps: where the time of a run went."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from transferkit import progress


def test_each_lap_is_charged_the_time_since_the_previous_one(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter([10.0, 12.5, 13.0, 20.0, 20.01])
    # progress's own reference to the time module: nothing else reads this clock
    monkeypatch.setattr(progress, "time", SimpleNamespace(perf_counter=lambda: next(clock)))
    laps = progress.Laps()  # starts at 10.0
    for name in ("data", "model", "data", "test"):
        laps.lap(name)
    assert laps.seconds == pytest.approx({"data": 2.5 + 7.0, "model": 0.5, "test": 0.01})
    assert list(laps.seconds) == ["data", "model", "test"]  # the order first charged


def test_laps_may_start_at_an_earlier_reading(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress, "time", SimpleNamespace(perf_counter=lambda: 7.0))
    laps = progress.Laps(started=4.0)
    laps.lap("data")
    assert laps.seconds == {"data": 3.0}


@pytest.mark.parametrize(("seconds", "said"), [(0.04, "0.0 s"), (42.04, "42.0 s"), (125.4, "2 min 5 s")])
def test_durations_read_in_seconds_then_minutes(seconds: float, said: str) -> None:
    assert progress.duration(seconds) == said


def test_a_finished_bar_keeps_the_time_it_took(capsys: pytest.CaptureFixture[str]) -> None:
    with progress.progress_task("decode 2 images", 2) as advance:
        time.sleep(1.1)  # rich counts whole seconds
        advance(2)
    assert capsys.readouterr().err.split()[-2:] == ["2/2", "0:00:01"]  # remaining time would say 0:00:00
