"""Stage 2 of the warp family: the mouth refiner (models/mouth.py), trained after meta-learning.

The rest of the model is frozen, so its output in the mouth box is the same whenever an episode comes
round again. It is computed once per sample and kept as crops (``RUN/mouth-crops/chunk-*.npz``)::

    episode (K shots, or 1 in every other chunk, + target) -> the frozen generator
        -> the box about the target's lips (mouth_theta): crops of the unrefined fake, of the landmark
           image and of the real frame (M x M, uint8), and psi

and the shared :class:`talkinghead.training.Trainer` trains the refiner on them with the usual named
terms (content on the crops, pixel L1, adversarial, feature matching) against a projection
discriminator of its own on the crops, conditioned on the clip as the paper's D is. A step then costs
the refiner and the content backbone at M x M, not the embedder and generator at 256: on a 2-core CPU
about 20x more steps in an hour than training through the whole model.

The crops are made with the starting model; :func:`train_mouth` builds the missing ones when a run
starts or resumes (they are resumable by chunk), then trains, then exports the whole model with the
refiner in it.
"""
from __future__ import annotations

import dataclasses
import json
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .atomic import atomic_path, atomic_write_text
from .errors import InputError

__all__ = ["MouthCrops", "MouthTask", "PartTask", "build_mouth_crops", "mouth_discriminator_config", "train_mouth"]

CROPS = "mouth-crops"
CHUNK = 128  # samples per file: a resumed build redoes at most one chunk


def mouth_discriminator_config(cfg, num_videos: int, size: int | None = None):
    """The crops' projection discriminator: the embedder's trunk at ``size`` (default ``cfg.mouth_size``)
    with 4 down blocks."""
    from .config import ModelConfig

    return ModelConfig(image_size=size or cfg.mouth_size, embed_dim=256, embedder_channels=(32, 64, 128, 256),
                       discriminator_extra_blocks=0, attention_down=None, attention_up=None, num_videos=num_videos,
                       description="mouth-crop discriminator")


def shots_of_chunk(chunk: int, k: int) -> int:
    """Every other chunk is made from one shot of its episodes, the others from all K: one photo (a
    painting) is the library's main use, and there the mouth has no region shot to take (warp_regions)."""
    return 1 if chunk % 2 else k


def crop_discriminator(cfg, num_videos: int, size: int | None = None) -> nn.Module:
    """The crops' projection discriminator (at ``size``, default ``cfg.mouth_size``), its clip table drawn at
    N(0, 1/D).

    Why not the main D's near-0 table: that one is set from each clip's e_hat before the first step
    (training.init_embedding_table). Left near 0, every score is ~0 and so is the trunk's gradient
    (it is scaled by the table): in a first run D's hinge loss sat at 2.000 for 200 steps."""
    from .models.discriminator import ProjectionDiscriminator

    D = ProjectionDiscriminator(mouth_discriminator_config(cfg, num_videos, size))
    with torch.no_grad():
        D.W.weight.normal_(0, D.config.embed_dim ** -0.5)
    return D


@torch.no_grad()
def build_mouth_crops(model: nn.Module, episodes, out_dir: str | Path, samples: int, seed: int = 0,
                      device: torch.device | str = "cpu", batch: int = 4, progress: bool = True) -> Path:
    """Write ``samples`` crops of ``episodes`` (an :class:`talkinghead.data.EpisodeDataset`) through the
    frozen ``model`` into ``out_dir`` in chunks of :data:`CHUNK`; chunks already there are kept. Sample
    ``n`` is the episode :class:`talkinghead.data.EpisodeSampler` gives for item ``n`` (seed ``seed``), so
    a build cut short and resumed makes the same set. Odd chunks use the episode's first shot alone
    (:func:`shots_of_chunk`)."""
    from tqdm import tqdm

    from .data import EpisodeSampler
    from .models.mouth import crop_box, mouth_theta
    from .tensors import to_uint8

    G = model.generator
    if getattr(G, "mouth", None) is None:
        raise InputError("the mouth stage needs a warp-family config with a mouth refiner (mouth_channels), "
                         "such as warp-mouth-256")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sampler = EpisodeSampler(len(episodes), seed=seed)
    m = G.config.mouth_size
    chunks = -(-samples // CHUNK)
    todo = [c for c in range(chunks) if not (out_dir / f"chunk-{c:04d}.npz").is_file()]
    bar = tqdm(total=samples, initial=samples - sum(min(CHUNK, samples - c * CHUNK) for c in todo),
               desc="mouth crops", unit="crop", disable=not progress)
    was = model.training
    model.eval()
    try:
        for c in todo:
            keys = [sampler.key(n) for n in range(c * CHUNK, min(samples, (c + 1) * CHUNK))]
            rows = {"crop": [], "y": [], "real": [], "psi": [], "video_index": []}
            for a in range(0, len(keys), batch):
                eps = [episodes[k] for k in keys[a:a + batch]]
                x = torch.stack([e["frames"] for e in eps]).to(device)
                y = torch.stack([e["landmarks"] for e in eps]).to(device)
                p = torch.stack([e["points"] for e in eps]).to(device)
                k = shots_of_chunk(c, x.shape[1] - 1)
                _, e_hat = model.embedder(x[:, :k], y[:, :k])
                state = G.identity_state(e_hat, x[:, :k], p[:, :k])
                out = G.generate(y[:, -1], p[:, -1], state)
                theta = mouth_theta(p[:, -1], G.config.image_size)
                for name, img in (("crop", out["unrefined"]), ("y", y[:, -1]), ("real", x[:, -1])):
                    rows[name].append(to_uint8(crop_box(img.float(), theta, m)))  # (B, M, M, 3)
                rows["psi"].append(state["psi"].half().cpu().numpy())
                rows["video_index"].append(np.array([int(e["video_index"]) for e in eps], np.int64))
                bar.update(len(eps))
            arrays = {k: np.concatenate(v) for k, v in rows.items()}
            with atomic_path(out_dir / f"chunk-{c:04d}.npz") as tmp, open(tmp, "wb") as fh:
                np.savez(fh, **arrays)
    finally:
        bar.close()
        model.train(was)
    return out_dir


class MouthCrops:
    """The crops of :func:`build_mouth_crops` as a map-style dataset for the trainer's loader.

    ``dataset[(i, seed)]`` (what :class:`talkinghead.data.EpisodeSampler` yields over ``len`` items) or
    ``dataset[i]``: ``crop``, ``y``, ``real`` float32 ``(3, M, M)`` in [-1, 1], ``psi`` float32
    ``(n_psi,)`` and ``video_index``; with ``augment``, all three mirrored together half the time.
    """

    def __init__(self, folder: str | Path, augment: bool = True):
        files = sorted(Path(folder).glob("chunk-*.npz"))
        if not files:
            raise InputError(f"no mouth crops in {folder}: the mouth stage builds them when it starts")
        parts = [dict(np.load(f)) for f in files]
        self.arrays = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        self.augment = augment

    def __len__(self) -> int:
        return len(self.arrays["video_index"])

    def __getitem__(self, key) -> dict:
        i, seed = (int(key[0]), key[1]) if isinstance(key, (tuple, list)) else (int(key), (int(key),))
        flip = self.augment and np.random.default_rng(list(seed)).random() < 0.5

        def image(name):
            a = self.arrays[name][i]
            a = a[:, ::-1] if flip else a
            return torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1).float().div_(127.5).sub_(1.0)

        return {"crop": image("crop"), "y": image("y"), "real": image("real"),
                "psi": torch.from_numpy(self.arrays["psi"][i].astype(np.float32)),
                "video_index": torch.tensor(int(self.arrays["video_index"][i]))}


class PartTask(nn.Module):
    """One part of a frozen ``model`` (at ``generator_path``, the trainer's G) and a projection discriminator
    of its own on crops (D, conditioned on the clip), for the shared trainer: what the later stages of
    the warp family (the mouth refiner, the learned inside) share. Subclasses give ``generate`` and
    ``g_loss``."""

    generator_path = ""

    def __init__(self, model: nn.Module, discriminator: nn.Module):
        super().__init__()
        self.model = model
        self.crop_discriminator = discriminator
        model.requires_grad_(False)
        self.generator.requires_grad_(True)

    @property
    def generator(self) -> nn.Module:
        return self.model.get_submodule(self.generator_path)

    @property
    def discriminator(self) -> nn.Module:
        return self.crop_discriminator

    def g_parameters(self) -> list[nn.Parameter]:
        return list(self.generator.parameters())

    def d_parameters(self) -> list[nn.Parameter]:
        return list(self.crop_discriminator.parameters())

    def d_condition(self, out: dict, detach_table: bool = False) -> dict:
        D = self.crop_discriminator
        if detach_table:
            return {"w": (D.W(out["vi"]) + D.w0).detach()}
        return {"video_index": out["vi"]}


class MouthTask(PartTask):
    """The refiner (G) and the crops' discriminator (D) for the shared trainer; the rest of ``model`` frozen.

    ``generate(batch)`` -> ``{"fake" (B,3,M,M) = crop + refiner delta, "real", "y", "vi", "unrefined"}``.
    """

    generator_path = "generator.mouth"

    def generate(self, batch: dict, device: torch.device, generator: nn.Module | None = None) -> dict:
        crop, y, real = (batch[k].to(device) for k in ("crop", "y", "real"))
        refiner = generator or self.generator
        fake = (crop + refiner.refine(crop, y, batch["psi"].to(device))).clamp(-1.0, 1.0)
        return {"fake": fake, "real": real, "y": y, "vi": batch["video_index"].to(device).long(), "unrefined": crop}

    def g_loss(self, out: dict, loss_fn) -> tuple[torch.Tensor, dict]:
        from .training import _generator_loss

        total, terms = _generator_loss(self, {k: v for k, v in out.items() if k != "unrefined"}, loss_fn)
        with torch.no_grad():
            terms["unrefined_pixel"] = (out["unrefined"] - out["real"]).abs().mean()  # logged: the bar to beat
        return total, terms


def open_stage(opts, resume: bool, stage: str, has_part, refusal: str):
    """The later stages' common start: ``opts.config`` checked with ``has_part(cfg)`` before any work
    (``refusal`` otherwise), one process, the run folder checked, and a resumed run's checkpoint and record.
    Returns ``(opts with data resolved, dist, device, run_dir, state or None, saved record or {})``."""
    from .config import get_config
    from .io import check_output_folder
    from .training import CHECKPOINT, _saved_record, init_distributed, load_checkpoint

    if not resume and not has_part(get_config(opts.config)):
        raise InputError(refusal)
    dist, device = init_distributed(opts.device)
    if dist.enabled:
        raise InputError(f"the {stage} stage runs in one process (its steps are small): run it without torchrun")
    run_dir = Path(opts.run_dir)
    check_output_folder(run_dir, f"Run folder {run_dir}", "choose another -o")
    opts = dataclasses.replace(opts, data=str(Path(opts.data).resolve()) if opts.data else opts.data)
    state = load_checkpoint(run_dir / CHECKPOINT) if resume else None
    return opts, dist, device, run_dir, state, (_saved_record(run_dir) if state is not None else {})


def stage_model(opts, state, saved: dict, clips, run_dir: Path, part: str, what: str) -> nn.Module:
    """The model a later stage trains ``generator.<part>`` of: a new run's ``--init-from`` model in
    ``opts.config``'s architecture, whose embedder and generator must fit it whole (one line otherwise;
    ``clips``: the dataset, for D's table), or a resumed run's from its record. Refused when it has no
    ``part`` (``what`` names it)."""
    from .config import ModelConfig
    from .models import TalkingHeadModel
    from .training import init_from_pretrained

    if state is None:
        with warnings.catch_warnings():  # a part that does not fit is refused below, in one line
            warnings.simplefilter("ignore")
            model = init_from_pretrained(opts.init_from, clips, config=opts.config)
        if not {"embedder", "generator"} <= set(model.init_parts):
            raise InputError(f"--init-from {opts.init_from}: its embedder and generator do not fit --config "
                             f"{opts.config} (the {part} stage keeps them as trained and adds its own part)")
    else:
        model = TalkingHeadModel(ModelConfig.from_dict(saved["model_config"]))
    if getattr(model.generator, part, None) is None:  # a resumed run whose record says otherwise
        raise InputError(f"{run_dir}: its model has no {what}; start a new {part} run")
    return model


def train_mouth(opts, resume: bool = False):
    """The mouth stage (``opts.stage == "mouth"``, ``talkinghead train --stage mouth``): crops, then the
    shared trainer on them, then the whole model exported with its refiner (``RUN/model``)."""
    from .data import EpisodeDataset
    from .training import OPTIONS, Trainer, build_loss, make_loader, seed_everything

    opts, dist, device, run_dir, state, saved = open_stage(
        opts, resume, "mouth", lambda cfg: bool(cfg.mouth_channels),
        f"--config {opts.config} has no mouth refiner (mouth_channels): use warp-mouth-256")
    seed_everything(opts.seed)
    episodes = EpisodeDataset(opts.data, k=opts.k, augment=opts.augment, focus=opts.focus_targets)
    if state is None:
        if not opts.init_from:
            raise InputError("the mouth stage trains on a meta-learned warp model: pass --init-from NAME|DIR "
                             "(e.g. default) and --config with a mouth refiner (warp-mouth-256)")
    model = stage_model(opts, state, saved, episodes, run_dir, "mouth", "mouth refiner (mouth_channels)")
    cfg = model.config
    episodes.size = cfg.image_size
    model.to(device)
    task = MouthTask(model, crop_discriminator(cfg, len(episodes))).to(device)
    trainer = Trainer(task, build_loss(opts, device), opts, device, run_dir, dist)
    if state is not None:
        trainer.load_state_dict(state)
        trainer._read_log()
    crops = build_mouth_crops(model, episodes, run_dir / CROPS, opts.mouth_crops, seed=opts.seed, device=device,
                              progress=opts.progress)
    dataset = MouthCrops(crops, augment=opts.augment)
    record = {"options": opts.to_dict(), "model_config": cfg.to_dict(), "config_name": opts.config,
              "stage": "mouth", "loss_weights": trainer.loss_fn.weights.to_dict(),
              "content_backbones": list(trainer.loss_fn.backbones.names) if trainer.loss_fn.backbones is not None else [],
              "world_size": 1, "device": str(device), "amp": "bf16" if trainer.amp else "off",
              "videos": episodes.videos, "identities": episodes.identities, "mouth_crops": len(dataset),
              "init_from": model.training_info.get("init_from") if state is None else saved.get("init_from"),
              "torch": torch.__version__}
    segment = {"from_step": trainer.step, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "lr_g": opts.lr_g, "lr_d": opts.lr_d, "batch": opts.batch}
    record["segments"] = saved.get("segments", []) + [segment]
    atomic_write_text(run_dir / OPTIONS, json.dumps(record, indent=1))
    trainer.fit(make_loader(dataset, opts, dist, trainer.items_consumed, device), opts.steps)
    if opts.export and trainer.step > 0 and trainer.stopped_by is None:
        trainer.export(run_dir / "model")
    return trainer
