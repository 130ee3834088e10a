"""Step-time estimates for a stage with a wall-time budget (``StageConfig.minutes``).

The trainer fits its schedule's length to the steps that fit in the budget; the step time is
re-estimated as the run goes, because the first epoch (which decodes every frame) is slower than
the rest and a shared machine has busy spells.
"""

from __future__ import annotations


class StepTimer:
    """Decides when to re-estimate the seconds per step, and from which steps.

    Timing starts after ``warmup`` steps. Estimates are due after 10 and 50 timed steps, then
    every ``window`` (the cosine schedule shifts a little each time; rarely is enough). The first
    estimates average over all timed steps; once ``window`` steps have been timed, each estimate
    uses only the steps since the previous one, so a slow spell is forgotten after one window.
    """

    def __init__(self, warmup: int = 5, window: int = 200) -> None:
        self.warmup = warmup
        self.window = window
        self.start: tuple[int, float] | None = None  # (step, elapsed) when timing started
        self.since: tuple[int, float] | None = None  # (step, elapsed) the next estimate runs from

    def due(self, steps_timed: int) -> bool:
        return steps_timed in (10, 50) or (steps_timed > 0 and steps_timed % self.window == 0)

    def observe(self, step: int, elapsed: float) -> float | None:
        """Call after every step with the step count and the seconds spent so far in the stage;
        returns the seconds per step when a re-estimate is due, else None."""
        if self.start is None:
            if step >= self.warmup:
                self.start = self.since = (step, elapsed)
            return None
        if not self.due(step - self.start[0]):
            return None
        assert self.since is not None
        s0, e0 = self.since
        per_step = (elapsed - e0) / (step - s0)
        if step - s0 >= self.window:
            self.since = (step, elapsed)
        return per_step
