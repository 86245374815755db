"""The clocks, as the composition root names them (`engage run`, the demo and the tests import
them from here); they live in the bottom layer, `trial/clock.py`, so every layer can take one."""

from __future__ import annotations

from trial.clock import Clock, SimulatedClock, SystemClock

__all__ = ["Clock", "SimulatedClock", "SystemClock"]
