"""training.fine_tune: the personalisation loop on its own (TalkingHead.personalize only prepares photos)."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from talkinghead.config import get_config
from talkinghead.models import TalkingHeadModel
from talkinghead.tensors import to_tensor
from talkinghead.training import fine_tune


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    model = TalkingHeadModel(get_config("tiny", num_videos=2)).eval()
    rng = np.random.default_rng(0)
    frames = to_tensor(rng.integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)).contiguous()
    marks = to_tensor(rng.integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)).contiguous()
    with torch.no_grad():
        _, e_hat = model.embedder(frames[None], marks[None])
    return model, frames, marks, e_hat[0]


def test_returns_generator_psi_and_record_and_leaves_the_model(setup):
    model, frames, marks, e_hat = setup
    before = {k: v.clone() for k, v in model.state_dict().items()}
    seen = []
    generator, psi, info = fine_tune(model, frames, marks, e_hat, 2, torch.device("cpu"), lr=2e-4,
                                     content="none", progress=False,
                                     callback=lambda step, terms, snap: seen.append((step, snap())))
    assert psi.shape == (model.generator.n_psi,) and torch.isfinite(psi).all() and not generator.training
    assert info["fine_tune_steps"] == 2 and info["asked_steps"] == 2 and info["device"] == "cpu"
    assert "photos" not in info  # the pipeline adds the photos' names
    assert [s for s, _ in seen] == [1, 2]
    g1, psi1 = seen[-1][1]  # without make_snapshot, a snapshot is (generator, psi) copies
    assert g1 is not generator and torch.equal(psi1, psi)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_make_snapshot_builds_what_the_callback_gets(setup):
    model, frames, marks, e_hat = setup
    got = []
    fine_tune(model, frames, marks, e_hat, 1, torch.device("cpu"), lr=2e-4, content="none", progress=False,
              make_snapshot=lambda g, psi: ("avatar", psi.shape),
              callback=lambda step, terms, snap: got.append(snap()))
    assert got == [("avatar", (model.generator.n_psi,))]


def test_shapes_are_checked(setup):
    model, frames, marks, e_hat = setup
    with pytest.raises(ValueError, match=r"\(K, 3, S, S\)"):
        fine_tune(model, frames, marks[:1], e_hat, 1, torch.device("cpu"), lr=2e-4, content="none")


def test_training_does_not_import_the_pipeline():
    code = "import sys, talkinghead.training; assert 'talkinghead.pipeline' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
