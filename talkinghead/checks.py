"""Argument checks shared by the API and the CLI, and the documented bounds on every number that sizes
memory or time.

A wrong argument is the caller's mistake, so it is an :class:`InputError` with a plain message naming
the argument, raised before any slow work, never numpy's or Python's own exception from deep inside.
The bounds catch typos (``fps=1e9`` asked for 22 GB and was killed by the kernel with nothing
printed), not taste: each is far above real use. ``docs/api.md`` lists them. Cheap to import (the CLI
builds its argparse types from these bounds).
"""
from __future__ import annotations

import math
import numbers
import os

from .errors import InputError

MAX_FPS = 240.0  # frame rate of generated video: the fastest cameras' slow motion
MAX_PRESET_SECONDS = 3600.0  # a motion preset's length
MAX_AUDIO_SECONDS = 600.0  # an audio-driven animation's sound track: 15,000 frames at 25 fps
MAX_FRAMES = 216_000  # frames of a generated clip: one hour at 60 fps (a landmark track of 117 MB)
MAX_BATCH_SIZE = 256  # frames or photos per batch
MAX_FINE_TUNE_STEPS = 100_000  # fine-tuning steps (the docs use 20 to 1000; eval has the same bound)
MAX_IMAGE_PIXELS = 64_000_000  # a photo's pixels: 8000 x 8000; a 144 MP photo took 85 s and 10.6 GB
MEMORY_FRACTION = 0.8  # of the memory available now, the most one allocation estimated ahead may take


def check_int(name: str, value, minimum: int, maximum: int | None = None) -> int:
    """``value`` as an int in ``[minimum, maximum]``, else an :class:`InputError` naming the argument."""
    if (isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum
            or (maximum is not None and value > maximum)):
        bound = f" and <= {maximum}" if maximum is not None else ""
        raise InputError(f"{name} must be an integer >= {minimum}{bound}, not {value!r}.")
    return int(value)


def check_number(name: str, value, minimum: float, *, inclusive: bool = False, maximum: float | None = None) -> float:
    """``value`` as a finite float ``> minimum`` (``>=`` when ``inclusive``) and ``<= maximum``."""
    ok = (isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
          and (value >= minimum if inclusive else value > minimum) and (maximum is None or value <= maximum))
    if not ok:
        bound = f"{'>=' if inclusive else '>'} {minimum:g}" + (f" and <= {maximum:g}" if maximum is not None else "")
        raise InputError(f"{name} must be a number {bound}, not {value!r}.")
    return float(value)


def check_fps(fps, name: str = "fps") -> float:
    """A frame rate in ``(0, MAX_FPS]``."""
    return check_number(name, fps, 0, maximum=MAX_FPS)


def check_choice(name: str, value, choices) -> str:
    """``value`` if it is one of ``choices`` (strings), else an :class:`InputError` listing them."""
    if not isinstance(value, str) or value not in choices:
        raise InputError(f"{name} must be one of {', '.join(choices)}, not {value!r}.")
    return value


def check_max_frames(max_frames) -> int | None:
    """``None`` (no limit) or an integer >= 1: asking a reader for no frames is a mistake, not an empty clip."""
    if max_frames is None:
        return None
    if isinstance(max_frames, bool) or not isinstance(max_frames, numbers.Integral) or max_frames < 1:
        raise InputError(f"max_frames must be an integer >= 1 (or None), not {max_frames!r}.")
    return int(max_frames)


def available_memory() -> int | None:
    """Bytes of memory available now (Linux ``MemAvailable``; ``None`` where it cannot be told)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(nbytes: float, what: str, advice: str) -> None:
    """Refuse, before allocating, what would take more than :data:`MEMORY_FRACTION` of the memory
    available now: being killed by the kernel prints nothing, this names the cause."""
    free = available_memory()
    if free is not None and nbytes > MEMORY_FRACTION * free:
        raise InputError(f"{what} needs about {_size(nbytes)} of memory, and {_size(free)} is available: {advice}.")


def _size(nbytes: float) -> str:
    """``2.5e9`` -> ``"2.5 GB"``."""
    for unit in ("bytes", "KB", "MB"):
        if nbytes < 1000:
            return f"{nbytes:.0f} {unit}" if unit == "bytes" else f"{nbytes:.1f} {unit}"
        nbytes /= 1000
    return f"{nbytes:.1f} GB"
