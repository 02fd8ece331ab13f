"""Atomic file writes: every file the library writes appears whole, or not at all.

A writer fills a temporary file beside the target, named ``.NAME.tmp-PID-XXXXXXXX.EXT`` (the name cut
to fit the file system's limit, the extension kept for writers that pick a format from it). The file
is flushed to disk (``fsync``: some file systems report a full disk only then) and renamed over the
target, so an interrupted or failed run leaves the previous file, never half of one.
:func:`atomic_paths` does the same for files that belong together (weights and the config holding
their hash): all are written before the first rename, so a full disk replaces none of them; only a
kill between two renames, microseconds apart, can pair new weights with an old config, which the
hash check then reports instead of loading.

Temporary files cannot accumulate: the PID in the name is the writer's, and the next write to the
same path removes those whose process no longer runs on this machine (a SIGKILL, a power cut). A
failed write removes its own temporary file and any folder it created.

Failures the user can act on become one :class:`~talkinghead.errors.OutputError` line naming the
user's path, never the hidden temporary one: a full disk or quota, a read-only or forbidden folder, a
name too long, a symbolic link loop (:func:`output_error`).
"""
from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
from pathlib import Path
from typing import Iterator, Sequence

from .errors import OutputError

NAME_MAX = 255  # bytes per file name on every common file system (ext4, XFS, APFS, NTFS in UTF-16 units)
# Below this much free space, a writer's opaque failure (torch's "unexpected pos", OpenCV writing
# nothing) is taken for a full disk.
_NEARLY_FULL = 1 << 20
_TEMP = re.compile(r"\.tmp-(\d+)-[0-9a-f]{8}(?:\.|$)")


def name_max(folder: str | os.PathLike) -> int:
    """The longest file name, in bytes, that the file system of ``folder`` (or of the nearest existing
    folder above it) allows."""
    for p in (Path(folder).absolute(), *Path(folder).absolute().parents):
        try:
            return int(os.pathconf(p, "PC_NAME_MAX"))
        except (OSError, ValueError, AttributeError):  # missing folder; no pathconf (Windows)
            continue
    return NAME_MAX


def _temp_prefix(path: Path) -> str:
    """``.NAME.tmp-``, with NAME cut so that a whole temporary name fits in :data:`NAME_MAX` bytes."""
    room = NAME_MAX - len(".tmp-4294967295-xxxxxxxx.trim".encode()) - 1 - len(_ext(path).encode())
    name = path.name.encode("utf-8", "surrogateescape")[:max(1, room)].decode("utf-8", "ignore")
    return f".{name}.tmp-"


def _ext(path: Path) -> str:
    ext = "".join(path.suffixes[-1:])
    return ext if len(ext) <= 16 else ""


def temp_path(path: str | os.PathLike, suffix: str | None = None) -> Path:
    """A fresh temporary name beside ``path`` for this process (nothing is created)."""
    path = Path(path)
    ext = suffix if suffix is not None else _ext(path)
    return path.with_name(f"{_temp_prefix(path)}{os.getpid()}-{secrets.token_hex(4)}{ext}")


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs here; True where that cannot be told (Windows, whose os.kill would end it)."""
    if pid == os.getpid() or os.name != "posix":
        return True  # another write of this process, still running
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: another user's process
        return True
    return True


def remove_stale_temps(path: str | os.PathLike) -> list[Path]:
    """Remove the temporary files that writers of ``path`` left when they were killed; returns them.

    One scan of the folder (a cache of 100k clips: about 0.1 s, next to seconds of work per entry)."""
    path = Path(path)
    prefix = _temp_prefix(path)
    removed = []
    try:
        entries = [e for e in os.scandir(path.parent) if e.name.startswith(prefix)]
    except OSError:  # no folder yet, or not listable: nothing of ours in it
        return removed
    for entry in entries:
        m = _TEMP.match(entry.name, len(prefix) - len(".tmp-"))
        if m and not _alive(int(m.group(1))) and not entry.is_dir(follow_symlinks=False):
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
    return removed


def _nearly_full(folder: Path) -> bool:
    try:
        st = os.statvfs(folder)
    except (OSError, AttributeError):
        return False
    free = st.f_bfree if hasattr(os, "geteuid") and os.geteuid() == 0 else st.f_bavail  # root may use the reserve
    return free * st.f_frsize < _NEARLY_FULL


def _errno_of(exc: BaseException) -> int | None:
    """The errno of ``exc`` or of an exception it wraps; libraries that hide it keep its text
    (safetensors: "No space left on device (os error 28)"; ffmpeg's log)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno:
            return exc.errno
        text = str(exc)
        for code in (errno.ENOSPC, getattr(errno, "EDQUOT", None), errno.EROFS, errno.EFBIG):
            if code is not None and (os.strerror(code) in text or f"os error {code})" in text):
                return code
        exc = exc.__cause__ or exc.__context__
    return None


def output_error(path: str | os.PathLike, exc: BaseException | None = None, kept: bool | None = None,
                 detail: str = "") -> OutputError | None:
    """The one-line :class:`OutputError` for a failed write of ``path``, or None when ``exc`` is not about
    writing (a bug, bad input: re-raise it). Without an errno in ``exc``, a nearly full disk is
    taken as the cause. ``kept`` says whether an earlier file at ``path`` is still there (default:
    whether one exists); ``detail`` adds what the writer said (ffmpeg's last line)."""
    path = Path(path)
    code = _errno_of(exc) if exc is not None else None
    opaque = exc is None or isinstance(exc, (OSError, RuntimeError))
    if code is None and opaque and _nearly_full(_existing(path.parent)):
        code = errno.ENOSPC
    kept = path.exists() if kept is None else kept
    tail = f"; the earlier {path.name} is kept" if kept else "; nothing was written"
    if code in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
        what = "the disk is full" if code == errno.ENOSPC else "the disk quota is used up"
        return OutputError(f"Cannot write {path}: {what}{tail}. Free some space (or write to another disk) and "
                           "run again.")
    if code in (errno.EROFS, errno.EACCES, errno.EPERM):
        why = "is on a read-only file system" if code == errno.EROFS else "is not writable (permission denied)"
        return OutputError(f"Cannot write {path}: its folder {path.parent} {why}{tail}. Choose another output "
                           "folder, or make this one writable.")
    if code == errno.ENAMETOOLONG:
        return OutputError(f"Cannot write {path}: the name is too long for the file system (at most "
                           f"{name_max(path.parent)} bytes per name); choose a shorter name.")
    if code == errno.ELOOP:
        return OutputError(f"Cannot write {path}: it is a symbolic link loop; remove the link or choose another name.")
    if code == errno.EFBIG:
        return OutputError(f"Cannot write {path}: the file is too large for its file system{tail}. Write to "
                           "another disk.")
    if code == errno.EIO:
        return OutputError(f"Cannot write {path}: the disk reported an I/O error{tail}. Check the disk, or write "
                           "to another one.")
    if exc is None:
        return OutputError(f"Cannot write {path}{': ' + detail if detail else ''}{tail}.")
    return None


def _existing(folder: Path) -> Path:
    return next((p for p in (folder, *folder.parents) if os.path.isdir(p)), folder)


def _make_parents(folder: Path) -> list[Path]:
    """``mkdir -p``; returns the folders it created (innermost last)."""
    made = []
    for p in reversed((folder, *folder.parents)):
        if not os.path.isdir(p):
            try:
                p.mkdir()
            except FileExistsError:
                if not os.path.isdir(p):
                    raise OutputError(f"Cannot write into {folder}: {p} is a file, not a folder; choose another "
                                      "output path.") from None
                continue
            made.append(p)
    return made


def _fsync(path: Path) -> None:
    """Flush to the disk before the rename: NFS and quotas report a full disk only here."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):  # file systems that cannot sync
            raise
    finally:
        os.close(fd)


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def make_folder(folder: str | os.PathLike) -> Path:
    """``mkdir -p`` whose failure (a full disk, a read-only folder) is an :class:`OutputError` naming ``folder``."""
    folder = Path(folder)
    try:
        _make_parents(folder)
    except OSError as exc:
        raise (output_error(folder, exc, kept=False) or exc) from None
    return folder


@contextlib.contextmanager
def atomic_paths(paths: Sequence[str | os.PathLike], suffixes: Sequence[str | None] | None = None,
                 name: str | os.PathLike | None = None) -> Iterator[list[Path]]:
    """Yield a temporary path for each of ``paths``; when the block succeeds, rename them into place
    in order. On any exception nothing is renamed, the temporary files are removed, and a write
    failure (:func:`output_error`) is raised as :class:`OutputError` naming ``name`` (default: the
    first path). An OSError about some other file (an input read inside the block) passes unchanged."""
    paths = [Path(p) for p in paths]
    suffixes = list(suffixes) if suffixes is not None else [None] * len(paths)
    made: list[Path] = []
    tmps: list[Path] = []
    try:
        for path in paths:
            made += _make_parents(path.parent)
            remove_stale_temps(path)
        tmps = [temp_path(p, s) for p, s in zip(paths, suffixes)]
        for tmp in tmps:
            tmp.touch(exist_ok=False)  # claims the name, as mkstemp did
        yield tmps
        mode = 0o666 & ~_umask()  # the mode a plain open() would give, whatever the writer used
        for tmp in tmps:
            if tmp.exists():
                os.chmod(tmp, mode)
                _fsync(tmp)
        for tmp, path in zip(tmps, paths):
            os.replace(tmp, path)
    except BaseException as exc:
        error = None
        if isinstance(exc, Exception) and not _about_other_file(exc, [*paths, *tmps]):
            error = output_error(Path(name) if name is not None else paths[0], exc, kept=paths[0].exists())
        _discard(tmps, made)
        if error is not None:
            raise error from None
        raise
    finally:
        _discard(tmps, [])


def _about_other_file(exc: Exception, ours: list[Path]) -> bool:
    names = [f for f in (getattr(exc, "filename", None), getattr(exc, "filename2", None)) if f]
    if not isinstance(exc, OSError) or not names:
        return False
    ours_abs = {os.path.abspath(p) for p in (*ours, *(p.parent for p in ours))}
    return not any(os.path.abspath(os.fsdecode(f)) in ours_abs for f in names)


def _discard(tmps: list[Path], made: list[Path]) -> None:
    for tmp in tmps:
        with contextlib.suppress(OSError):
            tmp.unlink()
    for folder in reversed(made):
        with contextlib.suppress(OSError):
            folder.rmdir()  # only if still empty


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it to ``path`` (see :func:`atomic_paths`).

    The temporary name keeps the target's extension (or ``suffix``) so that writers which pick a
    format from the extension (OpenCV, ffmpeg) still work.
    """
    with atomic_paths([path], [suffix]) as (tmp,):
        yield tmp


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))
