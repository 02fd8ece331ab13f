"""The shipped model: loads from pretrained/ by name, offline, and the demo writes a marked video."""
import json

import torch

from talkinghead.cli import main
from talkinghead.hub import repo_pretrained_dir


def test_default_model_is_shipped_small_and_complete():
    from talkinghead.models import TalkingHeadModel

    folder = repo_pretrained_dir() / "default"
    size = sum(f.stat().st_size for f in folder.iterdir())
    assert size < 60e6
    meta = json.loads((folder / "config.json").read_text())
    assert meta["int8_prefixes"] == ["discriminator."]
    model = TalkingHeadModel.from_pretrained("default")
    # the discriminator (needed to fine-tune) comes with one W row per training video
    assert model.discriminator.W.weight.shape[0] == meta["config"]["num_videos"] > 1
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_demo_writes_a_marked_video_offline(tmp_path, monkeypatch, capsys):
    from talkinghead.io import VideoReader
    from talkinghead.watermark import verify_file

    monkeypatch.setenv("TALKINGHEAD_OFFLINE", "1")
    out = tmp_path / "demo.mp4"
    assert main(["demo", "-o", str(out), "--seconds", "0.4", "--device", "cpu"]) == 0
    with VideoReader(out) as r:
        frames = list(r)
    assert len(frames) == 10 and frames[0].shape == (512, 512, 3)
    res = verify_file(out)
    assert res.marked and res.watermark.model == "default"
