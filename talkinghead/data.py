"""Preprocessing cache and K-shot episodes for meta-learning.

``preprocess`` turns whole, uncropped clips into a compact cache; :class:`EpisodeDataset` serves
K+1 frames of one video with their landmark images; :class:`EpisodeSampler` decides which video each
episode comes from, deterministically, so that a resumed run sees exactly the episodes an
uninterrupted run would have seen.

Cache layout (one folder)::

    CACHE/<video_id>.npz        one entry per usable video, written atomically:
        jpeg        uint8 (N,)        JPEG bytes of all face crops, concatenated
        offsets     int64 (T+1,)      crop t is jpeg[offsets[t]:offsets[t+1]]
        landmarks   float32 (T,68,2)  iBUG 68 points in crop pixel coordinates
        frame_index int64 (T,)        index of each crop's frame in the source clip
        meta        str               JSON: video, identity, source, fps, crop size, counts, settings
    CACHE/<video_id>.skip.json  a clip that cannot be used, with the reason and settings (a rerun skips it too)
    CACHE/index.json            summary of the last run: entries and skipped clips with reasons

Frames are subsampled: at most ``max_frames`` per clip, evenly spaced over the clip, so a 60 s clip
costs about as much as a 10 s one. Frames where the detector finds no face are dropped (never
duplicated or interpolated), and a clip left with fewer than ``min_frames`` crops is skipped as
too short.
"""
from __future__ import annotations

import contextlib
import csv
import functools
import glob
import hashlib
import json
import math
import os
import signal
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from .atomic import atomic_path, atomic_write_text, make_folder
from .errors import InputError, NoFaceError, OutputError
from .io import check_output_folder

CACHE_VERSION = 1
VIDEO_EXTENSIONS = (".mp4", ".mpg", ".mpeg", ".avi", ".mov", ".mkv", ".webm", ".m4v")
# What np.load raises for a file that is not a whole .npz (truncated, foreign, empty)
_BAD_NPZ = (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile)

# iBUG 300-W index of each point's mirror image (left <-> right), used to flip landmarks with the
# frame. Points on the symmetry axis (nose bridge, nose tip, lip centres) map to themselves.
IBUG_FLIP = np.array(
    list(range(16, -1, -1))  # jaw 0-16
    + list(range(26, 16, -1))  # brows 17-21 <-> 26-22
    + [27, 28, 29, 30]  # nose bridge
    + [35, 34, 33, 32, 31]  # lower nose
    + [45, 44, 43, 42, 47, 46]  # left eye 36-41 <-> right eye 45-42, 47-46
    + [39, 38, 37, 36, 41, 40]  # right eye 42-47 <-> left eye
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55]  # outer lip
    + [64, 63, 62, 61, 60, 67, 66, 65],  # inner lip
    dtype=np.int64,
)


def flip_landmarks(landmarks: np.ndarray, width: int) -> np.ndarray:
    """Mirror landmarks ``(..., 68, 2)`` horizontally in an image ``width`` pixels wide.

    x becomes ``width - 1 - x`` (pixel centres at integers, OpenCV's convention, so that it matches
    ``frame[:, ::-1]``) and left/right points swap places (:data:`IBUG_FLIP`), so point 36 is still
    the outer corner of the eye on the image's left.
    """
    out = np.array(landmarks, dtype=np.float32, copy=True)[..., IBUG_FLIP, :]
    out[..., 0] = (width - 1) - out[..., 0]
    return out


# --------------------------------------------------------------------------------------------
# cache entries
# --------------------------------------------------------------------------------------------


_FINGERPRINT_BYTES = 1 << 20


def video_id_for(path: str | os.PathLike) -> str:
    """Stable cache name of a clip: its file stem plus a short hash of its content.

    The hash covers the file's size and its first and last MiB, so a clip keeps its id in any folder
    and on any machine (a trained model's rows of D's table are matched to a cache by these ids), and
    byte-identical copies share one. A file that cannot be read falls back to :func:`legacy_video_id`.
    """
    p = Path(path)
    try:
        with open(p, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            digest = hashlib.sha1(str(size).encode("ascii"))
            digest.update(fh.read(_FINGERPRINT_BYTES))
            if size > 2 * _FINGERPRINT_BYTES:
                fh.seek(-_FINGERPRINT_BYTES, os.SEEK_END)
            digest.update(fh.read())
    except OSError:
        return legacy_video_id(p)
    return f"{p.stem}-{digest.hexdigest()[:8]}"


def legacy_video_id(path: str | os.PathLike) -> str:
    """The id older caches used: the stem plus a hash of the resolved path, which changed with the
    folder. :func:`preprocess_video` renames such entries to :func:`video_id_for`'s id."""
    p = Path(path)
    return f"{p.stem}-{hashlib.sha1(str(p.resolve()).encode('utf-8')).hexdigest()[:8]}"


def _recorded_source(file: Path) -> str | None:
    """The clip an entry or skip record was made from (None when unreadable)."""
    try:
        if file.name.endswith(".npz"):
            with np.load(file, allow_pickle=False) as z:
                return json.loads(str(z["meta"])).get("source")
        return json.loads(file.read_text(encoding="utf-8")).get("source")
    except (*_BAD_NPZ, AttributeError):
        return None


def _reconcile_earlier_files(path: Path, out_dir: Path, vid: str) -> None:
    """Make the clip's earlier cache files agree with its current id before it is looked up.

    - An entry or skip record named by the older, path-based id is renamed to ``vid``, so an older
      cache is resumed, not duplicated.
    - One made from an earlier content of the same file (its id differs, its recorded source is this
      file) is removed: the clip changed and is cropped again, and the old crops are not trained on.
    """
    legacy = legacy_video_id(path)
    for suffix in (".npz", ".skip.json"):
        src, dst = out_dir / f"{legacy}{suffix}", out_dir / f"{vid}{suffix}"
        if legacy != vid and src.exists():
            if dst.exists():
                src.unlink()
            else:
                os.replace(src, dst)
    target = path.resolve()
    for file in out_dir.glob(f"{glob.escape(path.stem)}-*"):
        name = file.name.removesuffix(".npz").removesuffix(".skip.json")
        if name == vid or name == file.name or len(name) != len(vid):  # ours, a foreign file, another stem
            continue
        source = _recorded_source(file)
        if source is not None and Path(source).resolve() == target:
            file.unlink(missing_ok=True)


def write_entry(
    path: str | os.PathLike,
    crops: Sequence[np.ndarray],
    landmarks: np.ndarray,
    frame_index: Sequence[int] | None = None,
    meta: dict | None = None,
    jpeg_quality: int = 95,
) -> Path:
    """Write one cache entry atomically.

    Args:
        path: target ``.npz`` file.
        crops: T face crops, uint8 ``(S, S, 3)`` RGB, all the same size.
        landmarks: float32 ``(T, 68, 2)`` in crop pixels.
        frame_index: source frame index of each crop (default ``0..T-1``).
        meta: extra JSON-serialisable facts (video, identity, source, fps ...).
    """
    import cv2

    landmarks = np.asarray(landmarks, dtype=np.float32)
    if len(crops) == 0 or landmarks.shape != (len(crops), 68, 2):
        raise ValueError(f"expected T crops and (T, 68, 2) landmarks, got {len(crops)} and {landmarks.shape}")
    size = crops[0].shape[0]
    chunks, offsets = [], [0]
    for crop in crops:
        if crop.shape != (size, size, 3) or crop.dtype != np.uint8:
            raise ValueError(f"crops must be uint8 ({size}, {size}, 3), got {crop.dtype} {crop.shape}")
        ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(crop[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
        if not ok:
            raise RuntimeError("OpenCV failed to encode a JPEG crop")
        chunks.append(buf.reshape(-1))
        offsets.append(offsets[-1] + buf.size)
    meta = dict(meta or {})
    meta.update(version=CACHE_VERSION, size=int(size), num_frames=len(crops))
    frame_index = np.arange(len(crops)) if frame_index is None else np.asarray(frame_index)
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:  # a file object keeps numpy from appending ".npz" to the temp name
            np.savez(
                fh,
                jpeg=np.concatenate(chunks).astype(np.uint8),
                offsets=np.asarray(offsets, dtype=np.int64),
                landmarks=landmarks,
                frame_index=frame_index.astype(np.int64),
                meta=np.array(json.dumps(meta)),
            )
    return path


@dataclass
class CacheEntry:
    """One video of the cache, loaded in memory: JPEG crops + landmarks ``(T, 68, 2)``."""

    name: str
    jpeg: np.ndarray
    offsets: np.ndarray
    landmarks: np.ndarray
    frame_index: np.ndarray
    meta: dict

    @classmethod
    def load(cls, path: str | os.PathLike) -> "CacheEntry":
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as z:
                return cls(
                    name=path.stem,
                    jpeg=z["jpeg"],
                    offsets=z["offsets"],
                    landmarks=z["landmarks"],
                    frame_index=z["frame_index"],
                    meta=json.loads(str(z["meta"])),
                )
        except _BAD_NPZ as exc:
            raise InputError(f"{path} is not a readable cache entry ({type(exc).__name__}: {exc}); delete it and run "
                             "`talkinghead preprocess` again.") from exc

    def __len__(self) -> int:
        return len(self.landmarks)

    def frame(self, t: int) -> np.ndarray:
        """Crop ``t`` as uint8 ``(S, S, 3)`` RGB."""
        import cv2

        buf = self.jpeg[self.offsets[t] : self.offsets[t + 1]]
        bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR)
        return np.ascontiguousarray(bgr[:, :, ::-1])


def list_entries(cache_dir: str | os.PathLike) -> list[Path]:
    """Sorted entry files of a cache; raises :class:`InputError` when there are none."""
    cache_dir = Path(cache_dir)
    if not cache_dir.is_dir():
        raise InputError(f"{cache_dir} is not a folder; build a cache with `talkinghead preprocess VIDEOS -o {cache_dir}`.")
    files = sorted(p for p in cache_dir.glob("*.npz") if not p.name.startswith("."))
    if not files:
        raise InputError(f"{cache_dir} holds no cache entries (*.npz); build it with `talkinghead preprocess VIDEOS -o {cache_dir}`.")
    return files


# --------------------------------------------------------------------------------------------
# preprocessing
# --------------------------------------------------------------------------------------------


@dataclass
class PreprocessResult:
    """Outcome for one clip: ``status`` is ``done``, ``exists``, ``skipped`` (with ``reason``) or
    ``failed``. ``stale`` names the settings that differ when a cached outcome was made with other
    ones; ``warnings`` are the messages raised while processing it (re-emitted by the main process)."""

    source: str
    video_id: str
    status: str
    reason: str = ""
    frames: int = 0
    stale: tuple[str, ...] = ()
    warnings: list[str] = field(default_factory=list)


# Crops below 64 px lose the detail training needs (the smallest config is 64); above 1024 px they
# only upscale typical video faces at a large cost in time and disk.
MIN_CROP_SIZE, MAX_CROP_SIZE = 64, 1024

# Settings that shape a cache entry, or decide whether a clip is skipped: a cached outcome made with
# other values is stale. Values are recorded in the entry's meta and in the .skip.json.
_ENTRY_SETTINGS = ("size", "max_frames", "margin", "identity", "detector")
_SKIP_SETTINGS = ("max_frames", "min_frames", "detector")
_OPTION_NAMES = {"size": "--size", "max_frames": "--max-frames", "min_frames": "--min-frames", "margin": "margin",
                 "identity": "identity (--manifest)", "detector": "--backend"}


def read_manifest(path: str | os.PathLike) -> dict[str, str]:
    """``resolved clip path -> identity`` from a CSV with ``path`` and ``identity`` columns.

    Relative paths are taken relative to the CSV's folder (as in ``shared/data/MANIFEST.csv``).
    """
    path = Path(path)
    out = {}
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:  # -sig: Excel's BOM is not part of "path"
            reader = csv.DictReader(fh)
            if not reader.fieldnames or not {"path", "identity"} <= set(reader.fieldnames):
                raise InputError(f"the manifest {path} needs a header with `path` and `identity` columns.")
            for row in reader:
                clip, identity = row.get("path"), row.get("identity")
                if clip is None or identity is None:  # a short row, or an unclosed quote that swallowed the rest
                    raise InputError(f"line {reader.line_num} of the manifest {path} lacks a path or an identity "
                                     "column (a short row or an unclosed quote?); give every row both.")
                if not clip.strip() or not identity.strip():  # a listed file without a person (an image)
                    continue
                p = Path(clip)
                out[str((p if p.is_absolute() else path.parent / p).resolve())] = identity
    except OSError as exc:
        raise InputError(f"cannot read the manifest {path} ({exc.strerror}); check the path.") from exc
    except UnicodeDecodeError:
        raise InputError(f"the manifest {path} is not UTF-8 text; save it as a UTF-8 CSV.") from None
    except csv.Error as exc:
        raise InputError(f"the manifest {path} is not valid CSV ({exc}); fix it or save it again as CSV.") from None
    return out


def expand_videos(inputs: Iterable[str | os.PathLike]) -> list[Path]:
    """Files given directly, plus the video files (by extension) found under given folders, sorted.

    A clip reached twice (a file inside a given folder, ``./a.mp4`` and ``a.mp4``) is kept once.
    """
    found: list[Path] = []
    seen: set[Path] = set()
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            candidates = sorted(q for q in p.rglob("*") if q.suffix.lower() in VIDEO_EXTENSIONS and q.is_file())
        elif p.is_file():
            candidates = [p]
        else:
            raise InputError(f"{p} does not exist; pass video files or folders holding them.")
        for q in candidates:
            if q.resolve() not in seen:
                seen.add(q.resolve())
                found.append(q)
    return found


def _subsample_indices(num_frames: int, max_frames: int) -> np.ndarray:
    """At most ``max_frames`` indices evenly spaced over ``0..num_frames-1``."""
    if num_frames <= max_frames:
        return np.arange(num_frames)
    return np.unique(np.round(np.linspace(0, num_frames - 1, max_frames)).astype(np.int64))


def _read_subsampled(path: Path, max_frames: int) -> tuple[list[np.ndarray], list[int], float]:
    """Stream a clip and keep about ``max_frames`` evenly spaced frames (uint8 RGB)."""
    from .io import VideoReader

    reader = VideoReader(path)
    estimate = int(getattr(reader, "num_frames", 0) or 0)
    # Keep every stride-th frame while streaming (memory stays bounded when the frame count is only
    # estimated), then thin evenly to max_frames.
    stride = max(1, estimate // max_frames) if estimate > 0 else 1
    frames, index = [], []
    for t, frame in enumerate(reader):
        if t % stride == 0:
            frames.append(frame)
            index.append(t)
            if estimate <= 0 and len(frames) > 4 * max_frames:  # unknown length: thin as we go
                frames, index = frames[::2], index[::2]
                stride *= 2
    keep = _subsample_indices(len(frames), max_frames)
    fps = float(getattr(reader, "fps", 0.0) or 0.0)
    return [frames[i] for i in keep], [index[i] for i in keep], fps


@functools.lru_cache(maxsize=None)
def _detector(name: str):
    """One detector per process (loading models per clip would dominate the time of short clips)."""
    from .landmarks.detectors import get_detector

    return get_detector(name)


def _differs(recorded: dict, wanted: dict, keys: Sequence[str]) -> tuple[str, ...]:
    """Settings in ``keys`` recorded with another value (a setting not recorded is not compared)."""
    return tuple(k for k in keys if k in recorded and recorded[k] != wanted[k])


def _cached(path: Path, vid: str, entry: Path, skip: Path, settings: dict) -> PreprocessResult | None:
    """The earlier outcome of a clip, marked stale where it was made with other settings; None when
    there is none or its file is unreadable (then the clip is redone)."""
    if entry.exists():
        try:
            with np.load(entry, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
        except _BAD_NPZ:
            return None
        # entries written before settings were recorded still know their size and identity
        recorded = meta.get("settings") or {k: meta[k] for k in ("size", "identity") if k in meta}
        stale = _differs(recorded, settings, _ENTRY_SETTINGS)
        if int(meta.get("num_frames", settings["min_frames"])) < settings["min_frames"]:
            stale += ("min_frames",)
        return PreprocessResult(str(path), vid, "exists", frames=int(meta.get("num_frames", 0)), stale=stale)
    if skip.exists():
        try:
            record = json.loads(skip.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        stale = _differs(record.get("settings", {}), settings, _SKIP_SETTINGS)
        reason = record.get("reason", "skipped earlier")
        if stale:
            reason += " (skipped earlier with other settings; --overwrite redoes it)"
        return PreprocessResult(str(path), vid, "skipped", reason, stale=stale)
    return None


def preprocess_video(
    path: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    size: int = 256,
    max_frames: int = 300,
    min_frames: int = 9,
    margin: float | None = None,
    identity: str | None = None,
    detector: str = "dlib",
    jpeg_quality: int = 95,
    overwrite: bool = False,
    video_id: str | None = None,
) -> PreprocessResult:
    """Crop the faces of one clip into ``out_dir/<video_id>.npz`` (``video_id``: :func:`video_id_for`'s,
    computed when not given).

    Frames without a detected face are dropped. A clip that cannot be read, has no face, or keeps
    fewer than ``min_frames`` crops gets a ``<video_id>.skip.json`` with the reason instead.
    Returns the earlier outcome without work when either file is already there (unless
    ``overwrite``), with ``stale`` naming the settings it was made with that differ from these.
    """
    from .landmarks.crop import crop_from_landmarks, crop_image, transform_landmarks
    from .landmarks.track import track_video

    path = Path(path)
    out_dir = Path(out_dir)
    vid = video_id or video_id_for(path)
    _reconcile_earlier_files(path, out_dir, vid)
    entry, skip = out_dir / f"{vid}.npz", out_dir / f"{vid}.skip.json"
    settings = {"size": size, "max_frames": max_frames, "min_frames": min_frames, "margin": margin,
                "identity": identity if identity is not None else path.stem, "detector": detector}
    if not overwrite:
        earlier = _cached(path, vid, entry, skip, settings)
        if earlier is not None:
            return earlier

    def skipped(reason: str) -> PreprocessResult:
        atomic_write_text(skip, json.dumps({"source": str(path.resolve()), "reason": reason, "settings": settings},
                                           indent=1))
        entry.unlink(missing_ok=True)  # an older entry would still be trained on
        return PreprocessResult(str(path), vid, "skipped", reason)

    try:
        frames, index, fps = _read_subsampled(path, max_frames)
    except Exception as exc:  # any decoder failure means the same thing to the user: unreadable
        return skipped(f"unreadable ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})")
    if not frames:
        return skipped("unreadable (no frames decoded)")
    # Subsampled frames are not consecutive: no smoothing, no gap filling (a frame without a face
    # is dropped below, never interpolated).
    try:
        track = track_video(frames, backend=_detector(detector), smooth=False, max_gap_s=0.0,
                            allow_gaps=True, fps=fps or 25.0)
    except NoFaceError:
        return skipped(f"no face in {len(frames)} sampled frames")
    lms = np.asarray(track.landmarks, dtype=np.float32)
    detected = ~np.asarray(track.missing, dtype=bool) & np.isfinite(lms).all(axis=(1, 2))
    if not detected.any():
        return skipped(f"no face in {len(frames)} sampled frames")
    if detected.sum() < min_frames:
        return skipped(f"too short ({int(detected.sum())} frames with a face of {len(frames)} sampled, need {min_frames})")
    crops, crop_lms, kept = [], [], []
    for t in np.flatnonzero(detected):
        fc = crop_from_landmarks(lms[t], size, **({} if margin is None else {"margin": margin}))
        crops.append(crop_image(frames[t], fc))
        crop_lms.append(transform_landmarks(lms[t], fc))
        kept.append(index[t])
    h, w = frames[0].shape[:2]
    meta = {
        "video": vid,
        "identity": settings["identity"],
        "source": str(path.resolve()),  # absolute: finds this entry again when the file's content changes
        "fps": fps,
        "source_size": [int(w), int(h)],
        "sampled_frames": len(frames),
        "detector": getattr(track, "backend", detector),
        "settings": settings,
    }
    write_entry(entry, crops, np.stack(crop_lms), kept, meta, jpeg_quality=jpeg_quality)
    skip.unlink(missing_ok=True)  # an older skip record would contradict the entry
    return PreprocessResult(str(path), vid, "done", frames=len(crops))


def _preprocess_job(kwargs: dict) -> PreprocessResult:
    """One clip; never raises for a bad clip, and returns its warnings instead of printing them (a
    worker's own warning format would print file names and source lines)."""
    path = kwargs["path"]
    with warnings.catch_warnings(record=True) as caught:  # keeps the filters (ResourceWarning stays ignored)
        try:
            result = preprocess_video(**kwargs)
        except OutputError:  # a full disk or a read-only cache fails every clip after it: stop, in one line
            raise
        except Exception as exc:  # report, don't kill the pool: one bad clip must not stop the other 72
            first = str(exc).splitlines()[0] if str(exc) else ""
            vid = kwargs.get("video_id") or video_id_for(path)
            result = PreprocessResult(str(path), vid, "failed", f"{type(exc).__name__}: {first}")
    # a ResourceWarning is the garbage collector's news about some other object, not about this clip
    result.warnings = list(dict.fromkeys(str(w.message) for w in caught
                                         if not issubclass(w.category, ResourceWarning)))
    return result


# ---- the worker pool: Ctrl-C and SIGTERM must stop it at once, leaving no process and no temp file


def _init_worker() -> None:
    # Ctrl-C reaches the whole process group; only the main process acts on it (by stopping the
    # pool). A worker that died of it would leave the pool waiting for it forever.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # _stop_pool's terminate() ends a worker at once


def _stop_pool(pool, timeout: float = 5.0) -> None:
    """Drop the queued clips, end the workers and wait for them (kill one that does not stop)."""
    procs = list((getattr(pool, "_processes", None) or {}).values())  # taken before shutdown clears it
    manager = getattr(pool, "_executor_manager_thread", None)
    pool.shutdown(wait=False, cancel_futures=True)
    for p in procs:
        p.terminate()
    for p in procs:
        p.join(timeout)
        if p.is_alive():
            p.kill()
            p.join()
    # the pool's manager thread closes its wake-up pipe as it ends; joined here, it cannot race
    # concurrent.futures' exit hook writing to that pipe (an EBADF traceback after Ctrl-C, CPython 3.11)
    if manager is not None:
        manager.join(timeout)


def _remove_temp_files(job: dict) -> None:
    """Temporary files of a clip whose worker was ended mid-write (atomic_path names them
    ``.VIDEO_ID.npz.tmp-*`` and ``.VIDEO_ID.skip.json.tmp-*``)."""
    vid = glob.escape(job["video_id"])
    for tmp in Path(job["out_dir"]).glob(f".{vid}.*.tmp*"):
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def _worker_pool(workers: int):
    """A process pool that is stopped, not waited for, when the block raises (Ctrl-C, SIGTERM)."""
    import concurrent.futures as cf
    import multiprocessing as mp

    # spawn: workers start clean (no inherited OpenMP/torch thread state from the parent)
    pool = cf.ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"), initializer=_init_worker)
    try:
        yield pool
    except BaseException:
        _stop_pool(pool)
        raise
    pool.shutdown()


def _run_jobs(jobs: list[dict], workers: int, on_result) -> None:
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:  # in this process: Ctrl-C unwinds atomic writes itself
            on_result(_preprocess_job(job))
        return
    import concurrent.futures as cf
    from concurrent.futures.process import BrokenProcessPool

    unfinished = dict(enumerate(jobs))
    try:
        with _worker_pool(min(workers, len(jobs))) as pool:
            futures = {pool.submit(_preprocess_job, job): i for i, job in enumerate(jobs)}
            for fut in cf.as_completed(futures):
                on_result(fut.result())
                del unfinished[futures[fut]]
    except BaseException as exc:
        for job in unfinished.values():  # the pool is stopped: no worker writes any more
            _remove_temp_files(job)
        if isinstance(exc, BrokenProcessPool):
            # a worker killed from outside (out of memory) or crashed in native code (a decoder, dlib)
            names = ", ".join(str(job["path"]) for job in list(unfinished.values())[:3])
            more = f" and {len(unfinished) - 3} more" if len(unfinished) > 3 else ""
            raise InputError(
                f"a preprocessing worker died (killed for lack of memory, or crashed in a decoder) while "
                f"{len(unfinished)} clips were unfinished ({names}{more}); the finished ones are kept: run the same "
                "command again, with --workers 1 to find a clip that crashes it.") from None
        raise


@dataclass
class PreprocessReport:
    results: list[PreprocessResult] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)

    def summary(self) -> str:
        lines = [
            f"{self.count('done')} clips cropped, {self.count('exists')} already cached, "
            f"{self.count('skipped')} skipped, {self.count('failed')} failed"
        ]
        for r in self.results:
            if r.status in ("skipped", "failed"):
                lines.append(f"  {r.status}: {r.source}: {r.reason}")
        return "\n".join(lines)


def _check_settings(size: int, max_frames: int, min_frames: int) -> None:
    if not MIN_CROP_SIZE <= size <= MAX_CROP_SIZE:
        raise InputError(f"--size {size} is out of range: use {MIN_CROP_SIZE} to {MAX_CROP_SIZE} px (smaller crops "
                         "lose the detail training needs, larger ones only upscale video faces; models use 256).")
    if max_frames < min_frames:
        raise InputError(f"--max-frames {max_frames} is below --min-frames {min_frames}, so every clip would be "
                         "skipped; raise --max-frames or lower --min-frames.")


def _warn_unlisted(files: list[Path], identities: dict[str, str], manifest) -> None:
    unlisted = [p for p in files if str(p.resolve()) not in identities]
    if unlisted:
        warnings.warn(f"{len(unlisted)} of {len(files)} clips (e.g. {unlisted[0]}) are not in the manifest {manifest} "
                      "and get their file name as identity; its paths are relative to the CSV's folder.")


def _by_id(files: list[Path]) -> dict[str, Path]:
    """``cache id -> clip``, one clip per id: copies of a file (same name, same bytes) in other folders
    are cached once."""
    by_id: dict[str, Path] = {}
    for p in files:
        kept = by_id.setdefault(video_id_for(p), p)
        if kept is not p:
            warnings.warn(f"{p} is a copy of {kept} and is cached once.")
    return by_id


def _warn_stale(results: list[PreprocessResult], out_dir: Path) -> None:
    stale = [r for r in results if r.stale]
    if stale:
        names = ", ".join(dict.fromkeys(_OPTION_NAMES[k] for r in stale for k in r.stale))
        warnings.warn(f"{len(stale)} of {len(results)} clips in {out_dir} were cached or skipped with other settings "
                      f"({names}) and were not redone; pass --overwrite to redo them.")


def _emit_warnings(result: PreprocessResult, bar) -> None:
    if result.warnings:
        with bar.external_write_mode():  # a warning must not be glued to the progress bar
            for message in result.warnings:
                warnings.warn(message, stacklevel=2)


def preprocess(
    videos: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    size: int = 256,
    max_frames: int = 300,
    min_frames: int = 9,
    margin: float | None = None,
    manifest: str | os.PathLike | None = None,
    workers: int = 1,
    detector: str = "dlib",
    overwrite: bool = False,
    progress: bool = True,
) -> PreprocessReport:
    """Preprocess clips (files or folders) into the cache ``out_dir``, in a process pool.

    Resumable: clips already cached (or already skipped) are not redone; a warning counts those made
    with other settings. Inputs, the output folder and the detector are checked before any clip is
    decoded. Writes ``index.json``.
    """
    from tqdm import tqdm

    _check_settings(size, max_frames, min_frames)
    out_dir = Path(out_dir)
    check_output_folder(out_dir, f"-o {out_dir}", "choose a folder for the cache")  # before any clip is decoded
    files = expand_videos(videos)
    if not files:
        shown = ", ".join(str(v) for v in list(videos)[:3]) + (", ..." if len(videos) > 3 else "")
        raise InputError(f"no video files found in {shown}; pass .mp4/.mpg/... files or folders holding them.")
    by_id = _by_id(files)
    files = list(by_id.values())
    identities = read_manifest(manifest) if manifest else {}
    if manifest:
        _warn_unlisted(files, identities, manifest)
    _detector(detector).load()  # missing weights: one error now, not one per clip
    make_folder(out_dir)
    jobs = [
        dict(path=p, out_dir=out_dir, size=size, max_frames=max_frames, min_frames=min_frames, margin=margin,
             identity=identities.get(str(p.resolve())), detector=detector, overwrite=overwrite, video_id=vid)
        for vid, p in by_id.items()
    ]
    report = PreprocessReport()
    bar = tqdm(total=len(jobs), desc="preprocess", unit="clip", disable=not progress)

    def on_result(result: PreprocessResult) -> None:
        report.results.append(result)
        _emit_warnings(result, bar)
        bar.update()

    try:
        _run_jobs(jobs, workers, on_result)
    finally:
        bar.close()
    order = {str(p): i for i, p in enumerate(files)}
    report.results.sort(key=lambda r: order.get(r.source, 0))
    _warn_stale(report.results, out_dir)
    index = {
        "version": CACHE_VERSION,
        "size": size,
        "max_frames": max_frames,
        "min_frames": min_frames,
        "detector": detector,
        "entries": [
            {"video": r.video_id, "source": r.source, "frames": r.frames or None}
            for r in report.results
            if r.status in ("done", "exists")
        ],
        "skipped": [{"source": r.source, "status": r.status, "reason": r.reason} for r in report.results if r.status in ("skipped", "failed")],
    }
    atomic_write_text(out_dir / "index.json", json.dumps(index, indent=1))
    return report


# --------------------------------------------------------------------------------------------
# episodes
# --------------------------------------------------------------------------------------------


class EpisodeSampler:
    """Infinite, deterministic stream of ``(video_index, episode_seed)`` keys for one rank.

    Epoch ``e`` shuffles the videos with ``seed`` and ``e``; with ``world_size`` ranks each rank takes
    every ``world_size``-th video of that order (padded by wrapping, as ``DistributedSampler`` does),
    so ranks see disjoint shares. Item ``n`` of a rank depends only on ``(seed, rank, n)``: a trainer
    that consumed ``n`` items resumes with ``start=n`` and sees the very same episodes.
    """

    def __init__(self, num_videos: int, seed: int = 0, rank: int = 0, world_size: int = 1, start: int = 0):
        if num_videos < 1:
            raise ValueError("num_videos must be >= 1")
        self.num_videos, self.seed, self.rank, self.world_size = num_videos, seed, rank, world_size
        self.start = start
        self.per_rank = math.ceil(num_videos / world_size)

    def order(self, epoch: int) -> np.ndarray:
        """This rank's video indices for ``epoch``, shape ``(per_rank,)``."""
        perm = np.random.default_rng([self.seed, epoch]).permutation(self.num_videos)
        total = self.per_rank * self.world_size
        perm = np.resize(perm, total)  # wraps around to pad
        return perm[self.rank :: self.world_size]

    def key(self, n: int) -> tuple[int, tuple[int, int, int]]:
        epoch, j = divmod(n, self.per_rank)
        return int(self.order(epoch)[j]), (self.seed, self.rank, n)

    def __iter__(self) -> Iterator[tuple[int, tuple[int, int, int]]]:
        n = self.start
        order, epoch = None, -1
        while True:
            e, j = divmod(n, self.per_rank)
            if e != epoch:
                order, epoch = self.order(e), e
            yield int(order[j]), (self.seed, self.rank, n)
            n += 1


def _augment_matrix(rng: np.random.Generator, size: int, scale: float, shift: float) -> np.ndarray:
    """A random 2x3 similarity (scale about the centre, then shift), in pixels of a ``size`` crop."""
    s = 1.0 + rng.uniform(-scale, scale)
    tx, ty = rng.uniform(-shift, shift, size=2) * size
    c = (size - 1) / 2.0
    return np.array([[s, 0.0, c - s * c + tx], [0.0, s, c - s * c + ty]], dtype=np.float64)


#: A mouth this open (inner-lip gap / mouth width; the training clips' median is 0.12, their 90th
#: percentile 0.27) shows teeth or the mouth's inside, which the shots of a talking clip rarely do.
WIDE_OPEN = 0.25


class EpisodeDataset:
    """K-shot episodes from a preprocessing cache (a map-style ``torch.utils.data`` dataset).

    ``dataset[key]`` with ``key = (video_index, seed)`` (what :class:`EpisodeSampler` yields) or a
    plain ``video_index`` returns a dict:

    - ``frames``: float32 ``(K+1, 3, S, S)`` in [-1, 1]; the first K are the few shots, the last the target
    - ``landmarks``: float32 ``(K+1, 3, S, S)`` landmark images in [-1, 1]
    - ``points``: float32 ``(K+1, 68, 2)`` the same landmarks in crop pixels (for the warp family)
    - ``video_index``: int64 scalar (row of the discriminator's W)

    Augmentation (``augment=True``) keeps frames and landmarks consistent: one horizontal flip per
    episode (image mirrored, landmarks mirrored with :data:`IBUG_FLIP`) and a small random
    scale/shift per frame applied to the crop and its points with the same matrix.

    ``focus`` is the share of episodes whose target is one of the clip's :meth:`hard_frames` (an open
    mouth or a blink), where a warp of the shots has least to copy and a warp generator must paint.
    Such frames are a minority of talking clips (a blink is about one frame in twenty), so uniform
    targets give those parts little of the training signal.
    """

    def __init__(
        self,
        cache_dir: str | os.PathLike,
        k: int = 8,
        size: int | None = None,
        augment: bool = True,
        flip_p: float = 0.5,
        scale: float = 0.05,
        shift: float = 0.03,
        preload: bool = True,
        focus: float = 0.0,
    ):
        if not 0.0 <= focus <= 1.0:
            raise ValueError(f"focus must be between 0 and 1, got {focus!r}")
        self.focus = float(focus)
        self._hard: dict[int, np.ndarray] = {}
        self.files = list_entries(cache_dir)
        self.cache_dir = Path(cache_dir)
        self.k, self.augment, self.flip_p, self.scale, self.shift = k, augment, flip_p, scale, shift
        self._entries: dict[int, CacheEntry] = {}
        metas = []
        for i, f in enumerate(self.files):
            e = CacheEntry.load(f)
            metas.append(e.meta)
            if preload:
                self._entries[i] = e
        self.meta = metas
        # the file name is the clip's id (an entry renamed from a path-based id keeps its old meta)
        self.videos = [f.stem for f in self.files]
        self.identities = [m.get("identity", v) for m, v in zip(metas, self.videos)]
        self.cache_size = int(metas[0]["size"])
        self.size = int(size or self.cache_size)

    def __len__(self) -> int:
        return len(self.files)

    def entry(self, i: int) -> CacheEntry:
        if i not in self._entries:
            self._entries[i] = CacheEntry.load(self.files[i])
        return self._entries[i]

    def hard_frames(self, i: int) -> np.ndarray:
        """Indices of clip ``i``'s frames whose mouth is wide open (inner-lip gap over mouth width at least
        :data:`WIDE_OPEN`) or whose eyes are at most half as open as the clip's median (a blink or a wink).
        In ``../shared/data/train`` that is about 12% and 2.4% of the frames."""
        if i not in self._hard:
            from .metrics import eye_opening, mouth_open_ratio

            lm = self.entry(i).landmarks
            eyes = eye_opening(lm)
            median = np.nanmedian(eyes) if np.isfinite(eyes).any() else np.nan
            with np.errstate(invalid="ignore"):
                blink = np.isfinite(eyes) & (eyes <= 0.5 * median)
                wide = mouth_open_ratio(lm) >= WIDE_OPEN
            self._hard[i] = np.flatnonzero(wide | blink)
        return self._hard[i]

    def __getitem__(self, key) -> dict:
        import cv2
        import torch

        from .landmarks.draw import landmark_images
        from .tensors import to_tensor

        if isinstance(key, (tuple, list)):
            vi, seed = int(key[0]), key[1]
        else:
            vi, seed = int(key), (int(key),)
        rng = np.random.default_rng(list(seed) if isinstance(seed, (tuple, list)) else seed)
        entry = self.entry(vi)
        n = self.k + 1
        picks = rng.choice(len(entry), size=n, replace=len(entry) < n)
        if self.focus and rng.random() < self.focus:
            hard = self.hard_frames(vi)
            if len(hard):  # the target (last) is a hard frame; the shots stay as drawn, unless it is one
                t = int(hard[rng.integers(len(hard))])
                if t in picks[:-1] and len(entry) > n:
                    rest = np.setdiff1d(np.arange(len(entry)), [t])
                    picks[:-1] = rng.choice(rest, size=n - 1, replace=False)
                picks[-1] = t
        flip = self.augment and rng.random() < self.flip_p
        S = self.size
        frames, lms = [], []
        for t in picks:
            img = entry.frame(int(t))
            lm = entry.landmarks[int(t)].astype(np.float64)
            if img.shape[0] != S:
                r = S / img.shape[0]
                img = cv2.resize(img, (S, S), interpolation=cv2.INTER_AREA if r < 1 else cv2.INTER_LINEAR)
                lm = (lm + 0.5) * r - 0.5  # pixel centres at integers
            if self.augment:
                M = _augment_matrix(rng, S, self.scale, self.shift)
                img = cv2.warpAffine(img, M, (S, S), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
                lm = lm @ M[:, :2].T + M[:, 2]
            if flip:
                img = img[:, ::-1]
                lm = flip_landmarks(lm, S)
            frames.append(np.ascontiguousarray(img))
            lms.append(lm.astype(np.float32))
        x = to_tensor(np.stack(frames))
        y = landmark_images(np.stack(lms), S)
        if y.dtype == torch.uint8:
            y = y.float().div_(127.5).sub_(1.0)
        return {"frames": x, "landmarks": y.float(), "points": torch.from_numpy(np.stack(lms)),
                "video_index": torch.tensor(vi, dtype=torch.long)}
