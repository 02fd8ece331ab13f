"""Metrics on known cases: identical images, blur of growing strength, two people, detector misses."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from talkinghead import metrics as M
from talkinghead.errors import WeightsError


@pytest.fixture(scope="module")
def face64(astronaut):
    # the astronaut's face, 64x64
    return np.ascontiguousarray(cv2.resize(astronaut[30:230, 150:350], (64, 64), interpolation=cv2.INTER_AREA))


def _blur(img, sigma):
    return cv2.GaussianBlur(img, (0, 0), sigma)


@pytest.mark.parametrize("channel", ["rgb", "luminance"])
def test_ssim_matches_skimage(face64, channel):
    from skimage.metrics import structural_similarity

    other = _blur(face64, 1.0)
    ours = M.ssim(face64, other, channel=channel)
    kw = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255)
    if channel == "rgb":
        ref = structural_similarity(face64, other, channel_axis=-1, **kw)
    else:
        w = np.array([0.299, 0.587, 0.114])
        ref = structural_similarity(face64.astype(np.float64) @ w, other.astype(np.float64) @ w, **kw)
    assert ours.value == pytest.approx(ref, abs=1e-6)
    assert channel in ours.backbone


def test_identical_images(face64):
    assert M.ssim(face64, face64.copy()).value == pytest.approx(1.0)
    res = M.lpips(face64, face64.copy(), net="st-lpips-vgg16")
    assert res.value == pytest.approx(0.0, abs=1e-7) and res.backbone == "st-lpips-vgg16"


def test_blur_and_shift_are_monotone(face64):
    sigmas = [0.7, 1.5, 3.0]
    blurred = np.stack([_blur(face64, s) for s in sigmas])
    ref = np.stack([face64] * len(sigmas))
    s = M.ssim(ref, blurred).per_item
    d = M.lpips(ref, blurred, net="st-lpips-vgg16").per_item
    assert all(v < 1 for v in s) and s[0] > s[1] > s[2]
    assert all(v > 0 for v in d) and d[0] < d[1] < d[2]
    shifted = np.roll(face64, 3, axis=1)
    assert M.ssim(face64, shifted).value < 1 and M.lpips(face64, shifted, net="st-lpips-vgg16").value > 0


def test_lpips_torch_input_and_auto_backbone(face64):
    x = torch.from_numpy(face64).permute(2, 0, 1)[None].float() / 127.5 - 1
    res = M.lpips(x, x.flip(-1))
    assert res.backbone in ("st-lpips-vgg16", "lpips-alex") and res.value > 0
    # numpy and torch inputs give the same value
    assert M.lpips(face64, face64[:, ::-1].copy(), net="st-lpips-vgg16").value == pytest.approx(
        M.lpips(x, x.flip(-1), net="st-lpips-vgg16").value, rel=1e-5)


def test_lpips_package_backbone_unavailable_is_clear(monkeypatch):
    monkeypatch.setattr(M, "_lpips_package_ready", lambda net: (False, "the lpips package does not import"))
    M._lpips_model_named.cache_clear()
    try:
        with pytest.raises(WeightsError, match="st-lpips-vgg16"):
            M.lpips(np.zeros((32, 32, 3), np.uint8), np.zeros((32, 32, 3), np.uint8), net="alex")
    finally:
        M._lpips_model_named.cache_clear()


def test_csim_same_person_above_different_people(astronaut, grace_hopper):
    a = cv2.resize(astronaut, (256, 256), interpolation=cv2.INTER_AREA)
    g = cv2.resize(grace_hopper, (256, 256), interpolation=cv2.INTER_AREA)
    same = M.csim(a, _blur(a, 1.0))
    diff = M.csim(a, g)
    assert same.backbone.startswith("dlib-resnet") and same.extra["no_face"] == [False]
    assert same.value > 0.95 and diff.value < same.value - 0.05


def test_csim_no_face_gives_nan_and_flag(astronaut):
    a = cv2.resize(astronaut, (256, 256), interpolation=cv2.INTER_AREA)
    flat = np.full_like(a, 128)
    res = M.csim(np.stack([flat, a]), np.stack([a, a]))
    assert np.isnan(res.per_item[0]) and res.extra["no_face_generated"] == 1
    assert res.extra["no_face"] == [True, False] and res.value == pytest.approx(res.per_item[1])


def _landmarks(seed=0, T=4):
    rng = np.random.default_rng(seed)
    lm = rng.uniform(20, 100, size=(T, 68, 2)).astype(np.float32)
    lm[:, 36] = (30, 50)
    lm[:, 45] = (90, 50)  # inter-ocular distance 60 px
    return lm


def test_akd_identical_offset_and_missing():
    real = _landmarks()
    assert M.akd(real, real.copy(), detector="dlib").value == 0.0
    res = M.akd(real + np.array([3.0, 4.0], np.float32), real, detector="dlib")  # 5 px everywhere
    assert res.value == pytest.approx(5 / 60) and res.backbone == "dlib"
    assert M.akd(real + np.array([3.0, 4.0]), real, normalize=False).value == pytest.approx(5.0)
    gen = real.copy()
    gen[1] = np.nan  # detector missed frame 1 of the generated video
    res = M.akd(gen, real)
    assert res.extra["missing_generated"] == 1 and res.extra["missing"] == 1 and res.extra["frames"] == 4
    assert np.isnan(res.per_item[1]) and res.value == 0.0
    none = M.akd(np.full((68, 2), np.nan), real[0])
    assert np.isnan(none.value) and none.extra["missing"] == 1


def test_fid_unavailable_says_why(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    ok, reason = M.fid_available()
    assert ok is False and M.FID_WEIGHTS_FILE in reason
    with pytest.raises(WeightsError, match="Inception"):
        M.fid(np.zeros((2, 32, 32, 3), np.uint8), np.zeros((2, 32, 32, 3), np.uint8))


def test_shape_errors(face64):
    with pytest.raises(ValueError):
        M.ssim(face64, face64[:32])
    with pytest.raises(ValueError):
        M.ssim(face64.astype(np.float32), face64)
    with pytest.raises(ValueError):
        M.akd(np.zeros((5, 2)), np.zeros((5, 2)))


def test_evaluate_frames_reports_every_metric_with_its_backbone(face64):
    gen = np.stack([_blur(face64, 1.0)] * 2)
    real = np.stack([face64] * 2)
    lm = _landmarks(T=2)
    res = M.evaluate_frames(gen, real, lm, lm, detector="dlib", lpips_net="st-lpips-vgg16", with_csim=False)
    assert set(res) == {"ssim", "lpips", "akd"}
    assert all(r.backbone for r in res.values()) and res["akd"].value == 0.0
    assert len(res["ssim"].per_item) == 2 and "backbone" in res["lpips"].to_dict()


# ------------------------------------------------------------------------------------ mouth region
def _synthetic_mouth(gap: float, width: float = 40.0, at=(60.0, 80.0)) -> np.ndarray:
    """68 points with only the mouth placed: corners 48/54 ``width`` apart, inner lips ``gap`` apart."""
    lm = np.full((68, 2), 10.0)
    cx, cy = at
    lm[48], lm[54] = (cx - width / 2, cy), (cx + width / 2, cy)
    for k, (up, lo) in enumerate(((61, 67), (62, 66), (63, 65))):
        x = cx + (k - 1) * width / 4
        lm[up], lm[lo] = (x, cy - gap / 2), (x, cy + gap / 2)
    lm[[60, 64]] = lm[[48, 54]] * 0.9 + np.array([cx, cy]) * 0.1
    outer = np.linspace(0, 2 * np.pi, 12, endpoint=False)  # 48-59 on an ellipse around the inner lips
    lm[48:60] = np.stack([cx - width / 2 * np.cos(outer), cy + (gap / 2 + 6) * np.sin(outer)], 1)
    return lm


def test_mouth_open_against_closed_and_the_threshold():
    assert 0 < M.MOUTH_OPEN_THRESHOLD < 0.2
    closed, ajar, open_ = _synthetic_mouth(0.0), _synthetic_mouth(0.05 * 40), _synthetic_mouth(0.3 * 40)
    r = M.mouth_open_ratio(np.stack([closed, ajar, open_]))
    np.testing.assert_allclose(r, [0.0, 0.05, 0.3], atol=1e-9)
    assert M.mouth_is_open(np.stack([closed, ajar, open_])).tolist() == [False, False, True]
    # the ratio is the gap over the mouth width: the same mouth, larger or moved, is as open
    assert M.mouth_open_ratio(open_ * 3 + 7)[0] == pytest.approx(0.3)
    just = M.MOUTH_OPEN_THRESHOLD * 40
    near = np.stack([_synthetic_mouth(just * 0.9), _synthetic_mouth(just * 1.1)])
    assert M.mouth_is_open(near).tolist() == [False, True]
    nan = open_.copy()
    nan[62] = np.nan
    assert np.isnan(M.mouth_open_ratio(nan)[0]) and not M.mouth_is_open(nan)[0]


@pytest.fixture(scope="module")
def face_crops(astronaut, grace_hopper):
    """Real 128 px face crops with their landmarks: the astronaut smiles with teeth shown (open), Grace
    Hopper's lips are closed."""
    from talkinghead.landmarks import crop_from_landmarks, crop_image, get_detector, transform_landmarks

    det = get_detector("dlib").load()
    out = {}
    for name, img in (("astronaut", astronaut), ("grace_hopper", grace_hopper)):
        lm = det.detect(img)[0].landmarks
        c = crop_from_landmarks(lm, 128)
        out[name] = (crop_image(img, c), transform_landmarks(lm, c).astype(np.float64))
    return out


def test_real_faces_mouth_open_and_closed(face_crops):
    assert M.mouth_is_open(face_crops["astronaut"][1])[0]
    assert not M.mouth_is_open(face_crops["grace_hopper"][1])[0]


def test_mouth_box_is_a_padded_square_inside_the_crop_around_the_lips(face_crops):
    for crop, lm in face_crops.values():
        x0, y0, x1, y1 = M.mouth_box(lm, crop.shape)
        assert 0 <= x0 < x1 <= 128 and 0 <= y0 < y1 <= 128
        lips = lm[48:68]
        assert (lips >= (x0, y0)).all() and (lips <= (x1, y1)).all()
        width = np.linalg.norm(lm[54] - lm[48])
        assert abs((x1 - x0) - (y1 - y0)) <= 1  # square
        # padded by a quarter of the mouth width on each side (rounding out: at most 1 px more)
        assert lips[:, 0].min() - x0 >= 0.25 * width - 1e-6 and x1 - lips[:, 0].max() >= 0.25 * width - 1e-6
        assert x1 - x0 <= np.ptp(lips[:, 0]) + 0.5 * width + 2
        # on the mouth, not elsewhere on the face: below the nose tip (30), above the chin (8)
        assert y0 > lm[30, 1] - 0.5 * width and y1 < lm[8, 1] + 0.5 * width
    # a mouth at the crop's edge: the box moves inside and still holds the lips
    crop, lm = face_crops["astronaut"]
    low = lm + np.array([0.0, 128 - lm[48:68, 1].max() - 1])
    x0, y0, x1, y1 = M.mouth_box(low, 128)
    assert y1 == 128 and (low[48:68] >= (x0, y0)).all() and (low[48:68] <= (x1, y1)).all()
    assert x1 - x0 == y1 - y0
    nan = lm.copy()
    nan[50] = np.nan
    assert M.mouth_box(nan, 128) is None
    assert M.mouth_box(lm + 1000, 128) is None  # a mouth outside the crop has no box
    with pytest.raises(ValueError, match="68, 2"):
        M.mouth_box(lm[:20], 128)


def test_mouth_scores_see_a_spoilt_mouth_that_whole_frame_scores_hardly_see(face_crops):
    crop, lm = face_crops["astronaut"]
    (lx0, ly0), (lx1, ly1) = np.floor(lm[48:68].min(0)).astype(int), np.ceil(lm[48:68].max(0)).astype(int)
    grey = crop.copy()
    grey[ly0:ly1, lx0:lx1] = 128  # the lips and teeth greyed out
    blurred = crop.copy()
    blurred[ly0:ly1, lx0:lx1] = cv2.GaussianBlur(crop, (0, 0), 4)[ly0:ly1, lx0:lx1]
    forehead = crop.copy()  # as much spoilt, but far from the mouth
    fy = int(lm[19, 1]) - 2 - (ly1 - ly0)
    forehead[fy:fy + ly1 - ly0, lx0:lx1] = 128
    gen = np.stack([crop.copy(), grey, blurred, forehead])
    real = np.stack([crop] * 4)
    res = M.evaluate_frames(gen, real, lpips_net="st-lpips-vgg16", with_csim=False, mouth_landmarks=np.stack([lm] * 4))
    ml, ms = res["mouth_lpips"].per_item, res["mouth_ssim"].per_item
    wl, ws = res["lpips"].per_item, res["ssim"].per_item
    assert res["mouth_lpips"].backbone == res["lpips"].backbone == "st-lpips-vgg16"
    assert res["mouth_ssim"].backbone == res["ssim"].backbone
    assert res["mouth_lpips"].extra["mouth_open_frames"] == 4
    assert ml[0] == pytest.approx(0.0, abs=1e-6) and ms[0] == pytest.approx(1.0)
    for k in (1, 2):  # the mouth spoilt: the mouth scores drop far more than the whole frame's
        assert ws[k] > 0.93 and wl[k] < 0.07
        assert ml[k] > 0.1 and ml[k] > 3 * wl[k]
        assert 1 - ms[k] > 3 * (1 - ws[k])
    assert ml[1] > ml[2] and ms[1] < ms[2]  # grey is worse than blur
    # the forehead spoilt as much: the whole frame sees it, the mouth box does not
    assert wl[3] > 0.01 and ws[3] < 0.99
    assert ml[3] < 0.01 and ms[3] > 0.99


def test_mouth_scores_count_only_open_mouths(face_crops):
    (a, lm_a), (g, lm_g) = face_crops["astronaut"], face_crops["grace_hopper"]
    gen = np.stack([cv2.GaussianBlur(a, (0, 0), 2), cv2.GaussianBlur(g, (0, 0), 2)])
    res = M.mouth_region_metrics(gen, np.stack([a, g]), np.stack([lm_a, lm_g]), lpips_net="st-lpips-vgg16")
    ml, ms = res["mouth_lpips"], res["mouth_ssim"]
    assert ml.extra["mouth_open_frames"] == 1 and ml.extra["mouth_open"] == [True, False]
    assert ml.per_item[0] > 0 and np.isnan(ml.per_item[1]) and ml.value == pytest.approx(ml.per_item[0])
    assert 0 < ms.per_item[0] < 1 and np.isnan(ms.per_item[1])
    # no open mouth at all: NaN values, the backbone still named, no frame counted
    none = M.mouth_region_metrics(gen[1:], np.stack([g]), lm_g, lpips_net="st-lpips-vgg16")
    assert np.isnan(none["mouth_lpips"].value) and np.isnan(none["mouth_ssim"].value)
    assert none["mouth_lpips"].backbone == "st-lpips-vgg16" and none["mouth_lpips"].extra["mouth_open_frames"] == 0
    with pytest.raises(ValueError, match="landmark"):
        M.mouth_region_metrics(gen, np.stack([a, g]), lm_a)
