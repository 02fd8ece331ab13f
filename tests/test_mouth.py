"""The warp family's mouth refiner (models/mouth.py) and its training stage (mouth_training.py)."""
from __future__ import annotations

import json

import pytest
import torch

from talkinghead.config import get_config
from talkinghead.models import TalkingHeadModel
from talkinghead.models.mouth import box_window, crop_box, mouth_theta, paste_box
from talkinghead.training import TrainOptions, train

from test_data import build_tiny_cache


@pytest.fixture(scope="module")
def tiny_cache(tmp_path_factory, astronaut):
    return build_tiny_cache(tmp_path_factory.mktemp("cache"), astronaut, videos=3, frames=10, size=64)


def test_crop_and_paste_are_inverse_inside_the_box():
    img = torch.rand(2, 3, 64, 64) * 2 - 1
    pts = torch.zeros(2, 68, 2)
    pts[:, 48:68] = torch.tensor([[24.0, 40.0], [40.0, 48.0]]).repeat(10, 1)
    pts[:, 48], pts[:, 54] = torch.tensor([24.0, 40.0]), torch.tensor([40.0, 48.0])
    theta = mouth_theta(pts, 64, pad=0.25)
    crop = crop_box(img, theta, 32)
    back = paste_box(crop, theta, 64)
    # the box is 24..40 padded by 4: pixels well inside it come back (bilinear twice: a small blur)
    assert (back[:, :, 30:36, 30:36] - img[:, :, 30:36, 30:36]).abs().mean() < 0.35
    assert back[:, :, :10].abs().max() == 0 and back[:, :, :, 55:].abs().max() == 0  # nothing outside
    w = box_window(32)
    assert w[0, 0, 16, 16] == 1 and w[0, 0, 0, 0] < 0.01 and w.shape == (1, 1, 32, 32)


def test_an_untrained_refiner_changes_nothing_and_learns_from_the_first_step(astronaut):
    torch.manual_seed(0)
    plain = TalkingHeadModel(get_config("warp-tiny", num_videos=3)).eval()
    torch.manual_seed(0)
    with_mouth = TalkingHeadModel(get_config("warp-mouth-tiny", num_videos=3)).eval()
    missing, unexpected = with_mouth.load_state_dict(plain.state_dict(), strict=False)
    assert all(k.startswith("generator.mouth.") for k in missing) and not unexpected
    shots = torch.rand(1, 2, 3, 64, 64) * 2 - 1
    pts = torch.rand(1, 2, 68, 2) * 20 + 22
    target = torch.rand(3, 68, 2) * 20 + 22
    y = torch.rand(3, 3, 64, 64) * 2 - 1
    e_hat = torch.randn(1, plain.config.embed_dim)
    outs = []
    for m in (plain, with_mouth):
        G = m.generator
        outs.append(G.generate(y, target, G.identity_state(e_hat, shots, pts)))
    assert torch.equal(outs[0]["fake"], outs[1]["fake"])
    assert outs[1]["mouth_delta"].shape == (3, 3, 64, 64) and torch.equal(outs[1]["unrefined"], outs[1]["fake"])
    # the head is zero, yet its gradient is not: it moves at the first step
    G = with_mouth.generator.train()
    out = G.generate(y, target, G.identity_state(e_hat, shots, pts))
    out["fake"].square().mean().backward()
    assert G.mouth.head.weight.grad.abs().sum() > 0
    assert torch.isfinite(G.mouth.projection.weight.grad).all()


def test_the_mouth_stage_trains_the_refiner_only_resumes_and_exports_the_whole_model(tiny_cache, tmp_path):
    """`train --stage mouth`: crops of the frozen model, the shared trainer on them, the refiner alone
    trained, the rest of the model exactly as it started; resumable; exported whole and loadable."""
    from talkinghead.hub import load_pretrained

    base = dict(data=str(tiny_cache), batch=2, k=2, device="cpu", content="stlpips", sample_every=2,
                checkpoint_every=100, log_every=1, progress=False)
    train(TrainOptions(config="warp-tiny", run_dir=str(tmp_path / "meta"), steps=1, **base))
    run = tmp_path / "mouth"
    opts = TrainOptions(stage="mouth", config="warp-mouth-tiny", init_from=str(tmp_path / "meta" / "model"),
                        run_dir=str(run), steps=2, mouth_crops=6, loss_weights={"pixel": 10.0}, **base)
    trainer = train(opts)
    assert len(list((run / "mouth-crops").glob("chunk-*.npz"))) == 1
    record = json.loads((run / "training_options.json").read_text())
    assert record["stage"] == "mouth" and record["mouth_crops"] == 6
    rows = (run / "log.csv").read_text().splitlines()
    assert len(rows) == 3 and "g_unrefined_pixel" in rows[0] and "g_pixel" in rows[0]
    meta = load_pretrained(tmp_path / "meta" / "model")
    out = load_pretrained(run / "model")
    assert isinstance(out.generator.mouth, torch.nn.Module)
    before, after = meta.state_dict(), out.state_dict()
    for k, v in after.items():
        if k.startswith("generator.mouth."):
            continue
        if k == "discriminator.W.weight":
            continue
        assert torch.equal(before[k], v), k
    assert out.generator.mouth.head.weight.abs().sum() > 0  # trained: the head left 0
    # resume to 3 steps: the crops are kept, the step counts on
    train(TrainOptions(**{**opts.to_dict(), "steps": 3, "betas": tuple(opts.betas)}), resume=True)
    assert len((run / "log.csv").read_text().splitlines()) == 4


def test_the_mouth_stage_refuses_a_config_without_a_refiner_before_any_work(tiny_cache, tmp_path):
    from talkinghead.errors import InputError

    base = dict(data=str(tiny_cache), batch=2, k=2, device="cpu", content="none", progress=False, sample_every=0)
    train(TrainOptions(config="warp-tiny", run_dir=str(tmp_path / "meta"), steps=1, **base))
    with pytest.raises(InputError, match="mouth refiner"):
        train(TrainOptions(stage="mouth", config="warp-tiny", init_from=str(tmp_path / "meta" / "model"),
                           run_dir=str(tmp_path / "m"), steps=1, **base))
    assert not (tmp_path / "m" / "mouth-crops").exists()
    with pytest.raises(InputError, match="--init-from"):
        train(TrainOptions(stage="mouth", config="warp-mouth-tiny", run_dir=str(tmp_path / "n"), steps=1, **base))


def test_the_cli_runs_the_mouth_stage_with_its_config_by_default(tiny_cache, tmp_path, capsys):
    from talkinghead.cli import main

    train(TrainOptions(config="warp-tiny", data=str(tiny_cache), run_dir=str(tmp_path / "meta"), steps=1, batch=2, k=2,
                       device="cpu", content="none", progress=False, sample_every=0))
    args = ["train", "--stage", "mouth", "--init-from", str(tmp_path / "meta" / "model"), "--data", str(tiny_cache),
            "-o", str(tmp_path / "m"), "--steps", "1", "--k", "2", "--batch", "2", "--content", "none",
            "--mouth-crops", "4", "--no-progress", "--device", "cpu", "--sample-every", "0"]
    # without --config the stage takes warp-mouth-256, which the 64-px tiny model does not fit: one line
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "do not fit" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert main(args[:-2] + ["--config", "warp-mouth-tiny", "--sample-every", "0"]) == 0
    assert json.loads((tmp_path / "m" / "training_options.json").read_text())["stage"] == "mouth"
