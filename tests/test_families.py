"""Generator families through their one interface: the paper's generator and the warp-guided one."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import opened_mouth, scaled_face
from talkinghead import hub
from talkinghead.config import get_config
from talkinghead.errors import WeightsError
from talkinghead.evaluation.baselines import piecewise_affine_warp
from talkinghead.models import FAMILIES, TalkingHeadModel, WarpGenerator, build_generator, family_of
from talkinghead.models.tps import tps_grid, warp_images
from talkinghead.pipeline import to_tensor, to_uint8

TINY = {"paper": "tiny", "warp": "warp-tiny"}
# the user-facing tests also run the warp family with its mouth refiner
USER_CONFIGS = {**TINY, "warp-mouth": "warp-mouth-tiny"}


def face_batch(face, size: int, b: int, k: int):
    """Shots, their points, target landmark images and points from the astronaut's real face."""
    from talkinghead.landmarks import landmark_images

    img, lm = scaled_face(face, size)
    rng = np.random.default_rng(0)
    shot_pts = np.stack([[lm + rng.normal(0, size / 200, lm.shape) for _ in range(k)] for _ in range(b)])
    target = np.stack([opened_mouth(lm, size / 40) for _ in range(b)]).astype(np.float32)
    shots = to_tensor(img)[None, None].expand(b, k, -1, -1, -1).clone()
    y = landmark_images(target, size).float()
    if y.max() > 1.5:  # uint8 landmark images
        y = y / 127.5 - 1
    return shots, torch.tensor(shot_pts, dtype=torch.float32), y, torch.from_numpy(target)


def test_registry_matches_the_config_names():
    from talkinghead.config import GENERATOR_FAMILIES

    assert tuple(FAMILIES) == GENERATOR_FAMILIES
    for family, name in TINY.items():
        g = build_generator(get_config(name))
        assert family_of(g) == family and isinstance(g, FAMILIES[family])
    assert get_config("warp-256").generator == "warp" and get_config("cpu-256").generator == "paper"


@pytest.mark.parametrize("family", sorted(TINY))
def test_family_interface_shapes_backward_finite(family, astronaut_face):
    torch.manual_seed(0)
    model = TalkingHeadModel(TINY[family])
    cfg, G = model.config, model.generator
    shots, shot_pts, y, pts = face_batch(astronaut_face, cfg.image_size, b=2, k=3)
    _, e_hat = model.embedder(shots, shots)
    state = G.identity_state(e_hat, shots, shot_pts)
    assert state["psi"].shape == (2, G.n_psi)
    if G.needs_shots:
        assert state["shots"].shape == shots.shape and state["shot_points"].shape == (2, 3, 68, 2)
    out = G.generate(y, pts, state)
    fake = out["fake"]
    assert fake.shape == (2, 3, cfg.image_size, cfg.image_size) and torch.isfinite(fake).all()
    assert fake.abs().max() <= 1.0 + 1e-5
    if family == "warp":
        s = cfg.image_size
        assert out["mask"].shape == (2, 1, s, s) and out["flow"].shape == (2, s, s, 2)
        assert out["weights"].shape == (2, cfg.warp_shots, 1, s, s)
        assert torch.allclose(out["weights"].sum(1), torch.ones(2, 1, s, s), atol=1e-5)
    (fake.square().mean() + sum(v.float().mean() for k, v in out.items() if k in ("mask", "flow"))).backward()
    grads = [p.grad for p in G.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    assert all(torch.isfinite(g).all() for g in grads if g is not None)
    # the identity path reaches every family's weights: e_hat gets a gradient through psi
    e = torch.zeros(2, cfg.embed_dim, requires_grad=True)
    G.generate(y, pts, {**state, "psi": G.psi_from_embedding(e)})["fake"].mean().backward()
    assert e.grad is not None


def test_untrained_warp_generator_is_the_warp_baseline(astronaut_face):
    """Untrained, the warp family reproduces a warp of the shot: the thin-plate spline exactly (up to
    the mask's 0.7%), and the evaluation's piecewise-affine baseline within a few grey levels. (warp-256's
    mouth-cavity prior is off here; the next test checks that it touches only the inside of the mouth.)"""
    torch.manual_seed(0)
    cfg = get_config("warp-256", mouth_cavity=False)
    G = WarpGenerator(cfg).eval()
    img, lm = scaled_face(astronaut_face, 256)
    target = opened_mouth(lm, 8.0) + np.array([3.0, -2.0], np.float32)
    shots = to_tensor(img)[None, None]
    state = G.identity_state(torch.rand(1, cfg.embed_dim), shots, torch.from_numpy(lm)[None, None])
    from talkinghead.landmarks import landmark_images

    y = landmark_images(target[None], 256).float()
    y = y / 127.5 - 1 if y.max() > 1.5 else y
    with torch.no_grad():
        out = G.generate(y, torch.from_numpy(target)[None], state)
        tps = warp_images(shots, tps_grid(torch.from_numpy(target)[None], torch.from_numpy(lm)[None, None], 256))[:, 0]
    assert (out["fake"] - tps).abs().max() < 0.01
    ours = to_uint8(out["fake"])[0].astype(np.float64)
    baseline = piecewise_affine_warp(img, lm, target).astype(np.float64)
    # inside the face, where the two warps are defined by the same 68 points
    x0, y0 = np.floor(target.min(0)).astype(int)
    x1, y1 = np.ceil(target.max(0)).astype(int)
    face = (slice(max(y0, 0), y1), slice(max(x0, 0), x1))
    ours_err = np.abs(ours[face] - baseline[face]).mean()
    unwarped_err = np.abs(img.astype(np.float64)[face] - baseline[face]).mean()
    assert ours_err < 4.0, ours_err  # grey levels of 255
    assert ours_err < 0.5 * unwarped_err, (ours_err, unwarped_err)  # and the test can tell a warp from none


def test_the_cavity_prior_changes_only_the_inside_of_a_mouth_opened_wider_than_the_shot(astronaut_face):
    from talkinghead.models.cavity import polygon_mask

    assert get_config("warp-256").mouth_cavity
    torch.manual_seed(0)
    G = WarpGenerator(get_config("warp-256")).eval()
    img, lm = scaled_face(astronaut_face, 256)
    target = opened_mouth(lm, 8.0)
    state = G.identity_state(torch.rand(1, G.config.embed_dim), to_tensor(img)[None, None], torch.from_numpy(lm)[None, None])
    y = torch.zeros(1, 3, 256, 256)
    with torch.no_grad():
        out = G.generate(y, torch.from_numpy(target)[None], state)
        plain = G.generate(y, torch.from_numpy(lm)[None], state)  # as open as the shot: no cavity
    assert plain["cavity"].max() == 0 and out["cavity"].max() > 0.3
    inner = polygon_mask(torch.from_numpy(target)[None, 60:68], 256)
    outside = torch.nn.functional.max_pool2d(inner, 9, 1, 4) == 0
    assert torch.equal(out["cavity"][outside], torch.zeros_like(out["cavity"][outside]))


def test_warp_blends_the_nearest_shots(astronaut_face):
    """The prior picks the shots whose pose and expression are nearest; at most warp_shots are warped."""
    torch.manual_seed(0)
    cfg = get_config("warp-256", warp_shots=2, warp_regions=())
    G = WarpGenerator(cfg).eval()
    img, lm = scaled_face(astronaut_face, 256)
    grey = np.full_like(img, 128)
    far = opened_mouth(lm, 30.0)  # wide open: far from a closed-mouth target
    shots = torch.stack([to_tensor(grey), to_tensor(img), to_tensor(grey)])[None]
    shot_pts = torch.from_numpy(np.stack([far, lm, far]))[None]
    state = G.identity_state(torch.rand(1, cfg.embed_dim), shots, shot_pts)
    y = torch.zeros(1, 3, 256, 256)
    with torch.no_grad():
        out = G.generate(y, torch.from_numpy(lm)[None], state)
    assert out["shot_index"].shape == (1, 2) and out["shot_index"][0, 0] == 1
    gen = to_uint8(out["fake"])[0].astype(np.float64)
    assert np.abs(gen - img).mean() < 3.0  # the astronaut, not the grey shots


def test_warp_heads_learn(astronaut_face):
    """The zero-initialised heads get gradients: two steps move the mask, the flow and the rgb (the mask's
    gradient is ``corrected - rgb``, 0 until the first step has moved the rgb off the warp)."""
    torch.manual_seed(0)
    model = TalkingHeadModel("warp-tiny")
    G = model.generator
    shots, shot_pts, y, pts = face_batch(astronaut_face, 64, b=1, k=2)
    e_hat = torch.rand(1, model.config.embed_dim)
    with torch.no_grad():
        before = G.generate(y, pts, G.identity_state(e_hat, shots, shot_pts))
    assert torch.equal(before["rgb"], before["fake"])  # untrained, the painted image is the warp
    opt = torch.optim.Adam(G.parameters(), lr=1e-2)
    for _ in range(2):
        opt.zero_grad()
        ((G.generate(y, pts, G.identity_state(e_hat, shots, shot_pts))["fake"] - 1.0).abs().mean()).backward()
        opt.step()
    with torch.no_grad():
        after = G.generate(y, pts, G.identity_state(e_hat, shots, shot_pts))
    assert not torch.allclose(after["mask"], before["mask"])
    assert after["flow"].abs().max() > 0 and not torch.allclose(after["rgb"], before["rgb"])


# ---- weights on disk: hub dispatch -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def saved_warp(tmp_path_factory):
    torch.manual_seed(0)
    model = TalkingHeadModel("warp-tiny")
    with torch.no_grad():  # non-zero heads, so the comparison covers every tensor
        model.generator.head.weight.normal_(0, 0.01)
        model.generator.scorer[-1].weight.normal_(0, 0.01)
    folder = tmp_path_factory.mktemp("w") / "warp-tiny-test"
    model.save_pretrained(folder)
    return model.eval(), folder


def test_hub_round_trip_builds_the_saved_family(saved_warp, astronaut_face):
    model, folder = saved_warp
    meta = json.loads((folder / "config.json").read_text())
    assert meta["family"] == "warp" and meta["config"]["generator"] == "warp"
    loaded = TalkingHeadModel.from_pretrained(folder)
    assert isinstance(loaded.generator, WarpGenerator)
    shots, shot_pts, y, pts = face_batch(astronaut_face, 64, b=1, k=2)
    with torch.no_grad():
        a = [m.generator.generate(y, pts, m.generator.identity_state(torch.ones(1, 32), shots, shot_pts))["fake"]
             for m in (model, loaded)]
    assert torch.equal(a[0], a[1])


@pytest.mark.parametrize("change, words", [
    (lambda m: m.update(family="diffusion"), "family 'diffusion'.*upgrade talkinghead"),
    (lambda m: m.update(family="paper"), "names generator family 'paper' but its config builds 'warp'"),
])
def test_unknown_or_mismatched_family_is_one_line(saved_warp, tmp_path, change, words):
    import shutil

    _, folder = saved_warp
    bad = tmp_path / "bad"
    shutil.copytree(folder, bad)
    meta = json.loads((bad / "config.json").read_text())
    change(meta)
    (bad / "config.json").write_text(json.dumps(meta))
    with pytest.raises(WeightsError, match=words) as info:
        hub.load_pretrained(bad)
    assert "\n" not in str(info.value)


def test_folder_from_before_families_loads_as_the_paper_generator(tmp_path):
    """A model saved before generator families existed (no ``family``, no ``generator``/``warp_*``
    fields) is the paper's generator."""
    from talkinghead.models import Generator

    torch.manual_seed(0)
    model = TalkingHeadModel("tiny")
    folder = tmp_path / "old"
    model.save_pretrained(folder)
    meta = json.loads((folder / "config.json").read_text())
    del meta["family"]
    for key in [k for k in meta["config"] if k == "generator" or k.startswith("warp_")]:
        del meta["config"][key]
    (folder / "config.json").write_text(json.dumps(meta))
    loaded = TalkingHeadModel.from_pretrained(folder)
    assert isinstance(loaded.generator, Generator) and loaded.config.generator == "paper"


# ---- the user-facing path: personalise (FF and FT), render, save/load ------------------------------------
@pytest.fixture(scope="module", params=sorted(USER_CONFIGS))
def family_model(request, tmp_path_factory):
    import talkinghead as th

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("m") / f"{request.param}-tiny"
    model = TalkingHeadModel(get_config(USER_CONFIGS[request.param], num_videos=3))
    if request.param.startswith("warp"):
        with torch.no_grad():  # a little away from the identity, so FT and round trips have work to show
            model.generator.head.weight.normal_(0, 0.02)
            if model.generator.mouth is not None:
                model.generator.mouth.head.weight.normal_(0, 0.02)
    model.save_pretrained(folder)
    return th.load(folder, device="cpu")


def _render_source(avatar, n: int = 2) -> np.ndarray:
    from talkinghead.landmarks import transform_landmarks

    lm = np.repeat(avatar.source.landmarks[None], n, 0)
    lm[1] = opened_mouth(lm[1], 6.0)
    return avatar.render(transform_landmarks(lm, avatar.source.crop))


def test_personalize_feed_forward_and_fine_tuned(family_model, astronaut, grace_hopper):
    ff = family_model.personalize([astronaut], progress=False)
    assert set(ff.state) == ({"psi", "shots", "shot_points"} if family_model.model.generator.needs_shots else {"psi"})
    frames_ff = _render_source(ff)
    assert frames_ff.shape == (2, 64, 64, 3) and frames_ff.dtype == np.uint8
    ft = family_model.personalize([astronaut], fine_tune_steps=2, progress=False, content="none", patience=0)
    assert ft.info["fine_tune_steps"] == 2
    assert not torch.equal(ft.psi, ff.psi)
    assert not np.array_equal(_render_source(ft), frames_ff)
    # two photos of different people (a warning) still fine-tune: each photo's shots are the other one
    with pytest.warns(UserWarning):
        two = family_model.personalize([astronaut, grace_hopper], fine_tune_steps=1, progress=False,
                                       content="none", patience=0)
    assert two.info["fine_tune_steps"] == 1


def test_warp_avatar_keeps_the_photos_pixels(family_model, astronaut):
    """FF with the warp family: the rendered source expression is the source's own crop."""
    if not family_model.model.generator.needs_shots:
        pytest.skip("the paper family paints from the landmark image")
    avatar = family_model.personalize([astronaut], progress=False)
    with torch.no_grad():
        avatar.generator.reset_heads()
    crop = to_uint8(avatar.state["shots"])[0].astype(np.float64)
    same = _render_source(avatar)[0].astype(np.float64)
    assert np.abs(same - crop).mean() < 3.0


def test_avatar_round_trip_for_each_family(family_model, astronaut, tmp_path):
    from talkinghead.pipeline import AVATAR_CONFIG, Avatar

    avatar = family_model.personalize([astronaut], progress=False)
    avatar.save(tmp_path / "av")
    meta = json.loads((tmp_path / "av" / AVATAR_CONFIG).read_text())
    assert meta["family"] == family_model.config.generator and meta["format_version"] == 2
    back = Avatar.load(tmp_path / "av", device="cpu")
    assert type(back.generator) is type(avatar.generator)
    assert np.array_equal(_render_source(back), _render_source(avatar))


def test_avatar_of_the_old_format_loads_or_fails_in_one_line(family_model, astronaut, tmp_path):
    """Format 1 (before families: psi at the top level) loads for the paper family; a damaged one is
    one line."""
    from safetensors.torch import load_file, save_file

    from talkinghead.pipeline import AVATAR_CONFIG, AVATAR_WEIGHTS, Avatar

    if family_model.config.generator != "paper":
        pytest.skip("format 1 avatars hold the paper family only")
    avatar = family_model.personalize([astronaut], progress=False)
    d = avatar.save(tmp_path / "old")
    tensors = load_file(str(d / AVATAR_WEIGHTS))
    tensors["psi"] = tensors.pop("state.psi")
    save_file(tensors, str(d / AVATAR_WEIGHTS))
    meta = json.loads((d / AVATAR_CONFIG).read_text())
    meta["format_version"] = 1
    del meta["family"], meta["class_name"], meta["sha256"]  # format 1 predates all three
    for key in [k for k in meta["model_config"] if k == "generator" or k.startswith("warp_")]:
        del meta["model_config"][key]
    (d / AVATAR_CONFIG).write_text(json.dumps(meta))
    back = Avatar.load(d, device="cpu")
    assert np.array_equal(_render_source(back), _render_source(avatar))
    del tensors["psi"]
    save_file(tensors, str(d / AVATAR_WEIGHTS))
    with pytest.raises(WeightsError, match="missing state.psi") as info:
        Avatar.load(d, device="cpu")
    assert "\n" not in str(info.value)
    meta["format_version"] = 7
    (d / AVATAR_CONFIG).write_text(json.dumps(meta))
    with pytest.raises(WeightsError, match="avatar format 7"):
        Avatar.load(d, device="cpu")


def test_landmark_distance_is_the_baselines_nearest_shot(astronaut_face):
    """The warp prior's distance picks the same shot as the evaluation's nearest-shot baseline."""
    from talkinghead.evaluation import nearest_shot
    from talkinghead.models.tps import landmark_distance

    _, lm = astronaut_face
    rng = np.random.default_rng(3)
    for trial in range(5):
        shots = np.stack([opened_mouth(lm, rng.uniform(0, 20)) * rng.uniform(0.9, 1.1) + rng.normal(0, 1, 2)
                          for _ in range(6)]).astype(np.float32)
        target = opened_mouth(lm, rng.uniform(0, 20))
        d = landmark_distance(torch.from_numpy(target)[None], torch.from_numpy(shots)[None])[0]
        assert int(d.argmin()) == nearest_shot(shots, target)


def test_config_checks_warp_fields_for_the_warp_family_only():
    from talkinghead.config import ModelConfig

    # a small paper-family plan that the warp U-Net's divisibility rules would refuse
    ModelConfig(image_size=24, embed_dim=8, embedder_channels=(4, 8), generator_down_channels=(4, 8),
                generator_up_channels=(8, 4), attention_down=None, attention_up=None, bottleneck_blocks=1)
    with pytest.raises(ValueError, match="below 2x2"):
        get_config("warp-tiny", warp_downscale=4, warp_channels=(8,) * 5)
    with pytest.raises(ValueError, match="generator must be one of"):
        get_config("tiny", generator="diffusion")


def test_avatar_with_inconsistent_shots_is_refused_in_one_line(family_model, astronaut, tmp_path):
    from safetensors.torch import load_file, save_file

    from talkinghead.pipeline import AVATAR_WEIGHTS, Avatar

    if not family_model.model.generator.needs_shots:
        pytest.skip("the paper family keeps no shots")
    d = family_model.personalize([astronaut], progress=False).save(tmp_path / "av")
    tensors = load_file(str(d / AVATAR_WEIGHTS))
    tensors["state.shot_points"] = torch.cat([tensors["state.shot_points"]] * 2)
    save_file(tensors, str(d / AVATAR_WEIGHTS))
    with pytest.raises(WeightsError, match="shot_points must be") as info:
        Avatar.load(d, device="cpu")
    assert "\n" not in str(info.value)


def test_warp_regions_take_the_mouth_from_the_shot_whose_mouth_matches(astronaut_face):
    """warp_regions="mouth": over the mouth, the shot whose mouth is shaped like the target's (here open),
    elsewhere the nearest whole face; weights still sum to 1; one shot takes no region shot."""
    from talkinghead.models.tps import region_map

    torch.manual_seed(0)
    img, lm = scaled_face(astronaut_face, 256)
    target = opened_mouth(lm, 12.0)
    other = img.copy()
    other[..., 0] = 255 - other[..., 0]  # a shot that can be told apart by colour
    # shot 0: the same face with the target's open mouth but a turned-away pose (far as a whole);
    # shot 1: the nearest whole face, with a closed mouth
    turned = target.copy()
    turned[:, 0] = 128 + (turned[:, 0] - 128) * 0.8
    shots = torch.stack([to_tensor(other), to_tensor(img)])[None]
    shot_pts = torch.from_numpy(np.stack([turned, lm]).astype(np.float32))[None]
    pts = torch.from_numpy(target.astype(np.float32))[None]
    for regions, expect in (((), [1]), (("mouth",), [1, 0])):
        cfg = get_config("warp-256", warp_shots=1, warp_regions=regions)
        G = WarpGenerator(cfg).eval()
        with torch.no_grad():
            out = G.generate(torch.zeros(1, 3, 256, 256), pts, G.identity_state(torch.rand(1, cfg.embed_dim), shots, shot_pts))
        assert out["shot_index"][0].tolist() == expect
        assert torch.allclose(out["weights"].sum(dim=1), torch.ones(1, 1, 256, 256), atol=1e-5)
    m = region_map(pts, 256, "mouth")[0, 0]
    cx, cy = target[48:68].mean(axis=0).round().astype(int)
    assert m[cy, cx] == 1.0 and m[5, 5] == 0.0 and m[int(target[30, 1]), int(target[30, 0])] < 1.0  # not the nose
    w = out["weights"][0, 1, 0]
    assert w[cy, cx] > 0.99 and w[5, 5] == 0.0  # the open-mouth shot inside the mouth only
    e = region_map(pts, 256, "eyes")[0, 0]
    for eye in (slice(36, 42), slice(42, 48)):
        ex, ey = target[eye].mean(axis=0).round().astype(int)
        assert e[ey, ex] == 1.0
    assert float((e * m).max()) == 0.0  # the regions do not overlap
    one = G.generate(torch.zeros(1, 3, 256, 256), pts, G.identity_state(torch.rand(1, cfg.embed_dim), shots[:, 1:], shot_pts[:, 1:]))
    assert one["shot_index"].shape == (1, 1)  # one photo: nothing to choose


def test_warp_regions_are_checked():
    with pytest.raises(ValueError, match="warp_regions"):
        get_config("warp-256", warp_regions=("nose",))
