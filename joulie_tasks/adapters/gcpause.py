"""Pause Python's cyclic garbage collector while a bulk of acyclic data is built.

Decoding tens of thousands of API objects (JSON dicts, then pydantic models)
allocates millions of containers, none of them in a reference cycle. Each
allocation burst makes CPython run generation-2 collections that traverse the
whole heap again and again: profiling the scale benchmark (bench/) showed these
passes costing several times the decoding itself. Reference counting still frees
everything while the collector is paused; it resumes (once, if it was on) when
the outermost pause ends. Safe across threads: nested and concurrent pauses
count, and the collector comes back only when the last one ends.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_depth = 0
_was_enabled = False


@contextmanager
def paused() -> Iterator[None]:
    """Run the body with the cyclic collector off (reference counting stays on)."""
    global _depth, _was_enabled
    with _lock:
        if _depth == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _was_enabled:
                gc.enable()
