"""Device names -> ``torch.device``, in one place for the pipeline and the trainer.

``auto`` picks CUDA where available, else CPU; ``cpu``, ``cuda``, ``cuda:N`` and ``mps`` are taken as
asked. An unknown name, or a device this machine lacks, is an :class:`~talkinghead.errors.InputError`
saying what to use instead: nothing silently falls back to another device. :func:`torch_threads`
runs a block on a given number of CPU threads.
"""
from __future__ import annotations

import contextlib

import torch

from .errors import InputError

__all__ = ["resolve_device", "torch_threads"]


def resolve_device(device: str | torch.device | None = "auto", local_rank: int | None = None) -> torch.device:
    """The ``torch.device`` for ``device`` (``None`` means ``auto``).

    ``local_rank`` (torchrun's ``LOCAL_RANK``; the trainer passes it) turns a CUDA device without an index,
    from ``auto`` or ``cuda``, into ``cuda:local_rank``; an explicit ``cuda:N`` is kept. Without it the
    device is returned as parsed (``auto`` -> ``cuda`` or ``cpu``).
    """
    if device is None or str(device) == "auto":
        parsed = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            parsed = torch.device(device)
        except (RuntimeError, TypeError, ValueError):
            parsed = None
        if parsed is None or parsed.type not in ("cpu", "cuda", "mps"):
            raise InputError(f'Unknown device {device!r}: use "auto", "cpu", "cuda" or "cuda:N".')
        _check_available(parsed)
    if local_rank is not None and parsed.type == "cuda" and parsed.index is None:
        return torch.device("cuda", local_rank)
    return parsed


def _check_available(device: torch.device) -> None:
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise InputError(f'Device "{device}" was asked for but MPS is not available here: use "cpu" or "auto".')
    if device.type != "cuda":
        return
    if not torch.cuda.is_available():
        raise InputError(f'Device "{device}" was asked for but no CUDA GPU is available: use "cpu" or "auto".')
    count = torch.cuda.device_count()
    if device.index is not None and device.index >= count:
        raise InputError(f'Device "{device}" does not exist: this machine has {count} CUDA GPU(s), '
                         f'so use "cuda:0" to "cuda:{count - 1}".')


@contextlib.contextmanager
def torch_threads(n: int):
    """Run the block on ``n`` CPU threads, restoring the caller's count after. Building a model is
    hundreds of tiny ops (spectral norm's power iterations): on 2 threads, with a core busy elsewhere,
    each waits for the straggler, and ``load("default")`` took 8.9 s against 0.5 s on one."""
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, int(n)))
    try:
        yield
    finally:
        torch.set_num_threads(before)
