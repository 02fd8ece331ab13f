"""Landmark detectors on real faces: geometry, conventions, several faces, no face, backend errors."""
from __future__ import annotations

import numpy as np
import pytest

from talkinghead.errors import InputError, NoFaceError, WeightsError
from talkinghead.landmarks import detectors as D
from talkinghead.landmarks import detect_landmarks, get_detector


@pytest.fixture(scope="module")
def dlib_det():
    return get_detector("dlib").load()


def assert_face_geometry(lm: np.ndarray, box=None):
    """68 iBUG points that look like an upright face."""
    assert lm.shape == (68, 2) and lm.dtype == np.float32 and np.isfinite(lm).all()
    if box is not None:
        x0, y0, x1, y1 = box
        pad = 0.35 * (x1 - x0)  # dlib's box is tight: the jaw and brows may reach a little past it
        assert (lm[:, 0] > x0 - pad).all() and (lm[:, 0] < x1 + pad).all()
        assert (lm[:, 1] > y0 - pad).all() and (lm[:, 1] < y1 + pad).all()
    eyes_y = lm[36:48, 1].mean()
    mouth_y = lm[48:68, 1].mean()
    nose_tip = lm[30]
    assert eyes_y < nose_tip[1] < mouth_y < lm[8, 1]  # eyes, nose, mouth, chin from top to bottom
    assert lm[17:27, 1].mean() < eyes_y  # brows above the eyes
    assert lm[36:42, 0].mean() < nose_tip[0] < lm[42:48, 0].mean()  # nose between the eyes (image terms)
    assert lm[0, 0] < lm[8, 0] < lm[16, 0]  # jaw runs left to right through the chin
    assert lm[48, 0] < lm[54, 0]  # mouth corners


def test_dlib_astronaut(dlib_det, astronaut):
    faces = dlib_det.detect(astronaut)
    assert len(faces) == 1
    assert_face_geometry(faces[0].landmarks, faces[0].box)
    # the face is in the upper middle of the photo
    cx, cy = faces[0].center
    assert 150 < cx < 300 and 60 < cy < 200


def _interocular(lm):
    return float(np.linalg.norm(lm[36:42].mean(0) - lm[42:48].mean(0)))


def test_dlib_large_frames_search_a_shrunk_copy_first(dlib_det, astronaut):
    """A frame over DETECT_MAX_SIDE is searched at that size (a 1080p frame costs a quarter), and the
    landmarks, predicted at full size in the scaled-up box, are those of a full-size search."""
    import cv2

    big = cv2.resize(astronaut, (2048, 2048), interpolation=cv2.INTER_CUBIC)
    assert max(big.shape) > D.DETECT_MAX_SIDE
    shrunk = dlib_det.detect(big)
    full = [dlib_det._predictor(big, r) for r, _ in dlib_det.boxes(big, max_side=None)]
    assert len(shrunk) == 1 and len(full) == 1
    lm_full = np.array([[p.x, p.y] for p in full[0].parts()], np.float32)
    err = np.linalg.norm(shrunk[0].landmarks - lm_full, axis=1).mean() / _interocular(lm_full)
    assert err < 0.05, err
    assert_face_geometry(shrunk[0].landmarks, shrunk[0].box)


def test_dlib_face_too_small_for_the_shrunk_copy_is_found_at_full_size(dlib_det, astronaut):
    import cv2

    canvas = np.full((2400, 2400, 3), 120, np.uint8)
    small = cv2.resize(astronaut, (360, 360), interpolation=cv2.INTER_AREA)  # a face of about 100 px
    canvas[1000:1360, 1000:1360] = small
    side = D.DETECT_MAX_SIDE
    rects, scores = dlib_det._hog.run(cv2.resize(canvas, (side, side), interpolation=cv2.INTER_AREA), 0, 0.0)[:2]
    assert not [s for s in scores if s >= dlib_det.min_score]  # the shrunk copy alone misses it
    faces = dlib_det.detect(canvas)
    assert len(faces) == 1
    cx, cy = faces[0].center
    assert 1000 < cx < 1360 and 1000 < cy < 1360


def test_dlib_face_too_small_for_one_search_of_a_large_image_is_found_upsampled(dlib_det, astronaut):
    """In a photo over 1000 px, a face HOG misses at 1x (a painting's turned face scored -0.02) is looked
    for once more, upsampled, on a copy shrunk to DETECT_MAX_SIDE, before any other backend is tried."""
    import cv2

    canvas = np.full((1200, 1200, 3), 120, np.uint8)
    canvas[500:716, 500:716] = cv2.resize(astronaut, (216, 216), interpolation=cv2.INTER_AREA)  # a ~60 px face
    assert not [s for s in dlib_det._hog.run(canvas, 0, 0.0)[1] if s >= dlib_det.min_score]  # missed at 1x
    faces = dlib_det.detect(canvas)
    assert len(faces) == 1
    cx, cy = faces[0].center
    assert 500 < cx < 716 and 500 < cy < 716
    assert_face_geometry(faces[0].landmarks, faces[0].box)


def test_dlib_grace_hopper(dlib_det, grace_hopper):
    faces = dlib_det.detect(grace_hopper)
    assert len(faces) == 1
    assert_face_geometry(faces[0].landmarks, faces[0].box)


def test_detect_landmarks_from_path_and_grayscale(tmp_path, grace_hopper_path, grace_hopper, dlib_det):
    lm = detect_landmarks(grace_hopper_path, backend=dlib_det)
    from PIL import Image

    Image.open(grace_hopper_path).convert("L").save(tmp_path / "gray.png")
    lm_gray = detect_landmarks(tmp_path / "gray.png", backend=dlib_det)
    assert_face_geometry(lm_gray)
    iod = np.linalg.norm(lm[36:42].mean(0) - lm[42:48].mean(0))
    assert np.abs(lm - lm_gray).mean() < 0.1 * iod


def test_no_face(dlib_det, tmp_path):
    from skimage import data

    from talkinghead.io import write_image

    assert dlib_det.detect(np.full((200, 200, 3), 128, np.uint8)) == []
    write_image(tmp_path / "coffee.png", data.coffee())
    with pytest.raises(NoFaceError, match="coffee.png"):
        detect_landmarks(tmp_path / "coffee.png", backend=dlib_det)


def test_several_faces(dlib_det, astronaut, grace_hopper):
    import cv2

    gh = cv2.resize(grace_hopper, (192, 225))  # a smaller face on the right
    canvas = np.zeros((512, 512 + 256, 3), np.uint8)
    canvas[:, :512] = astronaut
    canvas[:225, 512:512 + 192] = gh
    faces = dlib_det.detect(canvas)
    assert len(faces) == 2
    assert faces[0].area > faces[1].area  # largest first
    assert faces[0].center[0] < 512 < faces[1].center[0]
    lm1 = detect_landmarks(canvas, backend=dlib_det, face_index=1)
    assert (lm1[:, 0] > 512).all()
    with pytest.raises(InputError, match="shows 2 face"):
        detect_landmarks(canvas, backend=dlib_det, face_index=2)


def test_bad_arguments(dlib_det):
    with pytest.raises(InputError, match="Unknown landmark backend"):
        get_detector("haar")
    with pytest.raises(ValueError, match="uint8"):
        dlib_det.detect(np.zeros((10, 10, 3), np.float32))


# ----------------------------------------------------------------------------- face-alignment
@pytest.fixture
def empty_hub(tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    return tmp_path / "hub" / "checkpoints"


def test_auto_picks_dlib_without_face_alignment_weights(empty_hub):
    assert get_detector("auto").name == "dlib"
    empty_hub.mkdir(parents=True)
    for f in (D.FA_DETECTOR_FILE, D.FA_LANDMARK_FILE):
        (empty_hub / f).write_bytes(b"x")
    assert get_detector("auto").name == "face-alignment"  # nothing is loaded until detect()


@pytest.mark.parametrize("value", ["1", "on", "true", "yes", "ON"])
def test_face_alignment_offline_error(empty_hub, monkeypatch, astronaut, value):
    import torch.hub

    monkeypatch.setenv("TALKINGHEAD_OFFLINE", value)
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *a, **k: pytest.fail("downloaded offline"))
    with pytest.raises(WeightsError) as err:
        get_detector("face-alignment").detect(astronaut)
    msg = str(err.value)
    assert D.FA_DETECTOR_FILE in msg and D.FA_LANDMARK_FILE in msg and str(empty_hub) in msg
    assert "\n" not in msg


def test_face_alignment_failed_download_error(empty_hub, monkeypatch, astronaut):
    import torch.hub
    import urllib.error

    monkeypatch.delenv("TALKINGHEAD_OFFLINE", raising=False)

    def no_network(url, dst, *a, **k):
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    with pytest.raises(WeightsError, match="download failed.*s3fd-619a316812.pth"):
        get_detector("face-alignment").detect(astronaut)
    assert not any(empty_hub.glob("*"))  # no partial files


def test_face_alignment_postprocessing_keeps_ibug_order(dlib_det, astronaut):
    """face-alignment's raw output (list of (68, 2|3) arrays + [x0,y0,x1,y1,score] boxes) -> Faces."""
    ref = dlib_det.detect(astronaut)[0]
    lm3 = np.concatenate([ref.landmarks, np.ones((68, 1), np.float32)], 1)
    faces = D._faces_from_face_alignment([lm3.astype(np.float64)], [np.array([*ref.box, 0.99])])
    assert len(faces) == 1 and faces[0].landmarks.dtype == np.float32
    np.testing.assert_array_equal(faces[0].landmarks, ref.landmarks)
    assert faces[0].box == ref.box and faces[0].score == pytest.approx(0.99)
    assert D._faces_from_face_alignment(None, None) == []

    class FakeFA:  # the object the backend wraps, answering like face-alignment 1.5
        def get_landmarks_from_image(self, image, return_bboxes=False):
            return [lm3], None, [np.array([*ref.box, 0.9])]

    det = D.FaceAlignmentDetector()
    det._fa, det._loaded = FakeFA(), True
    out = det.detect(astronaut)
    np.testing.assert_array_equal(out[0].landmarks, ref.landmarks)
    assert_face_geometry(out[0].landmarks)


# --------------------------------------------------------------------------------- mediapipe
def test_mediapipe_table_is_valid():
    idx = np.asarray(D.MEDIAPIPE_TO_IBUG68)
    assert idx.shape == (68,) and idx.min() >= 0 and idx.max() < 468 and len(set(idx.tolist())) == 68


def test_mediapipe_agrees_with_dlib(dlib_det, astronaut, grace_hopper):
    pytest.importorskip("mediapipe")
    det = get_detector("mediapipe")
    for img in (astronaut, grace_hopper):
        ref = dlib_det.detect(img)[0].landmarks
        faces = det.detect(img)
        assert len(faces) == 1
        lm = faces[0].landmarks
        assert_face_geometry(lm)
        iod = np.linalg.norm(ref[36:42].mean(0) - ref[42:48].mean(0))
        err = np.linalg.norm(lm - ref, axis=1) / iod
        assert err.mean() < 0.1 and err[17:].mean() < 0.08  # same convention, point by point
    det.close()
