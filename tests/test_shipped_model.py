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
    assert meta["family"] == model.config.generator == "warp"  # the default that measured best (model card)
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
    # the astronaut stays herself while she talks: dlib's identity distance to the photo (same person < 0.6)
    import numpy as np
    from skimage import data

    from talkinghead.metrics import face_descriptor

    ref = face_descriptor(data.astronaut())
    dists = [float(np.linalg.norm(face_descriptor(f) - ref)) for f in frames[::3]]
    assert max(dists) < 0.6, dists


def test_shipped_embedder_tells_two_people_apart(astronaut, grace_hopper):
    """Guards against the collapse of the first shipped model, whose e_hat was 0 for every face."""
    import talkinghead as th
    from talkinghead import pipeline

    model = th.load("default", device="cpu")
    src_a, src_b = (pipeline.prepare_sources([img], model.image_size) for img in (astronaut, grace_hopper))
    with torch.no_grad():
        a, b = model.embed(src_a), model.embed(src_b)
        assert a.norm() > 1 and b.norm() > 1
        assert (a - b).norm() > 0.03 * a.norm()  # measured 0.106 for the model shipped at step 1001
        # the same landmarks rendered for two people (each with their own photo where the family warps
        # it) give visibly different frames
        _, y = src_a[0].crop_and_landmark_image(model.image_size)
        from talkinghead.landmarks import transform_landmarks

        points = torch.from_numpy(transform_landmarks(src_a[0].landmarks, src_a[0].crop))[None].float()
        G = model.model.generator
        frames = []
        for src, e_hat in ((src_a, a), (src_b, b)):
            shots = pipeline.shot_state(src, model.image_size)
            state = G.identity_state(e_hat[None], shots["shots"][None], shots["shot_points"][None])
            frames.append(G.generate(pipeline.to_tensor(y)[None], points, state)["fake"][0])
    assert (frames[0] - frames[1]).abs().mean() > 0.05


def test_shipped_discriminator_rows_match_the_training_clips_wherever_they_are(data_dir):
    """D's table has one row per training clip; `train --init-from default` finds each clip's row by its
    content-based id, so a copy of shared/data on another machine must give the same ids."""
    from talkinghead.data import expand_videos, video_id_for

    config = json.loads((repo_pretrained_dir() / "default" / "config.json").read_text())
    ids = {video_id_for(p) for p in expand_videos([data_dir / "train"])}
    assert set(config["training"]["videos"]) == ids
