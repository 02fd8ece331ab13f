"""Following a face between detections: dlib's 68-point predictor in a box made from the last points.

HOG detection is most of the cost of a landmark track (25-30 ms a 512-px frame on one core, against
2 ms for the predictor). Between two detections, the predictor can run in a box made from the
previous frame's points. The predictor was trained on the detector's boxes, so that box keeps the
offset and size, relative to the points, that the last detected box had.

Measured on the five eval driving clips (``../shared/data/eval/driving``, 512 px), with a detection
every 25 frames and the detector's check of the followed region in every frame: 5.1-5.7 ms a frame
against 25.9-35.7 ms for detecting every frame. The points differed from the detected ones by
0.9-1.8% of the eye distance (mean), against a frame-to-frame jitter of 0.8-2.7% for either method.
A facecheck spot test still found a lower eye-opening correlation (Mona Lisa driven by d10: 0.86
against 0.93), so ``animate`` detects in every frame unless asked (``--redetect-every N``).

:class:`BoxFollower` is the mechanism. ``track_faces(..., follow_every=N)`` (``animate --redetect-every N``) and
the live mode's :class:`talkinghead.live.FaceFollower` each add their own rule for choosing the face.
"""
from __future__ import annotations

import numpy as np

from .detectors import DlibDetector, Face

__all__ = ["BoxFollower", "CHECK_EVERY", "MAX_JUMP", "REDETECT_EVERY"]

REDETECT_EVERY = 25  # frames between two detector runs while a face is followed (animate and live)
# the detector's check of a followed face: the region around the expected box, CHECK_MARGIN times its
# side, searched on a copy CHECK_SIDE px wide (the box is then ~110 px, above HOG's 80-px window)
CHECK_MARGIN = 1.5
CHECK_SIDE = 160
CHECK_EVERY = 5  # live mode checks a followed face this often (animate: every frame); lost within 0.2 s
MAX_JUMP = 0.35  # a followed face whose points moved more than this many face widths is detected again


def _jumped(new: np.ndarray, old: np.ndarray) -> bool:
    """Whether the points' centre moved more than :data:`MAX_JUMP` face widths."""
    return bool(np.linalg.norm(new.mean(0) - old.mean(0)) > MAX_JUMP * max(1.0, float(np.ptp(old[:, 0]))))


class BoxFollower:
    """``remember(face)`` after each detection, then ``follow(frame, landmarks)`` gives the points in
    the next frame: ``float32 (68, 2)`` frame pixels, or None where they jumped by more than
    :data:`MAX_JUMP` face widths (the face was lost, or another one was taken: detect again)."""

    def __init__(self, detector: DlibDetector):
        self.detector = detector.load()
        self._relation = (0.0, 0.0, 1.0)

    @staticmethod
    def _square(lm: np.ndarray) -> tuple[float, float, float]:
        x0, y0 = lm.min(axis=0)
        x1, y1 = lm.max(axis=0)
        return float(x0 + x1) / 2, float(y0 + y1) / 2, float(max(x1 - x0, y1 - y0, 1.0))

    def remember(self, face: Face) -> None:
        """Keep how ``face``'s detector box sits on its points."""
        cx, cy, side = self._square(face.landmarks)
        x0, y0, x1, y1 = face.box
        self._relation = (((x0 + x1) / 2 - cx) / side, ((y0 + y1) / 2 - cy) / side, max(x1 - x0, y1 - y0) / side)

    def box_of(self, lm: np.ndarray) -> tuple[float, float, float, float]:
        """The detector's box for these points, as the last detection had it."""
        cx, cy, side = self._square(lm)
        dx, dy, scale = self._relation
        cx, cy, h = cx + dx * side, cy + dy * side, scale * side / 2
        return (round(cx - h), round(cy - h), round(cx + h), round(cy + h))

    def predict(self, frame: np.ndarray, box) -> np.ndarray:
        """The predictor's 68 points in ``box`` ``(x0, y0, x1, y1)``: ``float32 (68, 2)``."""
        d = self.detector
        shape = d._predictor(frame, d._dlib.rectangle(*(int(v) for v in box)))
        return np.array([[p.x, p.y] for p in shape.parts()], np.float32)

    def follow(self, frame: np.ndarray, lm: np.ndarray, check: bool = True) -> Face | None:
        """The face of the previous frame's points ``lm`` in ``frame``, or None where it is gone.

        The predictor alone always returns 68 points, face or not, so with ``check`` the detector
        searches a small copy of the region around the expected box first (:data:`CHECK_SIDE` px, about
        3 ms): the box it finds there is a detector's box, and the predictor runs in it. No face there
        (it left, turned away or was covered), or points that jumped, is None: the caller detects in the
        whole frame. Without ``check`` (live mode, on most frames) only a jump is caught."""
        import cv2

        x0, y0, x1, y1 = self.box_of(lm)
        if not check:
            new = self.predict(frame, (x0, y0, x1, y1))
            return None if _jumped(new, lm) else Face(new, tuple(float(v) for v in self.box_of(new)), 1.0)
        h, w = frame.shape[:2]
        cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, CHECK_MARGIN * max(x1 - x0, y1 - y0) / 2
        ax0, ay0 = max(0, int(cx - half)), max(0, int(cy - half))
        ax1, ay1 = min(w, int(cx + half) + 1), min(h, int(cy + half) + 1)
        if ax1 - ax0 < 8 or ay1 - ay0 < 8:
            return None
        f = CHECK_SIDE / max(ax1 - ax0, ay1 - ay0)
        region = frame[ay0:ay1, ax0:ax1]
        small = cv2.resize(region, (max(1, round((ax1 - ax0) * f)), max(1, round((ay1 - ay0) * f))),
                           interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR)
        d = self.detector
        found = [(r, sc) for r, sc in zip(*d._hog.run(np.ascontiguousarray(small), 0, 0.0)[:2]) if sc >= d.min_score]
        if not found:
            return None
        centre = np.array([cx - ax0, cy - ay0]) * f
        r, score = min(found, key=lambda rs: np.hypot((rs[0].left() + rs[0].right()) / 2 - centre[0],
                                                       (rs[0].top() + rs[0].bottom()) / 2 - centre[1]))
        box = (ax0 + r.left() / f, ay0 + r.top() / f, ax0 + r.right() / f, ay0 + r.bottom() / f)
        new = self.predict(frame, tuple(round(v) for v in box))
        if _jumped(new, lm):
            return None
        face = Face(new, tuple(float(v) for v in box), float(score))
        self.remember(face)
        return face
