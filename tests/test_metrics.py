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
