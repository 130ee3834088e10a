"""StepTimer: when the step time is re-estimated under a wall-time budget, and from which steps."""

from __future__ import annotations

import pytest

from cmpose.engine.budget import StepTimer


def _run(step_seconds: list[float], timer: StepTimer) -> dict[int, float]:
    """Feed a run whose step i (1-based) takes step_seconds[i-1]; the estimates by step."""
    out, elapsed = {}, 0.0
    for step, dt in enumerate(step_seconds, start=1):
        elapsed += dt
        est = timer.observe(step, elapsed)
        if est is not None:
            out[step] = est
    return out


def test_estimates_are_due_after_10_and_50_timed_steps_then_every_window() -> None:
    est = _run([0.1] * 1000, StepTimer(warmup=5, window=200))
    assert sorted(est) == [15, 55, 205, 405, 605, 805]
    assert all(v == pytest.approx(0.1) for v in est.values())


def test_warmup_steps_are_not_timed() -> None:
    est = _run([5.0] * 5 + [0.1] * 60, StepTimer(warmup=5, window=200))
    assert est[15] == pytest.approx(0.1) and est[55] == pytest.approx(0.1)


def test_a_slow_spell_is_forgotten_after_one_window() -> None:
    # Steps 6..105 are 5x slower (the machine was busy), the rest take 0.1 s.
    seconds = [0.1] * 5 + [0.5] * 100 + [0.1] * 895
    est = _run(seconds, StepTimer(warmup=5, window=200))
    assert est[205] == pytest.approx((100 * 0.5 + 100 * 0.1) / 200)  # the spell still counts
    assert est[405] == pytest.approx(0.1)  # the next window only sees the fast steps
    assert est[805] == pytest.approx(0.1)


def test_a_slowdown_late_in_the_run_is_seen_within_a_window() -> None:
    seconds = [0.1] * 405 + [0.3] * 400
    est = _run(seconds, StepTimer(warmup=5, window=200))
    assert est[405] == pytest.approx(0.1)
    assert est[605] == pytest.approx(0.3)  # a mean since the start would say 0.15
