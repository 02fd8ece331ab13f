"""Live mode: animate an avatar frame by frame as camera frames arrive (``talkinghead live``).

Three threads overlap the work: a capture thread reads the camera (or a video file standing in for
one, paced at its own frame rate), the calling thread finds the landmarks, transfers the motion and
renders the face, and an output thread watermarks each frame and writes it to the file and the
virtual camera. When rendering is slower than the camera, the capture thread keeps only the newest
frame: the frames it replaced are *dropped*, counted and named in :class:`LiveSummary`, and the file
holds the frame before for each of them, so that it keeps the camera's timing. Latency is measured
per frame from capture to the end of output.

>>> summary = run_live(avatar, driving="clip.mp4", output="out.mp4")     # doctest: +SKIP
>>> print(summary.line())
"""
from __future__ import annotations

import os
import queue
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .errors import DependencyError, InputError
from .landmarks.follow import CHECK_EVERY, REDETECT_EVERY  # how often a followed face is checked, detected

__all__ = ["FaceFollower", "LiveAnimator", "LiveSummary", "run_live", "check_outputs", "open_camera",
           "display_available", "open_virtual_camera"]

DETECT_WIDTH = 480  # frames are shrunk to this longer side for the face detector (the predictor runs at full size)
# libx264 preset of the live file: a 1080p frame in ~8 ms on 2 cores against ~16 for "veryfast"
# (benchmarks/realtime.py), for a file about twice as large; a camera cannot wait for a smaller one
LIVE_PRESET = "ultrafast"


class FaceFollower:
    """The 68 landmarks of one face in a stream of frames, at a few ms per frame.

    dlib's HOG detector runs on the frame shrunk to :data:`DETECT_WIDTH` pixels (its longer side), only
    when no face is followed and every :data:`REDETECT_EVERY` frames, and takes the largest face; in
    between, dlib's 68-point predictor follows it at full resolution
    (:class:`talkinghead.landmarks.follow.BoxFollower`), and every :data:`CHECK_EVERY` frames the
    detector checks the region around it, so a face that left is let go within 0.2 s. ``__call__(frame)`` returns float32
    ``(68, 2)`` frame pixels, or None where no face is found.
    """

    def __init__(self, detect_width: int = DETECT_WIDTH, redetect_every: int = REDETECT_EVERY):
        from .landmarks import get_detector
        from .landmarks.follow import BoxFollower

        self._follower = BoxFollower(get_detector("dlib"))
        self.detect_width = int(detect_width)
        self.redetect_every = int(redetect_every)
        self._prev: np.ndarray | None = None
        self._since = 0
        self.detections = 0  # detector runs (the rest of the frames cost the predictor alone)

    def reset(self) -> None:
        self._prev, self._since = None, 0

    def _detect(self, frame: np.ndarray) -> np.ndarray | None:
        from .landmarks import Face

        self.detections += 1
        self._since = 0
        found = self._follower.detector.boxes(frame, max_side=self.detect_width)  # shrunk first, full size if none
        if not found:
            return None
        r = max(found, key=lambda rs: rs[0].area())[0]
        box = (r.left(), r.top(), r.right(), r.bottom())
        lm = self._follower.predict(frame, box)
        self._follower.remember(Face(lm, tuple(float(v) for v in box)))
        return lm

    def __call__(self, frame: np.ndarray) -> np.ndarray | None:
        frame = np.ascontiguousarray(frame)
        lm = None
        if self._prev is not None and self._since < self.redetect_every:
            face = self._follower.follow(frame, self._prev, check=self._since % CHECK_EVERY == 0)
            lm = None if face is None else face.landmarks
        if lm is None:  # nothing followed, time to look again, or the face was lost
            lm = self._detect(frame)
        self._prev = lm
        self._since += lm is not None
        return lm


class LiveAnimator:
    """One driving frame in, one animated frame out: landmarks (:class:`FaceFollower`), causal
    One-Euro smoothing, relative motion from the first frame with a face, and the face rendered by a
    :class:`talkinghead.fullres.FaceRenderer` (pasted back, or the crop with ``crop_only``). Before the
    first face, the source itself is shown; a frame without a face holds the last pose (both counted
    in ``no_face``)."""

    def __init__(self, avatar, fps: float = 25.0, face_size: int | str | None = None, crop_only: bool = False,
                 smooth: bool = True, follower: FaceFollower | None = None):
        from .fullres import FaceRenderer
        from .landmarks import OneEuroFilter, transform_landmarks

        self.avatar = avatar
        self.renderer = FaceRenderer(avatar, face_size)
        self.follower = follower or FaceFollower()
        self.crop_only = bool(crop_only)
        self._filter = OneEuroFilter(fps, min_cutoff=1.0, beta=20.0, d_cutoff=3.0) if smooth else None
        self._scale = 1.0
        self._reference: np.ndarray | None = None
        self._last = transform_landmarks(avatar.source.landmarks, avatar.source.crop)  # the source's own pose
        self.no_face = 0

    def driven_landmarks(self, frame: np.ndarray) -> np.ndarray:
        """The source's landmarks (net crop pixels) following ``frame``'s face."""
        from .landmarks import transform_landmarks
        from .motion import transfer_motion

        lm = self.follower(frame)
        if lm is None:
            self.no_face += 1
            return self._last
        if self._reference is None:
            self._scale = float(np.linalg.norm(lm[36:42].mean(0) - lm[42:48].mean(0))) or 1.0
        if self._filter is not None:
            lm = (self._filter(lm / self._scale) * self._scale).astype(np.float32)
        if self._reference is None:
            self._reference = lm
        moved = transfer_motion(self.avatar.source.landmarks, np.stack([self._reference, lm]), mode="relative",
                                reference=0)[1]
        self._last = transform_landmarks(moved, self.avatar.source.crop)
        return self._last

    def warm_up(self) -> None:
        """Render the source's own pose once: the first call pays for oneDNN's kernel choice and the
        buffers (several frames' time), and a camera does not wait for it."""
        if self.crop_only:
            self.renderer.render(self._last[None], with_masks=False)
        else:
            self.renderer.frames(self._last[None])

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        lm = self.driven_landmarks(frame)[None]
        if self.crop_only:
            return self.renderer.render(lm, with_masks=False)[0][0]
        return self.renderer.frames(lm)[0]


@dataclass
class LiveSummary:
    """What a live session did: frames captured, animated and dropped (the indices of the dropped
    ones), frames without a face, latency per animated frame (capture to output, ms) and time."""

    captured: int = 0
    animated: int = 0
    dropped: list[int] = field(default_factory=list)
    no_face: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    seconds: float = 0.0
    input_fps: float = 0.0
    output: str | None = None
    frames_written: int = 0

    def latency(self, q: float) -> float | None:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else None

    def as_dict(self) -> dict:
        return {"captured": self.captured, "animated": self.animated, "dropped": len(self.dropped),
                "dropped_frames": self.dropped[:1000], "no_face": self.no_face,
                "latency_p50_ms": _round(self.latency(50)), "latency_p95_ms": _round(self.latency(95)),
                "seconds": round(self.seconds, 3), "input_fps": self.input_fps,
                "animated_fps": round(self.animated / self.seconds, 2) if self.seconds else None,
                "output": self.output, "frames_written": self.frames_written}

    def line(self) -> str:
        text = (f"{self.animated} of {self.captured} frames animated in {self.seconds:.1f} s "
                f"({self.animated / max(self.seconds, 1e-9):.1f} frames/s)")
        if self.latencies_ms:
            text += f", latency p50 {self.latency(50):.0f} ms, p95 {self.latency(95):.0f} ms"
        if self.dropped:
            text += (f"; {len(self.dropped)} frames dropped because animation could not keep up with the "
                     f"{self.input_fps:g} fps input (the file holds the frame before for each, to keep its timing)")
        else:
            text += "; no frame dropped"
        if self.no_face:
            text += f"; {self.no_face} frames without a face held the last pose"
        return text


def _round(x):
    return None if x is None else round(x, 2)


def display_available() -> bool:
    """Whether a preview window can be shown: a desktop session (X11 or Wayland on Linux; always on
    macOS and Windows)."""
    if sys.platform.startswith(("darwin", "win")):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def open_virtual_camera(width: int, height: int, fps: float):
    """A ``pyvirtualcam.Camera``; :class:`DependencyError` without the package, :class:`InputError`
    where it finds no virtual camera device."""
    try:
        import pyvirtualcam
    except ImportError:
        raise DependencyError("The virtual camera needs the pyvirtualcam package, which is not installed: run "
                              "`pip install 'talkinghead[live]'` (or pip install pyvirtualcam).") from None
    try:
        return pyvirtualcam.Camera(width=width, height=height, fps=fps)
    except Exception as exc:  # RuntimeError: no v4l2loopback device, no OBS camera
        first = (str(exc).splitlines() or [""])[0]
        raise InputError(f"pyvirtualcam found no virtual camera device ({first}): on Linux load v4l2loopback "
                         "(sudo modprobe v4l2loopback), elsewhere install OBS's virtual camera, or pass "
                         "--virtual-camera off.") from None


def check_outputs(output, preview: str = "auto", virtual_camera: str = "auto",
                  on_frame: Callable[[np.ndarray], None] | None = None) -> tuple[bool, bool]:
    """``(show a preview window, want a virtual camera)`` for :func:`run_live`'s options: an
    :class:`InputError` for ``preview="on"`` without a display, or where the animation would go nowhere.
    Cheap, so a command runs it before the model loads."""
    from .checks import check_choice

    check_choice("preview", preview, ("auto", "on", "off"))
    check_choice("virtual_camera", virtual_camera, ("auto", "on", "off"))
    if preview == "on" and not display_available():
        raise InputError("--preview on needs a display (DISPLAY or WAYLAND_DISPLAY is not set): use --preview off "
                         "and -o OUT.mp4.")
    show = preview == "on" or (preview == "auto" and display_available())
    vcam_wanted = virtual_camera == "on" or (virtual_camera == "auto" and _pyvirtualcam_installed())
    if output is None and not show and not vcam_wanted and on_frame is None:
        raise InputError("Live mode has nowhere to show the animation here (no display, no virtual camera): pass "
                         "-o OUT.mp4 to write it to a file.")
    return show, vcam_wanted


def open_camera(index: int):
    """An opened ``cv2.VideoCapture`` of camera ``index``, or an :class:`InputError` (OpenCV's own log
    lines about a missing device are silenced: the error is the one line)."""
    import cv2

    log = getattr(getattr(cv2, "utils", None), "logging", None)  # absent from some OpenCV builds
    level = log.getLogLevel() if log is not None else None
    if log is not None:
        log.setLogLevel(log.LOG_LEVEL_SILENT)
    try:
        cap = cv2.VideoCapture(int(index))
    finally:
        if log is not None:
            log.setLogLevel(level)
    if not cap.isOpened():
        cap.release()
        raise InputError(f"Camera {index} cannot be opened: check that it is connected and not used by another "
                         "program, try another --camera index, or pass --driving VIDEO.")
    return cap


class _Slot:
    """The capture thread's hand-over: the newest frame only (``realtime``), or a short queue that
    makes the reader wait (every frame is animated)."""

    def __init__(self, realtime: bool, stop: threading.Event):
        self.realtime = realtime
        self.stop = stop
        self._cond = threading.Condition()
        self._item = None
        self._queue: queue.Queue = queue.Queue(maxsize=4)
        self.dropped: list[int] = []
        self.count = 0  # frames captured
        self.last_index = -1  # the output slot of the last frame captured (see _capture)
        self.done = False
        self.error: BaseException | None = None

    def put(self, item) -> None:
        self.count += item is not None
        if not self.realtime:
            while not self.stop.is_set():  # the reader waits, unless the session is over
                try:
                    self._queue.put(item, timeout=0.1)
                    return
                except queue.Full:
                    pass
            return
        with self._cond:
            if self._item is not None:
                self.dropped.append(self._item[0])
            self._item = item
            self._cond.notify()

    def close(self, error: BaseException | None = None) -> None:
        self.error = error
        if not self.realtime:
            self.put(None)
            return
        with self._cond:
            self.done = True
            self._cond.notify()

    def get(self):
        """The next item; None when capture has ended, or when the session was stopped (an error in the
        output thread) with nothing left to hand over: put() gives up then, end marker included."""
        if not self.realtime:
            while True:
                try:
                    return self._queue.get(timeout=0.1)
                except queue.Empty:
                    if self.stop.is_set():
                        return None
        with self._cond:
            while self._item is None and not self.done:
                self._cond.wait()
            item, self._item = self._item, None
            return item


def _capture(slot: _Slot, frames, fps: float, pace: bool, stop: threading.Event, max_frames: int | None,
             clock: bool = False) -> None:
    """Hands each frame to ``slot`` as ``(index, capture time, frame)``. ``index`` is the frame's slot
    in the output file: its number in a file, and with ``clock`` (a camera) the time it arrived at,
    times ``fps``, so a camera delivering fewer frames than it reports (dim light) leaves slots that
    the writer fills with the frame before, and the file keeps real time."""
    try:
        start = time.perf_counter()
        index = -1
        for n, frame in enumerate(frames):
            if stop.is_set() or (max_frames is not None and n >= max_frames):
                break
            if pace:  # a file standing in for a camera: frame n arrives at n / fps
                delay = start + n / fps - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            now = time.perf_counter()
            if clock:
                if n == 0:
                    start = now
                index = max(index + 1, int(round((now - start) * fps)))
            else:
                index = n
            slot.last_index = index
            slot.put((index, now, frame))
        slot.close()
    except BaseException as exc:  # reported by the calling thread
        slot.close(exc)


def _camera_frames(cap):
    while True:
        ok, bgr = cap.read()
        if not ok:
            return
        yield bgr[:, :, ::-1]


class _LiveRecord:
    """What :func:`talkinghead.credentials.provenance_of` reads of an animation, for a live session."""

    def __init__(self, avatar, driving: str | None, audio_from: str | None):
        self.avatar = avatar
        self.model_name = avatar.model_name
        self.info = {"driving": driving, "motion": "relative (live)"}
        self.audio_from = audio_from
        self.inputs = [p for p in dict.fromkeys([driving, audio_from, *avatar.info.get("photos", [])]) if p and os.path.isfile(p)]


def run_live(avatar, camera: int | None = None, driving: str | os.PathLike | None = None,
             output: str | os.PathLike | None = None, preview: str = "auto", virtual_camera: str = "auto",
             realtime: bool = True, max_frames: int | None = None, face_size: int | str | None = None,
             crop_only: bool = False, watermark: bool = True, label: str | None = None, credentials: bool = True,
             signing_key: Any = None, progress: bool = True, on_frame: Callable[[np.ndarray], None] | None = None
             ) -> LiveSummary:
    """Animate ``avatar`` live from ``camera`` (an OpenCV camera index) or ``driving`` (a video file
    standing in for a camera: paced at its frame rate with ``realtime``, else every frame animated).

    Outputs: ``output`` (a video file, watermarked, tagged and signed like :func:`talkinghead.write_video`,
    the driving file's audio muxed in), a preview window (``preview``: ``auto`` where a display exists,
    ``on``, ``off``; ``q`` or Esc in it stops), a virtual camera (``virtual_camera``: ``auto`` where
    pyvirtualcam is installed and finds a device, ``on``, ``off``) and ``on_frame(frame)``. A camera
    session runs until ``max_frames``, the preview's ``q``, or Ctrl-C, which ends it cleanly (the file is kept).
    """
    import cv2

    from .checks import check_max_frames
    from .watermark import Watermarker, mark_frame, provenance_metadata

    max_frames = check_max_frames(max_frames)
    if (camera is None) == (driving is None):
        raise InputError("Give either a camera index or a driving video for live mode (not both, not neither).")
    show, vcam_wanted = check_outputs(output, preview, virtual_camera, on_frame)
    reader = cap = None
    audio = None
    if driving is not None:
        from .io import VideoReader

        reader = VideoReader(driving)
        fps, frames, what = reader.fps, reader, str(driving)
        audio = str(driving) if reader.has_audio else None
    else:
        cap = open_camera(camera)
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0) or 30.0
        frames, what = _camera_frames(cap), f"camera {camera}"
        realtime = True  # a camera does not wait
    from .checks import check_fps

    fps = check_fps(fps)
    record = _LiveRecord(avatar, str(driving) if driving is not None else None, audio)
    writer = None
    marker = Watermarker.for_model(avatar.model_name, label=label) if watermark else None
    if output is not None:
        from .io import VideoWriter, refuse_overwriting

        refuse_overwriting(output, record.inputs)
        writer = VideoWriter(output, fps, audio_from=audio, preset=LIVE_PRESET,
                             metadata=provenance_metadata(avatar.model_name, watermarked=watermark))
        if credentials:
            from .credentials import credentials_finalizer, provenance_of

            writer.finalize = credentials_finalizer(output, provenance_of(record, avatar.model_name,
                                                                          marker and marker.payload), signing_key)
    animator = LiveAnimator(avatar, fps=fps, face_size=face_size, crop_only=crop_only)
    summary = LiveSummary(input_fps=fps, output=str(output) if output is not None else None)
    stop = threading.Event()
    slot = _Slot(realtime, stop)
    out_queue: queue.Queue = queue.Queue(maxsize=4)
    state = {"vcam": None, "error": None, "last": None, "written_index": -1}

    def emit():  # the output thread: watermark, file (holding dropped slots), virtual camera
        try:
            while True:
                item = out_queue.get()
                if item is None:
                    return
                i, t_capture, frame = item
                frame = mark_frame(frame, marker, label)
                if writer is not None:
                    for _ in range(i - state["written_index"] - 1):  # slots whose frames were dropped
                        writer.write(state["last"] if state["last"] is not None else frame)
                    writer.write(frame)
                    state["written_index"] = i
                state["last"] = frame
                if vcam_wanted:
                    if state["vcam"] is None:
                        try:
                            state["vcam"] = open_virtual_camera(frame.shape[1], frame.shape[0], fps)
                        except (DependencyError, InputError) as exc:
                            if virtual_camera == "on":
                                raise
                            warnings.warn(f"no virtual camera: {exc}")
                            state["vcam"] = False
                    if state["vcam"]:
                        state["vcam"].send(frame)
                if on_frame is not None:
                    on_frame(frame)
                summary.latencies_ms.append(1000 * (time.perf_counter() - t_capture))
        except BaseException as exc:
            state["error"] = exc
            stop.set()
            while out_queue.get() is not None:  # unblock the producer
                pass

    from tqdm import tqdm

    capture = threading.Thread(target=_capture, args=(slot, frames, fps, driving is not None and realtime, stop,
                                                      max_frames, cap is not None), daemon=True)
    output_thread = threading.Thread(target=emit, daemon=True)
    bar = tqdm(desc=f"live from {Path(what).name if driving is not None else what}", unit="frame",
               total=(min(len(reader), max_frames) if max_frames else len(reader)) if reader is not None else max_frames,
               disable=not progress)
    window = "talkinghead live (q to stop)"
    interrupted = reraise = False
    animator.warm_up()  # before the first frame is captured, so that it is not counted against the stream
    t0 = time.perf_counter()
    capture.start()
    output_thread.start()
    try:
        while not stop.is_set():
            item = slot.get()
            if item is None:
                break
            i, t_capture, frame = item
            out = animator(frame)
            out_queue.put((i, t_capture, out))
            summary.animated += 1
            bar.update(1)
            if show:
                try:
                    cv2.imshow(window, np.ascontiguousarray(out[:, :, ::-1]))
                    if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
                        break
                except cv2.error as exc:  # an OpenCV built without GUI support
                    if preview == "on":
                        raise InputError(f"OpenCV cannot open a preview window ({str(exc).strip().splitlines()[-1]}): "
                                         "pip install opencv-python (not -headless), or --preview off.") from None
                    warnings.warn("OpenCV cannot open a preview window here; continuing without one")
                    show = False
    except KeyboardInterrupt:
        if driving is not None:  # a file: Ctrl-C is an interruption like any other command's
            reraise = True
        interrupted = True  # a camera: Ctrl-C is how a session ends; the file is kept
    except BaseException as exc:  # raised below, after the threads, the reader and the writer are closed
        state["error"] = state["error"] or exc
    finally:
        stop.set()
        bar.close()
    out_queue.put(None)
    output_thread.join()
    capture.join(timeout=5)
    summary.seconds = time.perf_counter() - t0
    summary.dropped = list(slot.dropped)
    summary.captured = slot.count
    summary.no_face = animator.no_face
    try:
        if show:
            cv2.destroyWindow(window)
    except cv2.error:
        pass
    if reader is not None:
        reader.close()
    if cap is not None:
        cap.release()
    if state["vcam"]:
        state["vcam"].close()
    error = state["error"] or slot.error or (KeyboardInterrupt() if reraise else None)
    if writer is not None:
        if error is None and state["written_index"] >= 0:
            # dropped frames at the very end: held too, so the file is as long as the input
            for _ in range(slot.last_index - state["written_index"]):
                writer.write(state["last"])
        writer.close(error)
        summary.frames_written = writer.num_frames if error is None else 0
    if error is not None:
        raise error
    if interrupted and not reraise:
        print("stopped (Ctrl-C)", file=sys.stderr)
    return summary


def _pyvirtualcam_installed() -> bool:
    from .deps import is_installed

    return is_installed("pyvirtualcam")
