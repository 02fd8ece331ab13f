"""The warp family's learned mouth inside (models/mouth_inside.py) and its stage (inside_training.py)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from talkinghead.config import get_config
from talkinghead.models import TalkingHeadModel
from talkinghead.models.mouth import crop_box
from talkinghead.models.mouth_inside import MouthInside, box_points, frame_alpha, inside_box
from talkinghead.training import TrainOptions, train

from test_data import build_tiny_cache


@pytest.fixture(scope="module")
def tiny_cache(tmp_path_factory, astronaut):
    return build_tiny_cache(tmp_path_factory.mktemp("cache"), astronaut, videos=3, frames=10, size=64)


def _open_mouth(b: int = 1, size: int = 64) -> torch.Tensor:
    """``(b, 68, 2)``: a face's points with an open mouth about the crop's lower middle."""
    pts = torch.zeros(68, 2)
    pts[:, 0], pts[:, 1] = size / 2, size / 3  # the rest of the face, off the mouth
    c = torch.tensor([size / 2, size * 0.7])
    ring = torch.linspace(np.pi, -np.pi, 13)[:-1]
    pts[48:60] = c + torch.stack([10 * torch.cos(ring), 6 * torch.sin(ring)], -1)
    inner = torch.linspace(np.pi, -np.pi, 9)[:-1]
    pts[60:68] = c + torch.stack([7 * torch.cos(inner), 4 * torch.sin(inner)], -1)
    return pts.expand(b, 68, 2).clone()


def test_box_points_follow_the_pixels_crop_box_samples():
    img = -torch.ones(1, 3, 64, 64)
    pts = _open_mouth()
    x, y = 30, 45  # a bright pixel inside the box
    img[:, :, y, x] = 1.0
    theta = inside_box(pts, 64)
    crop = crop_box(img, theta, 32)
    q = box_points(torch.tensor([[[float(x), float(y)]]]).expand(1, 68, 2), theta, 64, 32)[0, 0]
    peak = torch.nonzero(crop[0, 0] == crop[0, 0].max())[0]  # (row, col)
    assert abs(float(q[0]) - float(peak[1])) <= 1 and abs(float(q[1]) - float(peak[0])) <= 1


def test_an_untrained_inside_paints_nothing_and_a_trained_one_paints_only_the_inner_lips():
    torch.manual_seed(0)
    plain = TalkingHeadModel(get_config("warp-tiny", num_videos=2, inside_channels=())).eval()
    torch.manual_seed(0)
    with_inside = TalkingHeadModel(get_config("warp-tiny", num_videos=2)).eval()
    missing, unexpected = with_inside.load_state_dict(plain.state_dict(), strict=False)
    assert all(k.startswith("generator.inside.") for k in missing) and not unexpected
    shots = torch.rand(1, 2, 3, 64, 64) * 2 - 1
    shot_pts = _open_mouth(2)[None]
    shot_pts[..., 60:68, 1] = shot_pts[..., 60:68, 1].mean()  # the shots' mouths are shut
    target = _open_mouth(3)
    y = torch.rand(3, 3, 64, 64) * 2 - 1
    e_hat = torch.randn(1, plain.config.embed_dim)
    with torch.no_grad():
        outs = [m.generator.generate(y, target, m.generator.identity_state(e_hat, shots, shot_pts))
                for m in (plain, with_inside)]
        assert torch.equal(outs[0]["fake"], outs[1]["fake"]) and "inside" not in outs[1]
        with_inside.generator.inside.trained.fill_(1.0)
        painted = with_inside.generator.generate(y, target, with_inside.generator.identity_state(e_hat, shots, shot_pts))
    alpha = painted["inside"]
    assert "cavity" not in painted and alpha.shape == (3, 1, 64, 64) and alpha.max() > 0.9
    changed = (painted["fake"] - outs[0]["fake"]).abs().amax(dim=1, keepdim=True) > 1e-6
    assert changed.any() and not (changed & (alpha == 0)).any()
    # where the shot is as open as the target, it paints nothing
    same = with_inside.generator.generate(y, target, with_inside.generator.identity_state(
        e_hat, shots, target[:2][None]))
    assert torch.equal(same["inside"], torch.zeros_like(same["inside"]))


def test_the_inside_learns_from_the_first_step_and_its_alpha_is_inside_the_polygon():
    torch.manual_seed(0)
    net = MouthInside((8, 16), 32)
    real = torch.rand(2, 3, 32, 32) * 2 - 1
    q = _open_mouth(2, 32) * 0.5 + 8
    fake, rgb, a = net.paint(real, q)
    assert fake.shape == rgb.shape == (2, 3, 32, 32) and a.shape == (2, 1, 32, 32)
    assert torch.equal(fake * (a == 0), real * (a == 0))  # nothing outside the polygon changes
    (((fake - real) * a).abs().mean()).backward()
    assert net.head.weight.grad.abs().sum() > 0 and net.input[0].weight.grad.abs().sum() > 0
    assert frame_alpha(_open_mouth(1), 64)[0, 0, :30].max() == 0  # nothing above the mouth


def test_meta_learning_and_fine_tuning_leave_the_inside_frozen():
    from talkinghead.training import FineTuneTask, MetaLearningTask

    model = TalkingHeadModel(get_config("warp-tiny", num_videos=2))
    inside = {id(p) for p in model.generator.inside.parameters()}
    for task in (MetaLearningTask(model), FineTuneTask(model, torch.zeros(model.config.embed_dim))):
        params = {id(p) for p in task.g_parameters()}
        assert params and not params & inside


def test_the_inside_stage_trains_the_inside_only_resumes_and_exports_the_whole_model(tiny_cache, tmp_path,
                                                                                    monkeypatch):
    """`train --stage inside`: boxes of the cache's real frames, the shared trainer on them, the inside alone
    trained and marked trained, the rest exactly as it started; resumable; exported whole and loadable."""
    from talkinghead import inside_training
    from talkinghead.hub import load_pretrained

    monkeypatch.setattr(inside_training, "CLOSED_SHARE", 1.0)  # the astronaut's mouth is shut: keep those boxes
    base = dict(data=str(tiny_cache), batch=2, k=2, device="cpu", content="stlpips", sample_every=2,
                checkpoint_every=100, log_every=1, progress=False)
    train(TrainOptions(config="warp-tiny", run_dir=str(tmp_path / "meta"), steps=1, **base))
    run = tmp_path / "inside"
    opts = TrainOptions(stage="inside", config="warp-tiny", init_from=str(tmp_path / "meta" / "model"),
                        run_dir=str(run), steps=2, **base)
    train(opts)
    record = json.loads((run / "training_options.json").read_text())
    assert record["stage"] == "inside" and record["inside_crops"] == 30
    assert record["stage_loss_weights"]["inside_pixel"] > 0
    rows = (run / "log.csv").read_text().splitlines()
    assert len(rows) == 3 and "g_inside_pixel" in rows[0]
    meta = load_pretrained(tmp_path / "meta" / "model")
    out = load_pretrained(run / "model")
    before, after = meta.state_dict(), out.state_dict()
    for k, v in after.items():
        if k.startswith("generator.inside.") or k == "discriminator.W.weight":
            continue
        assert torch.equal(before[k], v), k
    assert out.generator.inside.is_trained and not meta.generator.inside.is_trained
    # fine-tuning reads the model's loss weights: still the meta-learning's, the stage's beside them
    assert out.training_info["loss_weights"] == meta.training_info["loss_weights"]
    assert out.training_info["stage"] == "inside" and out.training_info["stage_loss_weights"]["inside_pixel"] > 0
    assert not torch.equal(before["generator.inside.head.weight"], after["generator.inside.head.weight"])
    train(TrainOptions(**{**opts.to_dict(), "steps": 3, "betas": tuple(opts.betas)}), resume=True)
    assert len((run / "log.csv").read_text().splitlines()) == 4


def test_the_inside_stage_holds_clips_out_and_logs_their_numbers(tmp_path, astronaut, monkeypatch):
    from talkinghead import inside_training

    monkeypatch.setattr(inside_training, "CLOSED_SHARE", 1.0)
    cache = build_tiny_cache(tmp_path / "cache", astronaut, videos=4, frames=4, size=64)  # clip 3 is held out
    base = dict(data=str(cache), batch=2, k=2, device="cpu", content="none", progress=False, log_every=1)
    train(TrainOptions(config="warp-tiny", run_dir=str(tmp_path / "meta"), steps=1, sample_every=0, **base))
    train(TrainOptions(stage="inside", config="warp-tiny", init_from=str(tmp_path / "meta" / "model"),
                       run_dir=str(tmp_path / "in"), steps=2, sample_every=2, **base))
    record = json.loads((tmp_path / "in" / "training_options.json").read_text())
    assert record["inside_crops"] == 12 and record["inside_val_crops"] == 4
    log = (tmp_path / "in" / "log.csv").read_text()
    assert "val_lpips" in log.splitlines()[0] and "val_flat_lpips" in log


def test_the_inside_stage_refuses_a_config_without_an_inside_before_any_work(tiny_cache, tmp_path, capsys):
    from talkinghead.cli import main

    train(TrainOptions(config="warp-tiny", data=str(tiny_cache), run_dir=str(tmp_path / "meta"), steps=1, batch=2,
                       k=2, device="cpu", content="none", progress=False, sample_every=0))
    common = ["--data", str(tiny_cache), "--steps", "1", "--batch", "2", "--content", "none", "--no-progress",
              "--device", "cpu", "--sample-every", "0"]
    for extra, says in ((["--config", "tiny", "--init-from", str(tmp_path / "meta" / "model")], "inside"),
                        (["--config", "warp-tiny"], "--init-from")):
        out = tmp_path / f"run{len(extra)}{says[0]}"
        assert main(["train", "--stage", "inside", "-o", str(out), *extra, *common]) == 2
        err = capsys.readouterr().err
        assert says in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
        assert not (out / "inside-crops.npz").exists()  # refused before the boxes are cut
