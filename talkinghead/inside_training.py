"""Stage 3 of the warp family: the learned mouth inside (models/mouth_inside.py), trained on real frames.

The inside is an inpainter: it paints the target's inner-lip polygon from the rest of a box about the
lips. So it needs no generator output to learn from, only real frames: each training crop's box with
its own inside hidden is the input, and the inside is the answer. The boxes are cut once from the
preprocessing cache (``RUN/inside-crops.npz``: every frame whose mouth is open, ``OPEN_RATIO``, and a
share of the closed ones) and the shared :class:`talkinghead.training.Trainer` trains the inside on them
with named terms: ``inside_pixel`` (L1 inside the polygon, over its area), the content loss on the box,
and, when their weights are not 0, the adversarial and feature-matching terms of a projection
discriminator of its own on the boxes. The rest of the model is frozen and exported unchanged around it.
Some clips (every ``HOLDOUT``-th) are held out, and their boxes' L1 inside the polygon and LPIPS are
logged as ``val_*`` every ``sample_every`` steps.
"""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .atomic import atomic_path, atomic_write_text
from .errors import InputError
from .mouth_training import PartTask

__all__ = ["InsideCrops", "InsideTask", "build_inside_crops", "train_inside", "INSIDE_WEIGHTS"]

CROPS = "inside-crops.npz"
OPEN_RATIO = 0.08  # metrics.MOUTH_OPEN_THRESHOLD: these frames have an inside to learn
CLOSED_SHARE = 0.15  # of the closed frames, kept so a shut mouth stays shut
COLOUR_JITTER = 0.2  # each channel's gain within 1 +- this (with the brightness's 0.8-1.2)
SOFTEN_SHARE, SOFTEN_MAX = 0.75, 2.5  # of the training boxes, the share given a softened context, and how soft
HOLDOUT = 8  # every 8th clip (from the 4th) is held out for the val_* numbers
# the stage's loss weights unless --loss-weight says otherwise: pixel L1 over the polygon plus the content
# loss (the adversarial pair is off by default: the inside is measured without it)
INSIDE_WEIGHTS = {"inside_pixel": 5.0, "content_stlpips": 0.5, "content_vgg19": 0.0, "content_vggface": 0.0,
                  "adversarial": 0.0, "feature_matching": 0.0, "embedding_match": 0.0, "mouth_pixel": 0.0,
                  "mouth_content": 0.0}


@torch.no_grad()
def build_inside_crops(cache_dir: str | Path, out_file: str | Path, size: int, seed: int = 0,
                       progress: bool = True) -> Path:
    """Cut the boxes of every cache entry's open-mouth frames (and ``CLOSED_SHARE`` of the others) at
    ``size`` px into ``out_file`` (npz: ``img`` uint8 ``(N, M, M, 3)``, ``points`` float32 ``(N, 68, 2)`` in
    box pixels, ``video_index``, ``ratio``, ``videos``); kept if it exists."""
    from tqdm import tqdm

    from .data import CacheEntry, list_entries
    from .metrics import mouth_open_ratio
    from .models.mouth import crop_box
    from .models.mouth_inside import box_points, inside_box

    out_file = Path(out_file)
    if out_file.is_file():
        return out_file
    files = list_entries(cache_dir)
    rows: dict[str, list] = {"img": [], "points": [], "video_index": [], "ratio": []}
    for vi, f in enumerate(tqdm(files, desc="inside crops", unit="clip", disable=not progress)):
        entry = CacheEntry.load(f)
        ratio = mouth_open_ratio(entry.landmarks)
        rng = np.random.default_rng([seed, vi])
        keep = [t for t in range(len(entry)) if np.isfinite(ratio[t]) and np.isfinite(entry.landmarks[t]).all()
                and (ratio[t] > OPEN_RATIO or rng.random() < CLOSED_SHARE)]
        for a in range(0, len(keep), 32):
            ts = keep[a:a + 32]
            x = torch.from_numpy(np.stack([entry.frame(t) for t in ts])).permute(0, 3, 1, 2).float() / 127.5 - 1
            p = torch.from_numpy(entry.landmarks[ts]).float()
            theta = inside_box(p, x.shape[-1])
            crops = crop_box(x, theta, size)
            rows["img"].append(((crops + 1) * 127.5).round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy())
            rows["points"].append(box_points(p, theta, x.shape[-1], size).numpy())
            rows["video_index"].append(np.full(len(ts), vi, np.int64))
            rows["ratio"].append(ratio[ts].astype(np.float32))
    if not rows["img"]:
        raise InputError(f"{cache_dir}: no frame with a face to learn the mouth inside from")
    arrays = {k: np.concatenate(v) for k, v in rows.items()}
    out_file.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_file) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays, videos=np.array([f.stem for f in files]))
    return out_file


class InsideCrops:
    """The boxes of :func:`build_inside_crops` as a map-style dataset for the trainer's loader.

    ``dataset[(i, seed)]`` or ``dataset[i]``: ``real`` float32 ``(3, M, M)`` in [-1, 1], ``points``
    ``(68, 2)`` in box pixels, ``video_index``; with ``augment``, mirrored half the time (points too), its
    brightness scaled by 0.8-1.2 and each channel by 1 +- ``COLOUR_JITTER``, in 30% of the items part-way to
    grey (up to 80%), and ``soften``: the factor (1 to ``SOFTEN_MAX`` in ``SOFTEN_SHARE`` of the
    items, else 1) by which :class:`InsideTask` softens its context. ``split``: ``"train"``, ``"val"`` (the held-out clips) or ``"all"``.
    """

    def __init__(self, file: str | Path, augment: bool = True, split: str = "train"):
        with np.load(file, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        held = (arrays["video_index"] % HOLDOUT) == 3
        pick = {"train": ~held, "val": held, "all": np.ones_like(held)}[split]
        if split == "train" and not pick.any():  # a cache of a few clips: learn from all of them
            pick = np.ones_like(held)
        self.videos = [str(v) for v in arrays.pop("videos")]
        self.arrays = {k: v[pick] for k, v in arrays.items()}
        self.augment = augment

    def __len__(self) -> int:
        return len(self.arrays["video_index"])

    def __getitem__(self, key) -> dict:
        from .data import flip_landmarks

        i, seed = (int(key[0]), key[1]) if isinstance(key, (tuple, list)) else (int(key), (int(key),))
        img, pts = self.arrays["img"][i], self.arrays["points"][i]
        gain, grey = torch.ones(3, 1, 1), 0.0
        if self.augment:
            rng = np.random.default_rng(list(seed))
            if rng.random() < 0.5:
                img, pts = img[:, ::-1], flip_landmarks(pts, img.shape[1])
            # the whole box's colour, inside and out, so the inside takes its colours from the lips and skin
            # about it (a painting's palette is not a photo's): brightness, each channel, saturation
            gain = torch.from_numpy(rng.uniform(0.8, 1.2) * rng.uniform(1 - COLOUR_JITTER, 1 + COLOUR_JITTER, 3))
            gain = gain.float().view(3, 1, 1)
            grey = float(rng.uniform(0.0, 0.8)) if rng.random() < 0.3 else 0.0
        real = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float().div_(255.0)
        real = real * gain
        real = real + grey * (real.mean(dim=0, keepdim=True) - real)
        real = (real * 2.0 - 1.0).clamp_(-1.0, 1.0)
        item = {"real": real, "points": torch.from_numpy(np.ascontiguousarray(pts, np.float32)),
                "video_index": torch.tensor(int(self.arrays["video_index"][i]))}
        if self.augment:  # the context softened as the generator's frames are (InsideTask.generate)
            item["soften"] = torch.tensor(float(rng.uniform(1.0, SOFTEN_MAX)) if rng.random() < SOFTEN_SHARE else 1.0)
        return item


def soften(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """``(B, 3, M, M)`` each resampled down by ``factor (B,)`` (>= 1) and back up, bilinear: the softness of
    the generator's frames about the mouth (a shot's lips stretched by the warp, the network's residual
    painted at half size), which real frames lack. 1 leaves an image as it is."""
    import torch.nn.functional as F

    out = images.clone()
    m = images.shape[-1]
    for i, f in enumerate(factor.tolist()):
        if f > 1.0:
            small = F.interpolate(images[i:i + 1], size=max(2, round(m / f)), mode="bilinear", align_corners=False,
                                  antialias=True)
            out[i:i + 1] = F.interpolate(small, size=m, mode="bilinear", align_corners=False)
    return out


class InsideTask(PartTask):
    """The learned inside (G) and a box discriminator (D) for the shared trainer; the rest of ``model`` frozen.

    ``generate(batch)`` -> ``{"fake" (B,3,M,M): the real box with its inside painted, "real", "y" (the
    points drawn in the box), "vi", "inside_alpha" (B,1,M,M)}``.
    """

    generator_path = "generator.inside"

    def generate(self, batch: dict, device: torch.device, generator: nn.Module | None = None) -> dict:
        from .landmarks import landmark_images

        real, points = batch["real"].to(device), batch["points"].to(device)
        inside = generator or self.generator
        context = soften(real, batch["soften"].to(device)) if "soften" in batch else real
        _, rgb, alpha = inside.paint(context, points)
        fake = real * (1 - alpha) + alpha * rgb  # the loss compares the inside only: the rest is the real box
        y = landmark_images(points.cpu().numpy(), real.shape[-1], device=device, dtype=real.dtype)
        return {"fake": fake, "real": real, "y": y, "vi": batch["video_index"].to(device).long(),
                "inside_alpha": alpha}

    def g_loss(self, out: dict, loss_fn) -> tuple[torch.Tensor, dict]:
        from .training import _generator_loss

        return _generator_loss(self, out, loss_fn)


@torch.no_grad()
def held_out_scores(inside: nn.Module, val: InsideCrops, device, limit: int = 128) -> dict:
    """``val_inside_l1`` (over the polygon) and ``val_lpips`` (ST-LPIPS of the whole box) on up to ``limit``
    held-out boxes, and for reference ``val_flat_lpips``: the same boxes with the polygon filled with the
    boxes' mean inside colour, what an inside without texture scores."""
    from .metrics import _STLPIPS

    idx = np.linspace(0, len(val) - 1, min(limit, len(val))).round().astype(int)
    batch = [val[int(i)] for i in idx]
    real = torch.stack([b["real"] for b in batch]).to(device)
    points = torch.stack([b["points"] for b in batch]).to(device)
    was = inside.training
    inside.eval()
    fake, _, a = inside.paint(real, points)
    inside.train(was)
    flat_colour = (real * a).sum(dim=(0, 2, 3), keepdim=True) / a.sum().clamp_min(1)  # (1, 3, 1, 1)
    flat = real * (1 - a) + a * flat_colour
    lp = _STLPIPS()
    return {"val_inside_l1": float(((fake - real).abs() * a).sum() / (3 * a.sum()).clamp_min(1)),
            "val_lpips": float(lp(fake, real).mean()), "val_flat_lpips": float(lp(flat, real).mean())}


def train_inside(opts, resume: bool = False):
    """The inside stage (``opts.stage == "inside"``, ``talkinghead train --stage inside``): boxes from the
    cache, then the shared trainer on them, then the whole model exported with the inside (``RUN/model``)."""
    from .config import ModelConfig, get_config
    from .mouth_training import crop_discriminator, open_stage, stage_model
    from .training import OPTIONS, Trainer, build_loss, make_loader, seed_everything

    opts, dist, device, run_dir, state, saved = open_stage(
        opts, resume, "inside", lambda cfg: bool(cfg.inside_channels),
        f"--config {opts.config} has no learned mouth inside (inside_channels): use warp-256")
    if state is None and not opts.init_from:
        raise InputError("the inside stage goes into a meta-learned warp model: pass --init-from NAME|DIR "
                         "(e.g. default) and --config with a learned inside (warp-256)")
    seed_everything(opts.seed)
    crops_file = build_inside_crops(opts.data, run_dir / CROPS, get_config(opts.config).inside_size
                                    if state is None else ModelConfig.from_dict(saved["model_config"]).inside_size,
                                    seed=opts.seed, progress=opts.progress)
    dataset = InsideCrops(crops_file, augment=opts.augment, split="train")
    val = InsideCrops(crops_file, augment=False, split="val")
    class _Clips:  # what init_from_pretrained reads of a dataset: its clips
        videos = dataset.videos

        def __len__(self):
            return len(self.videos)

    model = stage_model(opts, state, saved, _Clips(), run_dir, "inside", "learned mouth inside (inside_channels)")
    cfg = model.config
    model.generator.inside.trained.fill_(1.0)  # from here on the generator paints with it
    model.to(device)
    task = InsideTask(model, crop_discriminator(cfg, len(dataset.videos), size=cfg.inside_size)).to(device)
    weights = {**INSIDE_WEIGHTS, **(opts.loss_weights or {})}
    opts = dataclasses.replace(opts, loss_weights=weights)
    trainer = Trainer(task, build_loss(opts, device), opts, device, run_dir, dist)
    if state is not None:
        trainer.load_state_dict(state)
        trainer._read_log()
    # fine-tuning reuses a model's "loss_weights": they stay the meta-learning's; the stage's are kept beside
    meta_weights = ((model.training_info.get("init_from") or {}).get("loss_weights") or {}) if state is None \
        else saved.get("loss_weights", {})
    record = {"options": opts.to_dict(), "model_config": cfg.to_dict(), "config_name": opts.config,
              "stage": "inside", "loss_weights": meta_weights, "stage_loss_weights": trainer.loss_fn.weights.to_dict(),
              "content_backbones": list(trainer.loss_fn.backbones.names) if trainer.loss_fn.backbones is not None else [],
              "world_size": 1, "device": str(device), "amp": "bf16" if trainer.amp else "off",
              "videos": dataset.videos, "inside_crops": len(dataset), "inside_val_crops": len(val),
              "init_from": model.training_info.get("init_from") if state is None else saved.get("init_from"),
              "torch": torch.__version__}
    segment = {"from_step": trainer.step, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "lr_g": opts.lr_g, "lr_d": opts.lr_d, "batch": opts.batch}
    record["segments"] = saved.get("segments", []) + [segment]
    atomic_write_text(run_dir / OPTIONS, json.dumps(record, indent=1))
    if len(val):
        trainer.validate = lambda: held_out_scores(trainer.ema, val, device)
    trainer.fit(make_loader(dataset, opts, dist, trainer.items_consumed, device), opts.steps)
    if opts.export and trainer.step > 0 and trainer.stopped_by is None:
        trainer.export(run_dir / "model")
    return trainer
