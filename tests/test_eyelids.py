"""The eyelid prior (models/eyelids.py): bands, coordinates, the composite and its config."""
import numpy as np
import pytest
import torch

from conftest import tiny_warp_pair
from talkinghead.config import get_config
import talkinghead.models.eyelids as eyelid_prior
from talkinghead.models.eyelids import LID_SHAPE, LID_TEMPLATES, eye_opening, eyelids, lid_coordinates, lid_points


def _face(gap_scale: float = 1.0) -> torch.Tensor:
    """A frontal 68-point face at 128 px whose eyes' lid gaps are scaled by ``gap_scale``."""
    lm = np.zeros((68, 2), np.float32)
    lm[:, 0], lm[:, 1] = 64, 90
    for corner0, up, corner1, low, x0 in (((36, (37, 38), 39, (41, 40), 34)), ((42, (43, 44), 45, (47, 46), 74))):
        lm[corner0] = (x0, 50)
        lm[corner1] = (x0 + 20, 50)
        for i, (u, l) in enumerate(zip(up, low)):
            lm[u] = (x0 + 7 + 6 * i, 50 - 4 * gap_scale)
            lm[l] = (x0 + 7 + 6 * i, 50 + 4 * gap_scale)
    lm[[2, 31, 48, 4, 14, 35, 54, 12]] = [(30, 70), (58, 75), (52, 95), (32, 95), (98, 70), (70, 75), (76, 95), (96, 95)]
    return torch.as_tensor(lm)[None]


def test_eye_opening_and_order():
    assert eye_opening(_face(1.0))[0].tolist() == pytest.approx([0.4, 0.4])
    assert eye_opening(_face(0.25))[0].tolist() == pytest.approx([0.1, 0.1])


def test_no_band_when_as_open_as_the_shot():
    _, height = lid_coordinates(_face(1.0), _face(1.0), 128)
    assert not (height > 0).any()
    img = torch.rand(1, 3, 128, 128) * 2 - 1
    out, alpha = eyelids(img, _face(1.0), _face(1.0))
    assert torch.equal(out, img) and not alpha.any()


def test_band_lies_between_the_lid_and_where_it_was():
    target, shot = _face(0.25), _face(1.0)
    _, height = lid_coordinates(target, shot, 128)
    ys, xs = torch.nonzero(height[0].amax(0) > 0, as_tuple=True)
    # upper lids at y = 49 (closed to a quarter), lower at 51: the lid was open to 51 - 8 = 43, and the band
    # runs on over the lid margin above it, LID_MARGIN of the 20-px eye width
    top = 43 - eyelid_prior.LID_MARGIN * 20
    assert top - 1 <= ys.min() <= top + 1 and ys.max() <= 50
    assert ((xs >= 34) & (xs <= 54) | (xs >= 74) & (xs <= 94)).all()
    # the inverse map puts v = 0 on the target's upper lid and v = 1 where the lid was, at the lid's middle
    at = lid_points(target, shot, torch.tensor([[0.5, 0.0], [0.5, 1.0]]))
    assert at[0, 0, :, 1].tolist() == pytest.approx([49.0, 43.0], abs=0.6)


def test_the_band_runs_on_above_where_the_lid_was_only_while_closing():
    shot = _face(1.0)
    rows = {}
    for margin in (0.0, 0.2):
        _, height = lid_coordinates(_face(0.25), shot, 128, margin=margin)
        rows[margin] = int(torch.nonzero(height[0].amax(0) > 0, as_tuple=True)[0].min())
        assert not (lid_coordinates(shot, shot, 128, margin=margin)[1] > 0).any()  # as open: still no band
    assert rows[0.0] >= 43 and rows[0.2] <= rows[0.0] - 3  # 0.2 of the 20-px eye: 4 px higher


def test_composite_changes_only_the_band_and_uses_the_template():
    target, shot = _face(0.1), _face(1.0)
    img = torch.full((1, 3, 128, 128), -1.0)
    img[:, :, 60:110] = 0.5  # the cheeks' light
    one = ((0.5, tuple(tuple((0.5, 0.5, 0.5) for _ in range(LID_SHAPE[1])) for _ in range(LID_SHAPE[0]))),)
    out, alpha = eyelids(img, target, shot, templates=one)
    changed = (out - img).abs().amax(1)[0] > 1e-6
    assert changed.any() and bool((changed <= (alpha[0, 0] > 0)).all())
    # the cheeks at 0.75 in [0, 1] times the template's 0.5: 0.375, i.e. -0.25 in [-1, 1], where alpha is 1
    full = alpha[0, 0] > 0.999
    assert full.any() and torch.allclose(out[0, :, full], torch.tensor(-0.25), atol=1e-4)


def test_templates_are_measured_bands():
    keys = [k for k, _ in LID_TEMPLATES]
    assert keys == sorted(keys) and all(np.asarray(t).shape == (*LID_SHAPE, 3) for _, t in LID_TEMPLATES)


def test_config_validation():
    assert get_config("warp-tiny", eyelids=True).eyelids
    with pytest.raises(ValueError, match="eyelids must be true or false"):
        get_config("warp-tiny", eyelids="yes")
    with pytest.raises(ValueError, match="eyelid prior belongs to the warp family"):
        get_config("tiny", eyelids=True)


def test_the_warp_generator_composites_the_lids_when_configured(astronaut_face):
    plain, with_lids, state, small = tiny_warp_pair(astronaut_face, eyelids=True)
    shut = small.clone()
    shut[:, [37, 38, 43, 44]] = small[:, [41, 40, 47, 46]]  # the upper lids down on the lower: a blink
    y = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        a, b = plain.generate(y, torch.cat([small, shut]), state), with_lids.generate(y, torch.cat([small, shut]), state)
    assert torch.equal(a["fake"][0], b["fake"][0])  # as open as the shot: no change
    assert not torch.equal(a["fake"][1], b["fake"][1]) and b["lids"][1].max() > 0
    assert "lids" not in a


def test_the_generator_takes_the_lid_margin_from_its_config(astronaut_face):
    _, gen, state, small = tiny_warp_pair(astronaut_face, eyelids=True, lid_margin=0.0)
    shut = small.clone()
    shut[:, [37, 38, 43, 44]] = small[:, [41, 40, 47, 46]]
    y = torch.rand(1, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        a = gen.generate(y, shut, state)["lids"]
        gen.config = gen.config.replace(lid_margin=0.3)
        b = gen.generate(y, shut, state)["lids"]
    assert b.sum() > a.sum() + 1 and bool((b >= a - 1e-6).all())  # the same band, run on higher
