"""The warp family's mouth-cavity prior (models/cavity.py), on the astronaut's real landmarks."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import opened_mouth as opened
from conftest import tiny_warp_pair
from talkinghead.config import get_config
from talkinghead.models.cavity import (CAVITY_CONTRAST, CAVITY_TEMPLATES, LUMA, TEMPLATE_SHAPE, contrast_cells,
                                       mouth_cavity, mouth_coordinates, open_ratio, polygon_mask)
from talkinghead.tensors import to_tensor


@pytest.fixture(scope="module")
def face(astronaut_face):
    crop, lm = astronaut_face
    return to_tensor(crop)[None], torch.as_tensor(lm)[None]


def test_polygon_mask_fills_the_inside_only():
    square = torch.tensor([[[10.0, 10.0], [20.0, 10.0], [20.0, 20.0], [10.0, 20.0]]])
    m = polygon_mask(square, 32)
    assert m.shape == (1, 1, 32, 32)
    assert 90 <= m.sum() <= 121  # the pixel centres inside a 10 x 10 square
    assert m[0, 0, 15, 15] == 1 and m[0, 0, 5, 5] == 0 and m[0, 0, 25, 15] == 0


def test_mouth_coordinates_run_from_corner_to_corner_and_lip_to_lip(face):
    _, lm = face
    pts = opened(lm, 12.0)
    uv = mouth_coordinates(pts, 256)[0]
    mid = ((pts[0, 62] + pts[0, 66]) / 2).round().long()
    u, v = uv[mid[1], mid[0]].tolist()
    assert abs(u - 0.5) < 0.1 and abs(v - 0.5) < 0.1
    near_top = ((0.85 * pts[0, 62] + 0.15 * pts[0, 66])).round().long()
    assert uv[near_top[1], near_top[0], 1] < 0.3


def test_the_templates_have_their_documented_shape_in_opening_order():
    keys = [k for k, _ in CAVITY_TEMPLATES]
    assert keys == sorted(keys) and len(keys) == len(set(keys))
    for _, t in CAVITY_TEMPLATES:
        t = np.asarray(t)
        assert t.shape == (*TEMPLATE_SHAPE, 3) and (t > 0).all()


def test_the_contrast_scales_brightness_about_the_cheeks_and_keeps_the_hue():
    cells = torch.as_tensor(np.asarray(CAVITY_TEMPLATES[1][1], np.float32)).permute(2, 0, 1)[None]  # (1, 3, nv, nu)
    assert torch.allclose(contrast_cells(cells, 1.0), cells, atol=1e-6)
    out = contrast_cells(cells, 2.0)
    lum = lambda c: (c * torch.tensor(LUMA).reshape(1, 3, 1, 1)).sum(1)  # noqa: E731
    expected = (1 + (lum(cells) - 1) * 2).clamp_min(0.05)
    assert torch.allclose(lum(out), expected, atol=1e-5)
    # the hue: each cell's channels keep their proportions
    assert torch.allclose(out / out.sum(1, keepdim=True), cells / cells.sum(1, keepdim=True), atol=1e-5)
    # the teeth (brighter than the cheeks) get brighter, the dark between them darker
    bright, dark = lum(cells) > 1.05, lum(cells) < 0.7
    assert bright.any() and dark.any()
    assert (lum(out)[bright] > lum(cells)[bright]).all() and (lum(out)[dark] < lum(cells)[dark]).all()
    assert CAVITY_CONTRAST > 1


def test_the_prior_applies_its_contrast(face):
    img, lm = face
    closed = lm.clone()
    closed[:, [67, 66, 65]] = closed[:, [61, 62, 63]]
    pts = opened(lm, 30.0)
    flat, alpha = mouth_cavity(img, pts, closed, contrast=1.0)
    strong, _ = mouth_cavity(img, pts, closed, contrast=2.5)
    m = (alpha[:, 0] > 0.9)
    spread = lambda x: float(((x + 1) / 2).mean(1)[m].std())  # noqa: E731
    assert m.sum() > 20 and spread(strong) > 1.3 * spread(flat)


def test_the_opening_picks_the_template(face):
    img, lm = face
    one = ((0.2, np.full((*TEMPLATE_SHAPE, 3), 0.1)), (0.5, np.full((*TEMPLATE_SHAPE, 3), 0.9)))
    inner = lambda p: polygon_mask(p[:, 60:68], 256) > 0  # noqa: E731
    closed = lm.clone()
    closed[:, [67, 66, 65]] = closed[:, [61, 62, 63]]  # a shot with shut lips: uncover = 1
    means = []
    for by in (0.0, 30.0):  # her own opening (0.15, below the first key) and a wide one (above the last)
        pts = opened(lm, by)
        out, alpha = mouth_cavity(img, pts, closed, templates=one)
        m = inner(pts)[:, 0] & (alpha[:, 0] > 0.9)
        assert m.sum() > 20
        means.append(float(((out + 1) / 2).mean(1)[m].mean()))
    assert means[1] > means[0] + 0.2  # the wider mouth takes the bright template


def test_no_change_where_the_shot_is_as_open_as_the_target(face):
    img, lm = face
    pts = opened(lm, 10.0)
    out, alpha = mouth_cavity(img, pts, pts)
    assert torch.equal(out, img) and alpha.max() == 0


def test_a_wider_target_gets_a_mouth_inside_within_its_inner_lips(face):
    img, lm = face
    pts = opened(lm, 14.0)
    assert open_ratio(pts) > 2 * open_ratio(lm)  # her own mouth shows a little teeth (0.15)
    out, alpha = mouth_cavity(img, pts, lm)
    inner = polygon_mask(pts[:, 60:68], 256)
    # the cavity sits inside the target's inner lips (the blurred edge reaches a few pixels beyond)
    grown = torch.nn.functional.max_pool2d(inner, 9, 1, 4)
    assert torch.equal(out * (1 - grown), img * (1 - grown))
    changed = (out - img).abs().sum(1, keepdim=True) * inner
    assert changed.sum() / inner.sum() > 0.05
    # uncover = 1 - r_shot / r_target: the more the shot shows, the less is painted
    assert 0 < alpha.max() <= 1 - float(open_ratio(lm) / open_ratio(pts)) + 1e-5
    assert (out >= -1).all() and (out <= 1).all()


def test_the_warp_generator_composites_the_cavity_when_configured(astronaut_face):
    plain, with_cavity, state, small = tiny_warp_pair(astronaut_face, mouth_cavity=True)
    y = torch.rand(2, 3, 64, 64) * 2 - 1
    target = torch.cat([small, opened(small, 4.0)])
    with torch.no_grad():
        a, b = plain.generate(y, target, state), with_cavity.generate(y, target, state)
    assert torch.equal(a["fake"][0], b["fake"][0])  # as open as the shot: no change
    assert not torch.equal(a["fake"][1], b["fake"][1]) and b["cavity"][1].max() > 0
    assert "cavity" not in a


def test_the_generator_takes_the_contrast_from_its_config(astronaut_face):
    _, gen, state, small = tiny_warp_pair(astronaut_face, mouth_cavity=True, cavity_contrast=1.0)
    target = opened(small, 4.0)
    y = torch.rand(1, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        a = gen.generate(y, target, state)
        gen.config = gen.config.replace(cavity_contrast=2.5)
        b = gen.generate(y, target, state)
    inside = a["cavity"][0, 0] > 0.5 * a["cavity"].max()
    assert inside.sum() > 3 and torch.equal(a["cavity"], b["cavity"])  # the same share painted
    spread = lambda out: float(out["fake"][0].mean(0)[inside].std())  # noqa: E731
    assert spread(b) > spread(a)  # only its contrast differs


def test_the_priors_settings_are_checked():
    cfg = get_config("warp-tiny", cavity_contrast=2, lid_margin=0)
    assert (cfg.cavity_contrast, cfg.lid_margin) == (2, 0)
    assert type(cfg).from_dict(cfg.to_dict()) == cfg
    for bad in (dict(cavity_contrast=0), dict(cavity_contrast="1.5"), dict(lid_margin=-0.1),
                dict(lid_margin=float("nan")), dict(cavity_contrast=True)):
        with pytest.raises(ValueError, match=next(iter(bad))):
            get_config("warp-tiny", **bad)


def test_the_config_takes_a_bool_for_the_warp_family_only():
    assert get_config("warp-tiny", mouth_cavity=True).mouth_cavity
    with pytest.raises(ValueError, match="mouth_cavity must be true or false"):
        get_config("warp-tiny", mouth_cavity="yes")
    with pytest.raises(ValueError, match="belongs to the warp family"):
        get_config("tiny", mouth_cavity=True)
