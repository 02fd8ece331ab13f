"""68-point face landmark detectors behind one interface.

Every backend returns :class:`Face` objects whose ``landmarks`` are ``float32`` ``(68, 2)`` ``(x, y)``
pixels in the iBUG 300-W order, largest face first.

| backend | weights | notes |
|---|---|---|
| ``face-alignment`` | ``s3fd-619a316812.pth`` + ``2DFAN4-11f355bf06.pth.tar`` in ``torch.hub.get_dir()/checkpoints`` (downloaded on first use unless ``TALKINGHEAD_OFFLINE=1``) | the paper's choice, most accurate, ~200 ms per face on CPU |
| ``dlib`` | ``shape_predictor_68_face_landmarks.dat`` from ``face-recognition-models`` | offline, a few ms; HOG detector (frontal-ish faces). The model was trained on iBUG 300-W, whose terms exclude commercial use |
| ``mediapipe`` | inside ``mediapipe==0.10.21`` (optional extra) | 468 FaceMesh points mapped to 68 with :data:`MEDIAPIPE_TO_IBUG68` |
| ``auto`` | | face-alignment where its two files are present, else dlib |

Nothing is loaded or downloaded at import or in constructors: models load on the first ``detect``.
"""
from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import InputError, NoFaceError, WeightsError
from ..hub import is_offline

BACKENDS = ("auto", "dlib", "face-alignment", "mediapipe")

FA_DETECTOR_FILE = "s3fd-619a316812.pth"
FA_LANDMARK_FILE = "2DFAN4-11f355bf06.pth.tar"
FA_URLS = {
    FA_DETECTOR_FILE: "https://www.adrianbulat.com/downloads/python-fan/s3fd-619a316812.pth",
    FA_LANDMARK_FILE: "https://www.adrianbulat.com/downloads/python-fan/2DFAN4-11f355bf06.pth.tar",
}
DLIB_PREDICTOR_FILE = "shape_predictor_68_face_landmarks.dat"

# MediaPipe FaceMesh (468 points) -> iBUG 68, in image terms (index 36 is the eye corner at the image's
# left). Derived for this library by nearest-vertex matching: on 493 frames of real faces (both test
# photos, every 5th of the first 150 frames of the eval driving clips and 12 training clips) where dlib
# and FaceMesh each found one face, each iBUG point takes the mesh vertex with the smallest median
# distance to dlib's point (benchmarks/landmarks.py --derive-mediapipe redoes this). Remaining error
# against dlib: 5.2% of the inter-ocular distance on average, 8.2% on the jaw (dlib's contour follows the
# visible silhouette, the mesh a fixed skin line), 4.3% elsewhere.
MEDIAPIPE_TO_IBUG68: tuple[int, ...] = (
    # jaw 0-16
    127, 234, 93, 215, 138, 136, 149, 148, 152, 377, 378, 365, 397, 435, 401, 454, 356,
    # left brow 17-21, right brow 22-26
    70, 63, 105, 66, 107, 336, 296, 334, 293, 300,
    # nose bridge 27-30, lower nose 31-35
    168, 197, 5, 4, 240, 99, 2, 326, 305,
    # left eye 36-41, right eye 42-47
    7, 160, 158, 155, 153, 144, 362, 385, 386, 249, 373, 380,
    # outer lip 48-59
    61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181,
    # inner lip 60-67
    62, 38, 13, 312, 325, 317, 14, 87,
)


@dataclass
class Face:
    """One detected face.

    Attributes:
        landmarks: ``float32`` ``(68, 2)`` ``(x, y)`` pixels, iBUG 300-W order.
        box: ``(x0, y0, x1, y1)`` pixels of the detector's box (or of the landmarks' extent).
        score: detector confidence (backend specific; higher is surer).
    """

    landmarks: np.ndarray
    box: tuple[float, float, float, float]
    score: float = 1.0

    @property
    def area(self) -> float:
        x0, y0, x1, y1 = self.box
        return max(0.0, x1 - x0) * max(0.0, y1 - y0)

    @property
    def center(self) -> np.ndarray:
        x0, y0, x1, y1 = self.box
        return np.array([(x0 + x1) / 2, (y0 + y1) / 2], np.float64)

    @property
    def width(self) -> float:
        return float(self.box[2] - self.box[0])


def _check_image(image: np.ndarray) -> np.ndarray:
    a = np.asarray(image)
    if a.ndim != 3 or a.shape[2] != 3 or a.dtype != np.uint8:
        raise ValueError(f"expected a uint8 (H, W, 3) RGB image, got {a.dtype} {a.shape}")
    return np.ascontiguousarray(a)


def _box_of(lm: np.ndarray) -> tuple[float, float, float, float]:
    x0, y0 = np.nanmin(lm, axis=0)
    x1, y1 = np.nanmax(lm, axis=0)
    return float(x0), float(y0), float(x1), float(y1)


def _sort_faces(faces: list[Face]) -> list[Face]:
    return sorted(faces, key=lambda f: -f.area)


class LandmarkDetector:
    """Base class: ``detect(image) -> list[Face]`` (largest first); models load lazily, thread-safe."""

    name = "base"

    def __init__(self, device: str = "cpu"):
        self.device = device
        self._loaded = False
        self._lock = threading.Lock()

    def load(self) -> "LandmarkDetector":
        """Load the models now (otherwise done by the first :meth:`detect`)."""
        with self._lock:
            if not self._loaded:
                self._load()
                self._loaded = True
        return self

    def _load(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def detect(self, image: np.ndarray) -> list[Face]:
        """All faces in ``image`` (``uint8`` ``(H, W, 3)`` RGB), largest first; empty list if none."""
        image = _check_image(image)
        self.load()
        return _sort_faces(self._detect(image))

    def _detect(self, image: np.ndarray) -> list[Face]:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(device={self.device!r})"


# --------------------------------------------------------------------------------------- dlib
def dlib_model_dir() -> Path:
    """The folder of ``face-recognition-models`` (found without importing it: its ``__init__``
    imports ``pkg_resources``, which recent setuptools no longer has)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError("The dlib backend needs face-recognition-models: "
                           "run pip install dlib-bin face-recognition-models.")
    return Path(list(spec.submodule_search_locations)[0]) / "models"


# frames with a longer side than this are searched for faces on a copy of this size first (DlibDetector.boxes)
DETECT_MAX_SIDE = 960
# a face found on the shrunk copy is taken only when the detector is sure of it; a doubtful one (the
# Girl with a Pearl Earring, turned, scored 0.27 there, with points 9% of the eye distance off
# MediaPipe's) is looked for at full size, as before the shrunk search
SHRUNK_MIN_SCORE = 0.5


class DlibDetector(LandmarkDetector):
    """dlib's HOG face detector + 68-point shape predictor (CPU, offline).

    ``upsample``: image upsamplings for the detector; ``None`` tries 0 and, if nothing is found, 1 (in an
    image of 1000 px or more, on a copy shrunk to ``DETECT_MAX_SIDE``; HOG finds faces down to ~80 px,
    ~40 px after one upsampling).
    ``min_score``: detections below this HOG score are dropped (real faces in the test photos and eval
    clips score 0.9 to 2.3; a false positive on a tiled test image scored 0.05).
    """

    name = "dlib"

    def __init__(self, device: str = "cpu", upsample: int | None = None, predictor_path: str | None = None,
                 min_score: float = 0.25):
        super().__init__(device)
        self.upsample = upsample
        self.min_score = float(min_score)
        self.predictor_path = predictor_path

    def _load(self) -> None:
        try:
            import dlib
        except ImportError:
            raise WeightsError("The dlib backend needs dlib: run pip install dlib-bin face-recognition-models.") from None
        path = Path(self.predictor_path) if self.predictor_path else dlib_model_dir() / DLIB_PREDICTOR_FILE
        if not path.is_file():
            raise WeightsError(f"dlib's landmark model {path} is missing: reinstall face-recognition-models "
                               "(pip install --force-reinstall face-recognition-models).")
        self._dlib = dlib
        self._hog = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(str(path))

    def boxes(self, image: np.ndarray, max_side: int | None = DETECT_MAX_SIDE) -> list[tuple]:
        """HOG's face boxes ``[(dlib.rectangle in image pixels, score)]`` scoring at least ``min_score``.

        An image whose longer side exceeds ``max_side`` is searched on a copy shrunk to it first (HOG's
        cost grows with the pixels: a 1080p frame took 8x a 512-px one). A face too small to be found
        there, or found with a score under :data:`SHRUNK_MIN_SCORE`, is looked for at full size after,
        with no upsampling, else as ``upsample`` says; in an image of 1000 px or more, a face still not
        found is looked for once more on the shrunk copy, upsampled once.
        """
        h, w = image.shape[:2]
        if self.upsample is None and max_side is not None and max(h, w) > max_side:
            found = self._search_shrunk(image, max_side, 0)
            if found and max(s for _, s in found) >= SHRUNK_MIN_SCORE:
                return found
        tries = [self.upsample] if self.upsample is not None else ([0, 1] if max(h, w) < 1000 else [0])
        for up in tries:
            found = [(r, s) for r, s in zip(*self._hog.run(image, up, 0.0)[:2]) if s >= self.min_score]
            if found:
                return found
        if self.upsample is None and max(h, w) >= 1000:
            # a large image's face that HOG scores too low at 1x (Vermeer's turned girl, 1280 px: -0.02) is
            # found once upsampled (0.30 at 960 px, x2); a shrunk copy keeps that last try's cost at 4x a
            # 960-px search, instead of the MediaPipe fallback's looser points
            return self._search_shrunk(image, max_side or DETECT_MAX_SIDE, 1)
        return []

    def _search_shrunk(self, image: np.ndarray, side: int, upsample: int) -> list[tuple]:
        """HOG's boxes scoring at least ``min_score`` on a copy of ``image`` whose longer side is ``side``,
        in ``image``'s pixels."""
        import cv2

        h, w = image.shape[:2]
        f = side / max(h, w)
        small = cv2.resize(image, (max(1, int(round(w * f))), max(1, int(round(h * f)))), interpolation=cv2.INTER_AREA)
        rect = self._dlib.rectangle
        return [(rect(int(round(r.left() / f)), int(round(r.top() / f)), int(round(r.right() / f)),
                      int(round(r.bottom() / f))), s)
                for r, s in zip(*self._hog.run(small, upsample, 0.0)[:2]) if s >= self.min_score]

    def _detect(self, image: np.ndarray) -> list[Face]:
        faces = []
        for r, s in self.boxes(image):
            shape = self._predictor(image, r)
            lm = np.array([[p.x, p.y] for p in shape.parts()], np.float32)
            faces.append(Face(lm, (float(r.left()), float(r.top()), float(r.right()), float(r.bottom())), float(s)))
        return faces


# ------------------------------------------------------------------------------- face-alignment
def face_alignment_weights_dir() -> Path:
    """``torch.hub.get_dir()/checkpoints``: where face-alignment looks for (and downloads) its files."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints"


def face_alignment_weights_present() -> bool:
    """True if both face-alignment files are already in torch hub's ``checkpoints`` folder."""
    d = face_alignment_weights_dir()
    return all((d / f).is_file() for f in (FA_DETECTOR_FILE, FA_LANDMARK_FILE))


def _fa_missing_error(d: Path, missing: Sequence[str], why: str) -> WeightsError:
    return WeightsError(
        f"face-alignment weights {' and '.join(missing)} are missing from {d} ({why}): download "
        f"{' and '.join(FA_URLS[m] for m in missing)} into {d}, or use --backend dlib.")


def _faces_from_face_alignment(landmarks: Sequence[np.ndarray] | None,
                               boxes: Sequence[np.ndarray] | None) -> list[Face]:
    """face-alignment's ``get_landmarks_from_image(..., return_bboxes=True)`` output -> Faces.

    Its points are already iBUG 68 in order; only the dtype, the z column (3D models) and the box
    (``[x0, y0, x1, y1, score]``) are converted.
    """
    if not landmarks:
        return []
    faces = []
    for i, pts in enumerate(landmarks):
        lm = np.asarray(pts, np.float32)[:, :2].reshape(68, 2)
        if boxes is not None and i < len(boxes) and boxes[i] is not None and len(boxes[i]) >= 4:
            b = np.asarray(boxes[i], np.float64)
            box = (float(b[0]), float(b[1]), float(b[2]), float(b[3]))
            score = float(b[4]) if len(b) > 4 else 1.0
        else:
            box, score = _box_of(lm), 1.0
        faces.append(Face(np.ascontiguousarray(lm), box, score))
    return faces


class FaceAlignmentDetector(LandmarkDetector):
    """face-alignment (Bulat & Tzimiropoulos 2017): S3FD detector + 2DFAN4, as used by the paper.

    Weights are looked up in ``torch.hub.get_dir()/checkpoints`` (face-alignment's own place), downloaded there on first use unless ``TALKINGHEAD_OFFLINE=1``; without them
    :class:`WeightsError` names the two files and the folder.
    """

    name = "face-alignment"

    def __init__(self, device: str = "cpu", flip_input: bool = False):
        super().__init__(device)
        self.flip_input = flip_input

    def _weights(self) -> None:
        d = face_alignment_weights_dir()
        missing = [name for name in (FA_DETECTOR_FILE, FA_LANDMARK_FILE) if not (d / name).is_file()]
        if missing and is_offline():
            raise _fa_missing_error(d, missing, "TALKINGHEAD_OFFLINE is set")
        for name in missing:
            from torch.hub import download_url_to_file

            d.mkdir(parents=True, exist_ok=True)
            try:
                # torch writes to a temp file and renames it: an interrupted download leaves no stub
                download_url_to_file(FA_URLS[name], str(d / name), progress=True)
            except Exception as exc:  # no network, proxy, HTTP error...
                raise _fa_missing_error(d, missing, f"download failed: {exc.__class__.__name__}") from None

    def _load(self) -> None:
        try:
            import face_alignment
        except ImportError:
            raise WeightsError("The face-alignment backend needs its package: run pip install face-alignment.") from None
        self._weights()  # both files are now in the folder face-alignment reads from
        d = face_alignment_weights_dir()
        self._fa = face_alignment.FaceAlignment(
            face_alignment.LandmarksType.TWO_D, device=str(self.device), flip_input=self.flip_input,
            face_detector="sfd", face_detector_kwargs={"path_to_detector": str(d / FA_DETECTOR_FILE)},
            compile=False)  # torch.compile needs a compiler and minutes on CPU

    def _detect(self, image: np.ndarray) -> list[Face]:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "No faces were detected." is not an error here
            out = self._fa.get_landmarks_from_image(image, return_bboxes=True)
        landmarks, _, boxes = out if isinstance(out, tuple) else (out, None, None)
        return _faces_from_face_alignment(landmarks, boxes)


# ---------------------------------------------------------------------------------- mediapipe
@contextlib.contextmanager
def _native_stderr_muted():
    """Send file descriptor 2 to /dev/null for the block.

    MediaPipe's C++ side (TFLite, absl) writes INFO and WARNING lines straight to descriptor 2 when a
    graph starts ("Created TensorFlow Lite XNNPACK delegate", "Feedback manager requires ..."); no
    Python logging setting reaches them, and they bury the one-line message a user needs. Python's own
    exceptions and warnings are not affected: they are raised, not written, inside the block.
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no descriptor 2 to redirect
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class MediaPipeDetector(LandmarkDetector):
    """MediaPipe FaceMesh (468 points, mapped to iBUG 68 by :data:`MEDIAPIPE_TO_IBUG68`).

    Optional: ``pip install --no-deps mediapipe==0.10.21 'protobuf<5' absl-py attrs flatbuffers``.
    Mean distance to dlib's points: 5% of the eye distance (8% on the jaw); fine for driving, coarse for AKD.
    """

    name = "mediapipe"

    def __init__(self, device: str = "cpu", max_faces: int = 4, video: bool = False,
                 min_confidence: float = 0.5):
        super().__init__(device)
        self.max_faces = max_faces
        self.video = video
        self.min_confidence = min_confidence

    def _load(self) -> None:
        try:
            import mediapipe as mp
            mesh = mp.solutions.face_mesh
        except (ImportError, AttributeError):
            raise WeightsError("The mediapipe backend needs mediapipe 0.10.21: run pip install --no-deps "
                               "mediapipe==0.10.21 'protobuf<5' absl-py attrs flatbuffers.") from None
        with _native_stderr_muted():
            self._mesh = mesh.FaceMesh(static_image_mode=not self.video, max_num_faces=self.max_faces,
                                       refine_landmarks=False, min_detection_confidence=self.min_confidence)

    def _detect(self, image: np.ndarray) -> list[Face]:
        with _native_stderr_muted():
            res = self._mesh.process(image)
        if not res.multi_face_landmarks:
            return []
        h, w = image.shape[:2]
        idx = np.asarray(MEDIAPIPE_TO_IBUG68)
        faces = []
        for fl in res.multi_face_landmarks:
            pts = np.array([[p.x * w, p.y * h] for p in fl.landmark], np.float32)
            faces.append(Face(np.ascontiguousarray(pts[idx]), _box_of(pts), 1.0))
        return faces

    def close(self) -> None:
        if getattr(self, "_mesh", None) is not None:
            self._mesh.close()


# ------------------------------------------------------------------------------------- factory
def get_detector(backend: str = "auto", device: str = "cpu", **kwargs) -> LandmarkDetector:
    """A detector by name: ``auto`` (face-alignment where its weights are present, else dlib),
    ``dlib``, ``face-alignment`` or ``mediapipe``. ``.name`` says which one was chosen. ``device``
    (``cpu``, ``cuda``, ``auto``) matters for face-alignment only."""
    backend = backend.lower().replace("_", "-")
    if backend == "facealignment" or backend == "fa":
        backend = "face-alignment"
    if backend == "auto":
        backend = "face-alignment" if face_alignment_weights_present() else "dlib"
    if backend == "dlib":
        return DlibDetector(device, **kwargs)
    if backend == "face-alignment":
        if device == "auto":  # only face-alignment runs on torch; the others ignore the device
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        return FaceAlignmentDetector(device, **kwargs)
    if backend == "mediapipe":
        return MediaPipeDetector(device, **kwargs)
    raise InputError(f"Unknown landmark backend {backend!r}: use one of {', '.join(BACKENDS)}.")


def select_face(faces: Sequence[Face], face_index: int = 0, what: str = "the image") -> Face:
    """The ``face_index``-th largest face; :class:`NoFaceError` / :class:`InputError` otherwise."""
    if not faces:
        raise NoFaceError(f"No face was found in {what}: use a photo with a clearly visible, frontal face.")
    if not 0 <= face_index < len(faces):
        raise InputError(f"Face index {face_index} is out of range for {what}, which shows {len(faces)} "
                         f"face(s): use a face index from 0 to {len(faces) - 1}.")
    return faces[face_index]


def detect_landmarks(image: np.ndarray | str | os.PathLike, backend: str | LandmarkDetector = "auto",
                     face_index: int = 0, device: str = "cpu") -> np.ndarray:
    """``float32`` ``(68, 2)`` landmarks of one face in a photo (array or path), the largest by default.

    Raises :class:`NoFaceError` naming the file if no face is found.
    """
    what = "the image"
    if isinstance(image, (str, os.PathLike)):
        from ..io import read_image

        what = str(image)
        image = read_image(image)
    det = backend if isinstance(backend, LandmarkDetector) else get_detector(backend, device)
    return select_face(det.detect(image), face_index, what).landmarks
