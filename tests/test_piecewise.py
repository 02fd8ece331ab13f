"""The torch piecewise-affine motion field (models/piecewise.py) and the warp family's ``warp_motion``."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import scaled_face
from talkinghead.config import ModelConfig, get_config
from talkinghead.evaluation.baselines import piecewise_affine_warp
from talkinghead.models import WarpGenerator
from talkinghead.models.piecewise import pa_grid, triangulation
from talkinghead.models.tps import border_points, identity_grid, tps_grid, warp_images
from talkinghead.pipeline import to_tensor, to_uint8
from test_families import opened_mouth


def _face_box(points: np.ndarray):
    x0, y0 = np.floor(points.min(0)).astype(int)
    x1, y1 = np.ceil(points.max(0)).astype(int)
    return slice(max(y0, 0), y1), slice(max(x0, 0), x1)


@pytest.mark.parametrize("opening, shift", [(8.0, (3.0, -2.0)), (16.0, (0.0, 0.0))])
def test_pa_grid_matches_the_baseline_warp_on_a_real_face(astronaut_face, opening, shift):
    """The torch field reproduces the evaluation's piecewise-affine warp (which triangulates each target
    anew, where this one keeps the mean face's triangles) far closer than the thin-plate spline does."""
    img, lm = scaled_face(astronaut_face, 256)
    target = opened_mouth(lm, opening) + np.array(shift, np.float32)
    t, s = torch.from_numpy(target)[None], torch.from_numpy(lm)[None, None]
    shot = to_tensor(img)[None, None]
    ours = to_uint8(warp_images(shot, pa_grid(t, s, 256))[:, 0])[0].astype(np.float64)
    tps = to_uint8(warp_images(shot, tps_grid(t, s, 256))[:, 0])[0].astype(np.float64)
    baseline = piecewise_affine_warp(img, lm, target).astype(np.float64)
    face = _face_box(target)
    err, tps_err = np.abs(ours - baseline)[face].mean(), np.abs(tps - baseline)[face].mean()
    assert err < 0.75, err  # grey levels of 255
    assert err < 0.5 * tps_err, (err, tps_err)
    assert np.abs(ours - baseline).mean() < 0.5  # the whole crop: the border points keep the background
    # the mouth: most pixels within a grey level (the triangulations may differ on a few triangles)
    lips = _face_box(target[48:68])
    assert np.median(np.abs(ours - baseline)[lips]) <= 1.0


def test_identity_landmarks_give_the_identity_grid(astronaut_face):
    img, lm = scaled_face(astronaut_face, 256)
    pts = torch.from_numpy(lm)
    grid = pa_grid(pts[None], pts[None, None].expand(1, 2, 68, 2), 256)
    assert grid.shape == (1, 2, 256, 256, 2)
    assert (grid - identity_grid(256)).abs().max() < 1e-4  # 0.013 px
    out = warp_images(to_tensor(img)[None, None], grid[:, :1])
    assert np.abs(to_uint8(out[:, 0])[0].astype(int) - img).max() <= 1


def test_shapes_gradients_and_no_nan(astronaut_face):
    """A batch of 2 targets and 3 shots at 64 px, with a closed mouth (coincident inner lips: degenerate
    triangles): finite grids and gradients that reach both point sets."""
    img, lm = scaled_face(astronaut_face, 64)
    rng = np.random.default_rng(0)
    closed = lm.copy()
    closed[[65, 66, 67]] = closed[[63, 62, 61]]  # lower inner lip on the upper one
    target = torch.tensor(np.stack([opened_mouth(lm, 2.0), closed]), requires_grad=True)
    shots = torch.tensor(np.stack([[lm + rng.normal(0, 0.3, lm.shape) for _ in range(3)] for _ in range(2)]),
                         dtype=torch.float32, requires_grad=True)
    grid = pa_grid(target, shots, 64)
    assert grid.shape == (2, 3, 64, 64, 2) and torch.isfinite(grid).all()
    warped = warp_images(to_tensor(img)[None, None].expand(2, 3, -1, -1, -1), grid)
    (warped.square().mean() + grid.square().mean()).backward()
    for g in (target.grad, shots.grad):
        assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0
    with pytest.raises(ValueError, match="target landmarks"):
        pa_grid(target[0], shots, 64)
    with pytest.raises(ValueError, match="shot landmarks"):
        pa_grid(target, shots[:1], 64)


def test_pixels_outside_every_triangle_take_the_tps_grid(astronaut_face):
    _, lm = scaled_face(astronaut_face, 64)
    border = border_points(64) * 0.7  # a hull inside the crop: its corners are outside every triangle
    t = torch.from_numpy(opened_mouth(lm, 2.0))[None]
    s = torch.from_numpy(lm)[None, None]
    grid, tps = pa_grid(t, s, 64, border), tps_grid(t, s, 64, border)
    assert torch.isfinite(grid).all()
    assert torch.equal(grid[0, 0, 0, 0], tps[0, 0, 0, 0]) and torch.equal(grid[0, 0, -1, -1], tps[0, 0, -1, -1])
    assert not torch.allclose(grid[0, 0, 32, 32], tps[0, 0, 32, 32], atol=1e-6)


def test_triangulation_keeps_the_lip_rings():
    tri = triangulation(border_points(256)).numpy()
    assert tri.shape == (146, 3) and tri.min() == 0 and tri.max() == 68 + 12 - 1
    edges = {frozenset(e) for t in tri for e in ((t[0], t[1]), (t[1], t[2]), (t[0], t[2]))}
    for ring in (list(range(48, 60)), list(range(60, 68))):
        assert all(frozenset((a, b)) in edges for a, b in zip(ring, ring[1:] + ring[:1]))


# ---- the warp family's warp_motion ----------------------------------------------------------------------
def test_warp_motion_is_checked_and_old_configs_load():
    assert get_config("warp-256").warp_motion == "tps"
    assert get_config("warp-256", warp_motion="pa").warp_motion == "pa"
    with pytest.raises(ValueError, match="warp_motion must be one of tps, pa"):
        get_config("warp-256", warp_motion="affine")
    old = get_config("warp-256").to_dict()
    del old["warp_motion"]  # a config.json saved before the field existed
    assert ModelConfig.from_dict(old) == get_config("warp-256")


@pytest.mark.parametrize("motion", ["tps", "pa"])
def test_untrained_warp_generator_uses_its_motion_field(astronaut_face, motion):
    torch.manual_seed(0)
    cfg = get_config("warp-tiny", warp_motion=motion)
    G = WarpGenerator(cfg).eval()
    img, lm = scaled_face(astronaut_face, 64)
    target = torch.from_numpy(opened_mouth(lm, 3.0))[None]
    shots, shot_pts = to_tensor(img)[None, None], torch.from_numpy(lm)[None, None]
    state = G.identity_state(torch.rand(1, cfg.embed_dim), shots, shot_pts)
    with torch.no_grad():
        out = G.generate(torch.zeros(1, 3, 64, 64), target, state)
    field = pa_grid if motion == "pa" else tps_grid
    expect = field(target, shot_pts, 64, border_points(64))
    assert torch.allclose(out["grid"], expect)
    assert (out["fake"] - warp_images(shots, expect)[:, 0]).abs().max() < 0.01  # the mask's 0.5 of a zero delta
