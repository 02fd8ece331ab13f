"""Face crops, paste-back and landmark images."""
from __future__ import annotations

import numpy as np
import pytest

from talkinghead.landmarks import (PARTS, crop_from_landmarks, crop_image, crop_track, draw_landmarks,
                                   feather_mask, get_detector, landmark_images, line_width, paste_back,
                                   transform_landmarks)


@pytest.fixture(scope="module")
def astro_lm(astronaut):
    return get_detector("dlib").detect(astronaut)[0].landmarks


def test_crop_contains_face_and_round_trips(astronaut, astro_lm):
    crop = crop_from_landmarks(astro_lm, size=128, margin=0.3)
    inside = transform_landmarks(astro_lm, crop)
    assert inside.min() > 0.1 * 128 and inside.max() < 0.9 * 128  # the face sits inside with a margin
    np.testing.assert_allclose(transform_landmarks(inside, crop, inverse=True), astro_lm, atol=1e-3)
    face = crop_image(astronaut, crop)
    assert face.shape == (128, 128, 3) and face.dtype == np.uint8
    # the crop's pixel at a landmark matches the source pixel there (nose tip, bilinear tolerance)
    x, y = np.rint(inside[30]).astype(int)
    sx, sy = np.rint(astro_lm[30]).astype(int)
    assert np.abs(face[y, x].astype(int) - astronaut[sy, sx]).max() < 40


def test_crop_outside_image_borders():
    img = np.full((50, 50, 3), 200, np.uint8)
    lm = np.stack([np.linspace(0, 20, 68), np.linspace(0, 20, 68)], 1).astype(np.float32)
    crop = crop_from_landmarks(lm, size=64)
    assert (crop_image(img, crop, border="constant")[0, 0] == 0).all()
    assert (crop_image(img, crop)[0, 0] == 200).all()  # replicate: no black bars
    with pytest.raises(ValueError, match="NaN"):
        crop_from_landmarks(np.full((68, 2), np.nan), 64)


def test_paste_back_keeps_pixels_outside_mask(astronaut, astro_lm):
    crop = crop_from_landmarks(astro_lm, size=96)
    generated = np.zeros((96, 96, 3), np.uint8)  # a black "generated" face
    out = paste_back(astronaut, generated, crop, feather=0.1)
    x0, y0, x1, y1 = crop.box
    outside = np.ones(astronaut.shape[:2], bool)
    outside[int(np.floor(y0)):int(np.ceil(y1)) + 1, int(np.floor(x0)):int(np.ceil(x1)) + 1] = False
    assert (out[outside] == astronaut[outside]).all()
    cy, cx = int(crop.center[1]), int(crop.center[0])
    assert (out[cy, cx] == 0).all()  # mask is 1 in the middle
    # pasting the crop of the frame itself changes almost nothing
    same = paste_back(astronaut, crop_image(astronaut, crop), crop)
    assert np.abs(same.astype(int) - astronaut).mean() < 1.0
    m = feather_mask(64, 0.1)
    assert m[0].max() == 0 and m[:, 0].max() == 0 and m[32, 32] == 1


def test_crop_track_is_stable():
    rng = np.random.default_rng(1)
    base = np.stack([np.linspace(100, 200, 68), np.linspace(100, 220, 68)], 1)
    track = base[None] + rng.normal(0, 2.0, (50, 68, 2))
    crops = crop_track(track.astype(np.float32), 256, fps=25)
    centers = np.array([c.center for c in crops])
    per_frame = np.array([crop_from_landmarks(lm, 256).center for lm in track])
    assert np.abs(np.diff(centers, axis=0)).mean() < 0.2 * np.abs(np.diff(per_frame, axis=0)).mean()
    track[10] = np.nan  # a frame without landmarks still gets a box
    assert np.isfinite(crop_track(track.astype(np.float32), 256, fps=25)[10].center).all()


def _layout(size=256):
    """Known points: each part on its own horizontal band, far from the others."""
    lm = np.zeros((68, 2), np.float32)
    rows = {}
    for k, (name, a, b, closed, colour) in enumerate(PARTS):
        y = 20 + 25 * k
        n = b - a + 1
        xs = np.linspace(40, 216, n)
        ys = np.full(n, float(y))
        if closed:  # a flat loop: half the points 6 px lower
            ys[n // 2:] += 6
            xs[n // 2:] = xs[n // 2:][::-1]
        lm[a:b + 1] = np.stack([xs, ys], 1)
        rows[name] = (y, colour)
    return lm * (size / 256), rows


def test_landmark_image_colours():
    lm, rows = _layout()
    img = draw_landmarks(lm, 256)
    assert img.shape == (256, 256, 3) and img.dtype == np.uint8
    for name, (y, colour) in rows.items():
        np.testing.assert_array_equal(img[y, 128], colour, err_msg=name)
    assert (img[5, 5] == 0).all() and (img[250, 128] == 0).all()  # black canvas
    white = draw_landmarks(lm, 256, background="white")
    assert (white[5, 5] == 255).all()
    # line width: 2 px at 256, 4 px at 512 (pixels fully in the colour, across the jaw's line)
    assert line_width(256) == 2 and line_width(512) == 4 and line_width(64) == 1
    big = draw_landmarks(lm * 2, 512)
    col = big[:, 256]
    jaw = (col == rows["jaw"][1]).all(axis=1)
    assert 3 <= jaw.sum() <= 5
    assert (draw_landmarks(np.full((68, 2), np.nan), 64) == 0).all()


def test_landmark_images_tensor():
    import torch

    lm, rows = _layout(256)
    t = landmark_images(np.stack([lm, lm]), 256)
    assert t.shape == (2, 3, 256, 256) and t.dtype == torch.float32
    assert t.min() == -1 and t.max() == 1 and t[0, :, 2, 2].eq(-1).all()
    y = rows["jaw"][0]
    assert t[1, 1, y, 128] == 1 and t[1, 0, y, 128] == -1  # green
    assert landmark_images(lm, (160, 128)).shape == (1, 3, 128, 160)
    assert draw_landmarks(np.stack([lm] * 3), 128).shape == (3, 128, 128, 3)
