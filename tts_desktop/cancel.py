"""Cooperative cancellation: long loops (decoder steps, WaveGlow flows) call a check and stop.

The check is any zero-argument callable returning True when the caller wants the work dropped;
the loop then raises SynthesisCancelled. Nothing is interrupted mid-computation, so no state is
left half-updated, and a check costs a function call per step.
"""

from __future__ import annotations

from typing import Callable

CancelCheck = Callable[[], bool]


class SynthesisCancelled(Exception):
    """The caller asked for the synthesis to stop; nothing was produced."""


def check(cancel: CancelCheck | None) -> None:
    if cancel is not None and cancel():
        raise SynthesisCancelled()
