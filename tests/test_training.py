"""The trainer: a two-step tiny run, exact resume, interruption, fine-tuning task, two-process gloo."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from talkinghead.training import (CHECKPOINT, FineTuneTask, Trainer, TrainOptions, build_loss, load_checkpoint,
                                  train)

from test_data import build_tiny_cache

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def tiny_cache(tmp_path_factory, astronaut):
    return build_tiny_cache(tmp_path_factory.mktemp("cache"), astronaut, videos=3, frames=10, size=64)


def _opts(cache, run_dir, steps, **kw):
    base = dict(config="tiny", data=str(cache), run_dir=str(run_dir), steps=steps, batch=2, k=2, device="cpu",
                content="stlpips", sample_every=2, checkpoint_every=100, log_every=1, progress=False)
    base.update(kw)
    return TrainOptions(**base)


def _flat(state: dict, prefix: str = "") -> dict:
    """All tensors (and numbers) of a nested checkpoint, keyed by path."""
    out = {}
    items = state.items() if isinstance(state, dict) else enumerate(state)
    for k, v in items:
        key = f"{prefix}{k}"
        if isinstance(v, (dict, list, tuple)):
            out.update(_flat(v, key + "."))
        elif torch.is_tensor(v) or isinstance(v, (int, float)):
            out[key] = v
    return out


def _assert_same_state(a: dict, b: dict):
    fa, fb = _flat({k: a[k] for k in ("task", "ema", "opt_g", "opt_d", "step", "items_consumed")}), \
        _flat({k: b[k] for k in ("task", "ema", "opt_g", "opt_d", "step", "items_consumed")})
    assert fa.keys() == fb.keys()
    for k in fa:
        if torch.is_tensor(fa[k]):
            assert torch.equal(fa[k], fb[k]), k
        else:
            assert fa[k] == fb[k], k


def test_two_step_tiny_run_writes_everything(tiny_cache, tmp_path):
    from talkinghead.models import TalkingHeadModel

    run = tmp_path / "run"
    trainer = train(_opts(tiny_cache, run, 2))
    assert trainer.step == 2 and trainer.items_consumed == 4
    record = json.loads((run / "training_options.json").read_text())
    assert record["content_backbones"] == ["st-lpips-vgg16"] and record["model_config"]["num_videos"] == 3
    assert record["options"]["lr_g"] == 5e-5 and record["options"]["lr_d"] == 2e-4
    log = (run / "log.csv").read_text().splitlines()
    assert len(log) == 3 and "g_content_st-lpips-vgg16" in log[0] and "d_total" in log[0]
    assert (run / "samples" / "step-0000002.png").is_file()
    state = load_checkpoint(run / CHECKPOINT)
    assert state["step"] == 2
    model = TalkingHeadModel.from_pretrained(run / "model")
    assert model.discriminator.W.weight.shape == (3, model.config.embed_dim)
    ema = state["ema"]
    for name, p in model.generator.state_dict().items():  # exported G is the EMA copy
        assert torch.equal(p, ema[name]), name
    for name, p in model.discriminator.state_dict().items():
        assert torch.equal(p, state["task"][f"model.discriminator.{name}"]), name


def test_init_from_a_trained_model_keeps_its_weights_and_its_videos_rows(tiny_cache, tmp_path, astronaut):
    """--init-from: E, G, D start as exported (D's rows matched by video id, a new video's row at its
    e_hat), the record says where the run started, and the run's own export is loadable."""
    import shutil

    from talkinghead.models import create_model
    from talkinghead.errors import InputError
    from talkinghead.models import TalkingHeadModel
    from talkinghead.training import init_from_pretrained
    from talkinghead.data import EpisodeDataset, write_entry
    from test_data import astronaut_landmarks, moving_frames, square_crop

    train(_opts(tiny_cache, tmp_path / "a", 2))
    first = TalkingHeadModel.from_pretrained(tmp_path / "a" / "model")
    assert first.training_info["steps"] == 2 and first.training_info["videos"] == ["astronaut0", "astronaut1", "astronaut2"]
    # the new cache: astronaut2 (trained), astronaut1 (trained), astronaut9 (new)
    cache = tmp_path / "cache2"
    cache.mkdir()
    shutil.copy(tiny_cache / "astronaut2.npz", cache / "astronaut2.npz")
    shutil.copy(tiny_cache / "astronaut1.npz", cache / "astronaut1.npz")
    lm = astronaut_landmarks(astronaut)
    crops, lms = zip(*(square_crop(f, l, 64) for f, l in moving_frames(astronaut, lm, 10, seed=9)))
    write_entry(cache / "astronaut9.npz", list(crops), np.stack(lms), meta={"video": "astronaut9", "identity": "collins"})
    ds = EpisodeDataset(cache, k=2, augment=False)
    assert ds.videos == ["astronaut1", "astronaut2", "astronaut9"]
    model = init_from_pretrained(str(tmp_path / "a" / "model"), ds)
    assert model.video_rows == {0: 1, 1: 2}
    for name, p in first.generator.state_dict().items():
        assert torch.equal(p, model.generator.state_dict()[name]), name

    trainer = train(_opts(cache, tmp_path / "b", 1, init_from=str(tmp_path / "a" / "model"), sample_every=0))
    record = json.loads((tmp_path / "b" / "training_options.json").read_text())
    assert record["init_from"]["steps"] == 2 and record["init_from"]["model"].endswith("model")
    second = TalkingHeadModel.from_pretrained(tmp_path / "b" / "model")
    assert second.training_info["init_from"] == record["init_from"] and second.training_info["steps"] == 1
    assert trainer.step == 1
    # one step moved the weights a little, not from scratch: far nearer the start than a fresh model is
    fresh = create_model("tiny", num_videos=3).generator.state_dict()
    start, after = first.generator.state_dict(), second.generator.state_dict()
    convs = [k for k, v in start.items() if v.ndim == 4]
    moved = sum(float((after[k] - start[k]).norm()) for k in convs)
    assert 0 < moved < 0.1 * sum(float((fresh[k] - start[k]).norm()) for k in convs)

    with pytest.raises(InputError, match="--init-from"):
        init_from_pretrained(str(tmp_path / "nothing-here"), ds)


def test_resume_is_bit_exact(tiny_cache, tmp_path):
    # sample grids at different steps must not change training either
    train(_opts(tiny_cache, tmp_path / "full", 4, d_steps=2, sample_every=1))
    train(_opts(tiny_cache, tmp_path / "split", 2, d_steps=2))
    train(_opts(tiny_cache, tmp_path / "split", 4, d_steps=2), resume=True)
    a, b = load_checkpoint(tmp_path / "full" / CHECKPOINT), load_checkpoint(tmp_path / "split" / CHECKPOINT)
    _assert_same_state(a, b)
    assert (tmp_path / "full" / "log.csv").read_text().count("\n") == (tmp_path / "split" / "log.csv").read_text().count("\n")
    # the record keeps each start: where it began and how (the top level says only the latest)
    segments = json.loads((tmp_path / "split" / "training_options.json").read_text())["segments"]
    assert [s["from_step"] for s in segments] == [0, 2] and all(s["amp"] == "off" for s in segments)
    assert json.loads((tmp_path / "full" / "training_options.json").read_text())["segments"][0]["from_step"] == 0


def _interrupt_after_first_step(monkeypatch):
    """Ctrl-C as if pressed during step 2's data wait; returns the real ``train_step``."""
    import talkinghead.training as tr

    original = tr.Trainer.train_step

    def step_then_interrupt(self, batches):
        out = original(self, batches)
        if self.step == 1:
            os.kill(os.getpid(), signal.SIGINT)
        return out

    monkeypatch.setattr(tr.Trainer, "train_step", step_then_interrupt)
    return original


def test_ctrl_c_checkpoints_at_a_step_boundary_and_resumes_exactly(tiny_cache, tmp_path, monkeypatch):
    import talkinghead.training as tr

    original = _interrupt_after_first_step(monkeypatch)
    t = train(_opts(tiny_cache, tmp_path / "cut", 3))
    assert t.step == 1 and load_checkpoint(tmp_path / "cut" / CHECKPOINT)["step"] == 1
    # stopped, not finished: a checkpoint to resume from and no exported model
    assert t.stopped_by == signal.SIGINT and not (tmp_path / "cut" / "model").exists()
    monkeypatch.setattr(tr.Trainer, "train_step", original)
    train(_opts(tiny_cache, tmp_path / "cut", 3), resume=True)
    train(_opts(tiny_cache, tmp_path / "full", 3))
    _assert_same_state(load_checkpoint(tmp_path / "cut" / CHECKPOINT), load_checkpoint(tmp_path / "full" / CHECKPOINT))


def test_finetune_task_reuses_the_trainer(tiny_cache):
    from talkinghead.models import create_model
    from talkinghead.data import EpisodeDataset

    torch.manual_seed(0)
    model = create_model("tiny", num_videos=3)
    ds = EpisodeDataset(tiny_cache, k=0, augment=False)
    photos = torch.stack([ds[(0, (i,))]["frames"][0] for i in range(4)])[None]  # (1, T, 3, S, S)
    lmi = torch.stack([ds[(0, (i,))]["landmarks"][0] for i in range(4)])[None]
    with torch.no_grad():
        _, e_hat = model.embedder(photos, lmi)
    task = FineTuneTask(model, e_hat[0])
    psi0, w0 = task.psi.detach().clone(), task.w.detach().clone()
    emb0 = {k: v.clone() for k, v in model.embedder.state_dict().items()}
    opts = TrainOptions(config="tiny", steps=2, batch=2, k=0, content="none", progress=False)
    trainer = Trainer(task, build_loss(opts, torch.device("cpu")), opts, torch.device("cpu"))
    batches = iter([{k: torch.stack([ds[(0, (i, j))][k] for j in range(2)]) for k in ("frames", "landmarks", "video_index")}
                    for i in range(4)])
    trainer.fit(batches, 2)
    assert trainer.step == 2
    assert not torch.equal(task.psi, psi0) and not torch.equal(task.w, w0)
    assert all(torch.equal(v, emb0[k]) for k, v in model.embedder.state_dict().items())


DDP_SCRIPT = """
import hashlib, os, sys, torch
from talkinghead.training import TrainOptions, train
opts = TrainOptions(config="tiny", data=sys.argv[1], run_dir=sys.argv[2], steps=2, batch=1, k=2, device="cpu",
                    content="none", sample_every=1, checkpoint_every=0, progress=False)
t = train(opts)
h = hashlib.sha256()
for v in t.task.state_dict().values():
    h.update(v.detach().cpu().contiguous().numpy().tobytes())
with open(os.path.join(sys.argv[3], f"rank{os.environ['RANK']}.txt"), "w") as f:
    f.write(f"{h.hexdigest()} {t.items_consumed}")
"""


@pytest.mark.slow
def test_two_process_gloo_ranks_agree(tiny_cache, tmp_path):
    script = tmp_path / "ddp_run.py"
    script.write_text(DDP_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
                           str(script), str(tiny_cache), str(tmp_path / "run"), str(tmp_path)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = ((tmp_path / f"rank{r}.txt").read_text().split() for r in (0, 1))
    assert r0 == r1  # same weights on both ranks after two steps
    assert (tmp_path / "run" / CHECKPOINT).is_file() and (tmp_path / "run" / "model").is_dir()
    assert not list(tmp_path.glob("run/*rank1*"))


def test_embedding_table_starts_at_the_embedder_and_e_hat_survives(tiny_cache, tmp_path):
    """W_i = e_hat_i and w0 = -mean at step 0; the embedder's output does not collapse to 0 in training
    (the shipped model's first run lost it within 10 steps when W started near 0)."""
    import csv

    from talkinghead.models import create_model
    from talkinghead.data import EpisodeDataset
    from talkinghead.training import init_embedding_table

    torch.manual_seed(0)
    ds = EpisodeDataset(tiny_cache, k=2, augment=False)
    model = create_model("tiny", num_videos=len(ds))
    init_embedding_table(model, ds, torch.device("cpu"))
    ep = ds[(1, (0,))]
    model.embedder.eval()
    with torch.no_grad():
        _, e_hat = model.embedder(ep["frames"][None, :-1], ep["landmarks"][None, :-1])
    torch.testing.assert_close(model.discriminator.W.weight[1], e_hat[0])
    torch.testing.assert_close(model.discriminator.w0, -model.discriminator.W.weight.mean(0))
    assert float(e_hat.norm()) > 0

    train(_opts(tiny_cache, tmp_path / "run", 6, lr_g=1e-3))
    rows = list(csv.DictReader(open(tmp_path / "run" / "log.csv")))
    norms = [float(r["g_e_hat_norm"]) for r in rows]
    assert len(norms) == 6 and min(norms) > 0.3 * norms[0] > 0  # without the init: 11.05 -> 0.50 in 6 steps


@pytest.mark.parametrize("extra, message", [
    (["--resume", "--init-from", "default"], "give one of them"),
    (["--config", "tiny"], "--data CACHE is required"),
    (["--config", "tiny", "--data", "x", "--loss-weight", "sharpness=1"], "unknown loss weights"),
])
def test_train_cli_refuses_contradictory_options_in_one_sentence(tmp_path, capsys, extra, message):
    from talkinghead.cli import main

    assert main(["train", "-o", str(tmp_path / "run"), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_init_from_with_another_family_takes_the_embedder_and_discriminator(tiny_cache, tmp_path):
    """`train --init-from MODEL --config warp-tiny`: the warp architecture, E and D (with its rows) from
    the paper-family model, G at its start (the warp); a frozen E does not move."""
    from talkinghead.cli import main
    from talkinghead.models import TalkingHeadModel, WarpGenerator

    train(_opts(tiny_cache, tmp_path / "a", 1, sample_every=0))
    paper = TalkingHeadModel.from_pretrained(tmp_path / "a" / "model")
    with pytest.warns(UserWarning, match="the generator start"):
        trainer = train(_opts(tiny_cache, tmp_path / "b", 1, config="warp-tiny", init_from=str(tmp_path / "a" / "model"),
                              init_architecture="config", freeze_embedder=True, sample_every=0))
    assert isinstance(trainer.task.model.generator, WarpGenerator)
    record = json.loads((tmp_path / "b" / "training_options.json").read_text())
    assert record["init_from"]["parts"] == ["embedder", "discriminator"] and record["config_name"] == "warp-tiny"
    warp = TalkingHeadModel.from_pretrained(tmp_path / "b" / "model")
    for name, p in paper.embedder.state_dict().items():
        assert torch.equal(p, warp.embedder.state_dict()[name]), name
    # the CLI takes the same pair of options
    assert main(["train", "--init-from", str(tmp_path / "a" / "model"), "--config", "warp-tiny", "--data", str(tiny_cache),
                 "-o", str(tmp_path / "c"), "--steps", "1", "--k", "2", "--content", "none", "--no-progress",
                 "--device", "cpu", "--sample-every", "0"]) == 0
    assert json.loads((tmp_path / "c" / "training_options.json").read_text())["model_config"]["generator"] == "warp"


def test_train_cli_runs_the_recipe_it_is_given(tiny_cache, tmp_path):
    from talkinghead.cli import main

    run = tmp_path / "run"
    assert main(["train", "--config", "tiny", "--data", str(tiny_cache), "-o", str(run), "--steps", "1", "--k", "2",
                 "--content", "stlpips", "--loss-weight", "pixel=10", "--loss-weight", "content_stlpips=1.5",
                 "--no-progress", "--device", "cpu"]) == 0
    record = json.loads((run / "training_options.json").read_text())
    assert record["loss_weights"]["pixel"] == 10 and record["loss_weights"]["content_stlpips"] == 1.5
    assert "g_pixel" in (run / "log.csv").read_text().splitlines()[0]


def test_train_cli_exits_130_when_interrupted_and_says_how_to_resume(tiny_cache, tmp_path, monkeypatch, capsys):
    from talkinghead.cli import main

    _interrupt_after_first_step(monkeypatch)
    run = tmp_path / "run"
    code = main(["train", "--config", "tiny", "--data", str(tiny_cache), "-o", str(run), "--steps", "3", "--k", "2",
                 "--content", "stlpips", "--no-progress", "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 130 and "stopped at step 1 of 3" in err and "--resume" in err
    assert (run / CHECKPOINT).is_file() and not (run / "model").exists()


def _cli_train(cache, run, *extra):
    from talkinghead.cli import main

    return main(["train", "--config", "tiny", "--data", str(cache), "-o", str(run), "--k", "2", "--content", "stlpips",
                 "--no-progress", "--device", "cpu", *extra])


def test_resume_refuses_what_would_make_it_another_run(tiny_cache, tmp_path, astronaut, capsys, monkeypatch):
    from talkinghead.cli import main

    run = tmp_path / "run"
    assert _cli_train(tiny_cache, run, "--steps", "2") == 0
    record = (run / "training_options.json").read_text()
    other = build_tiny_cache(tmp_path / "other", astronaut, videos=2, frames=10, size=64)
    for extra, words in [(["--data", str(other)], "holds other clips"),
                         (["--config", "cpu-256"], "keeps its architecture"),
                         (["--steps", "1"], "already at step 2")]:
        assert main(["train", "-o", str(run), "--resume", "--no-progress", *extra]) == 2
        err = capsys.readouterr().err
        assert words in err and len(err.strip().splitlines()) == 1, err
        assert (run / "training_options.json").read_text() == record  # nothing was rewritten
    # the record holds the cache's absolute path: --resume works from another folder
    monkeypatch.chdir(tmp_path / "other")
    assert main(["train", "-o", str(run), "--resume", "--steps", "3", "--no-progress"]) == 0
    assert json.loads((run / "training_options.json").read_text())["options"]["data"] == str(Path(tiny_cache).resolve())


def test_resume_accepts_its_cache_after_preprocess_renamed_the_entries(tmp_path, astronaut):
    """Caches named by path-based ids are renamed by `preprocess` (the entries' meta keep the old id):
    a run recorded with the old ids resumes on them, and records the new ones."""
    cache = build_tiny_cache(tmp_path / "cache", astronaut, videos=2, frames=6, size=64)
    run = tmp_path / "run"
    assert _cli_train(cache, run, "--steps", "1") == 0
    for entry in sorted(cache.glob("*.npz")):
        entry.rename(entry.with_name(f"{entry.stem}-0123abcd.npz"))
    assert _cli_train(cache, run, "--steps", "2", "--resume") == 0
    record = json.loads((run / "training_options.json").read_text())
    assert record["videos"] == ["astronaut0-0123abcd", "astronaut1-0123abcd"]


def test_train_cli_bad_run_folders_are_one_line(tiny_cache, tmp_path, capsys):
    from talkinghead.cli import main

    afile = tmp_path / "afile"
    afile.write_text("x")
    assert _cli_train(tiny_cache, afile, "--steps", "1") == 2
    assert "is a file" in capsys.readouterr().err
    run = tmp_path / "run"
    run.mkdir()
    (run / "training_options.json").write_text("{not json")
    (run / CHECKPOINT).write_bytes(b"")
    assert main(["train", "-o", str(run), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "not a valid run record" in err and "Traceback" not in err


def test_train_refuses_k_longer_than_a_clip_and_a_run_folder_as_init(tiny_cache, tmp_path, capsys):
    from talkinghead.cli import main

    assert _cli_train(tiny_cache, tmp_path / "long_k", "--steps", "1", "--k", "10") == 2  # clips have 10 frames
    assert "needs 11 frames per clip" in capsys.readouterr().err
    assert not (tmp_path / "long_k" / "training_options.json").exists()
    run = tmp_path / "run"
    assert _cli_train(tiny_cache, run, "--steps", "1") == 0
    assert main(["train", "--init-from", str(run), "--data", str(tiny_cache), "-o", str(tmp_path / "more")]) == 2
    assert f"pass its exported model, {run / 'model'}" in capsys.readouterr().err
    assert main(["train", "--config", "tiny", "--data", str(tiny_cache), "-o", str(tmp_path / "b"), "--batch", "100000"]) == 2
    assert "<= 256" in capsys.readouterr().err


def test_reset_heads_starts_the_warp_heads_at_the_warp(tiny_cache, tmp_path, capsys):
    """`train --init-from WARP_MODEL --reset-heads`: the trunk from the model, the flow/mask/delta head and
    the scorer's last layer at zero; the paper family has no heads to reset (one line, before any step)."""
    from talkinghead.cli import main
    from talkinghead.models import TalkingHeadModel

    train(_opts(tiny_cache, tmp_path / "a", 2, config="warp-tiny", sample_every=0))
    trained = TalkingHeadModel.from_pretrained(tmp_path / "a" / "model")
    assert trained.generator.head.weight.abs().max() > 0
    trainer = train(_opts(tiny_cache, tmp_path / "b", 1, init_from=str(tmp_path / "a" / "model"), reset_heads=True,
                          lr_g=0.0, sample_every=0))
    g = trainer.task.model.generator
    assert g.head.weight.abs().max() == 0 and g.head.bias.abs().max() == 0 and g.scorer[-1].weight.abs().max() == 0
    # the trunk is kept (spectral norm's power iteration moves its normalised weight a little per step)
    assert torch.allclose(g.input.weight, trained.generator.input.weight, atol=1e-3)
    train(_opts(tiny_cache, tmp_path / "p", 1, sample_every=0))
    assert main(["train", "--init-from", str(tmp_path / "p" / "model"), "--reset-heads", "--data", str(tiny_cache),
                 "-o", str(tmp_path / "q"), "--steps", "1", "--k", "2", "--content", "none", "--no-progress",
                 "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "no output heads" in err and "Traceback" not in err
