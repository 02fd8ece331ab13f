"""One trainer for meta-learning and fine-tuning, with exact resume and data-parallel training.

The trainer (:class:`Trainer`) knows nothing about talking heads beyond a *task*: a module that owns
the trainable networks, says which parameters each optimiser updates, and computes the generator
and discriminator losses of a batch. Two tasks share it:

- :class:`MetaLearningTask`: E, G, D on K-shot episodes (content + adversarial + feature matching +
  embedding match; ``feed_forward=True`` drops the match term: the paper's FF variant).
- :class:`FineTuneTask`: G' with trainable AdaIN parameters psi (initialised to ``P e_hat``) and D'
  with a trainable projection vector w (initialised to ``w0 + e_hat``) on a few photos; no match term.
  :func:`fine_tune` runs it on one person's photos (behind ``TalkingHead.personalize``).

Every step is ``gen_update`` then ``d_steps`` x ``dis_update`` (the first reuses the detached fake).
A run folder holds::

    RUN_DIR/training_options.json   resolved options, model config, loss weights and backbones used;
                                    ``segments`` lists every start and resume (step, amp, lr, world size)
    RUN_DIR/checkpoint.pt           latest state (atomic): task, EMA generator, optimisers, step,
                                    episodes consumed, RNG states; load with ``weights_only=True``
    RUN_DIR/log.csv                 losses every ``log_every`` steps (averaged over ranks)
    RUN_DIR/samples/step-XXXXXXX.png  rows of (driving landmark image | real | fake by the EMA G)
    RUN_DIR/model/                  E, G (EMA) and D (with W, w0, b) via ``save_pretrained``

Resume is exact: episodes come from :class:`talkinghead.data.EpisodeSampler`, whose n-th item depends
only on ``(seed, rank, n)``, and every random state the step uses is saved, so 2 steps + resume 2 steps
gives the same tensors as 4 steps. Ctrl-C (or SIGTERM) finishes the current step, then checkpoints.

Distributed: under ``torchrun`` (``WORLD_SIZE`` > 1) each rank builds the same model from the same
seed, takes its share of the videos, and gradients are averaged with ``all_reduce`` after each
backward (stylegan2-ada's scheme: plain modules, no DDP wrapper, because D is run in both phases);
losses are averaged across ranks and only rank 0 writes.
"""
from __future__ import annotations

import copy
import csv
import dataclasses
import io as _io
import json
import math
import os
import random
import signal
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn

from .atomic import atomic_path, atomic_write_text
from .devices import resolve_device
from .errors import InputError, WeightsError
from .io import check_output_folder
from .tensors import to_uint8

__all__ = [
    "TrainOptions",
    "DistInfo",
    "MetaLearningTask",
    "FineTuneTask",
    "Trainer",
    "train",
    "init_distributed",
    "load_checkpoint",
    "export_pretrained",
    "fine_tune",
]

CHECKPOINT = "checkpoint.pt"
OPTIONS = "training_options.json"


@dataclass
class TrainOptions:
    """Everything a run depends on; saved as ``training_options.json``.

    Paper defaults: Adam, lr 5e-5 for E and G, 2e-4 for D, K = 8. ``d_steps=2`` gives two D updates
    per G update (BigGAN's schedule). ``betas`` are BigGAN's (0, 0.999): the paper names Adam only.
    """

    config: str = "cpu-256"
    data: str = ""
    run_dir: str = ""
    steps: int = 1000
    batch: int = 1
    k: int = 8
    lr_g: float = 5e-5
    lr_d: float = 2e-4
    betas: tuple[float, float] = (0.0, 0.999)
    d_steps: int = 1
    grad_clip: float = 10.0  # max global grad norm per optimiser; 0 disables
    ema_decay: float = 0.999
    amp: str = "auto"  # auto (bf16 on CUDA, off on CPU) | bf16 | off
    device: str = "auto"
    seed: int = 0
    feed_forward: bool = False
    freeze_embedder: bool = False  # keep E as it starts (a pretrained one): G and D get the compute
    content: str = "auto"  # content backbones: auto | paper | stlpips | none
    loss_weights: dict = field(default_factory=dict)  # overrides of LossWeights fields
    augment: bool = True
    # share of episodes whose target is an open mouth or a blink (EpisodeDataset.hard_frames)
    focus_targets: float = 0.0
    workers: int = 0
    log_every: int = 10
    sample_every: int = 500
    checkpoint_every: int = 1000
    export: bool = True
    progress: bool = True
    init_from: str = ""  # a pretrained name or folder to start E, G, D from (fresh optimisers, step 0)
    # "pretrained": the init model's architecture; "config": `config`'s, taking each pretrained part that fits
    init_architecture: str = "pretrained"
    # with init_from: the warp generator's flow/mask/delta head and blend scorer start afresh (at the warp),
    # e.g. for weights whose heads learned under the earlier absolute-rgb output (docs/how-it-works.md)
    reset_heads: bool = False
    # "meta": meta-learning (E, G, D); "mouth": the warp family's mouth refiner on cached crops of the frozen
    # model (talkinghead.mouth_training), ``mouth_crops`` of them; "inside": its learned mouth inside on boxes
    # of the cache's real frames (talkinghead.inside_training)
    stage: str = "meta"
    mouth_crops: int = 4000

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainOptions":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown training options: {', '.join(unknown)}")
        d = dict(d)
        if "betas" in d:
            d["betas"] = tuple(d["betas"])
        return cls(**d)


# --------------------------------------------------------------------------------------------
# distributed plumbing
# --------------------------------------------------------------------------------------------


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device_name: str = "auto") -> tuple[DistInfo, torch.device]:
    """Join the process group when launched by ``torchrun`` (NCCL on GPUs, gloo on CPUs)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name, local_rank=local)  # cuda under torchrun -> cuda:LOCAL_RANK
    info = DistInfo(rank, world, local)
    if world > 1:
        import torch.distributed as dist

        if device.type == "cuda":
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return info, device


def _all_reduce_grads(params: list[nn.Parameter], world: int) -> None:
    """Average gradients over ranks in one flat buffer (missing grads count as zeros)."""
    import torch.distributed as dist

    params = [p for p in params if p.requires_grad]
    if not params:
        return
    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])
    dist.all_reduce(flat)
    flat /= world
    offset = 0
    for p in params:
        n = p.numel()
        g = flat[offset : offset + n].view_as(p)
        if p.grad is None:
            p.grad = g.clone()
        else:
            p.grad.copy_(g)
        offset += n


def _broadcast_module(module: nn.Module) -> None:
    import torch.distributed as dist

    for t in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(t.data, src=0)


# --------------------------------------------------------------------------------------------
# tasks
# --------------------------------------------------------------------------------------------


def _split_episode(batch: dict, device: torch.device) -> tuple[torch.Tensor, ...]:
    """``frames``/``landmarks`` ``(B, K+1, 3, S, S)`` and ``points`` ``(B, K+1, 68, 2)`` -> shots
    ``(B,K,...)`` and target ``(B,...)``; the points are ``None`` for batches without them."""
    x = batch["frames"].to(device, non_blocking=True)
    y = batch["landmarks"].to(device, non_blocking=True)
    if x.dim() != 5 or x.shape != y.shape:
        raise ValueError(f"episode frames and landmarks must be (B, K+1, 3, S, S), got {tuple(x.shape)} and {tuple(y.shape)}")
    p = batch.get("points")
    if p is not None:
        p = p.to(device, non_blocking=True).float()
        if tuple(p.shape) != (*x.shape[:2], 68, 2):
            raise ValueError(f"episode points must be {(*x.shape[:2], 68, 2)}, got {tuple(p.shape)}")
    vi = batch["video_index"].to(device).long()
    return x[:, :-1], y[:, :-1], x[:, -1], y[:, -1], vi, (p[:, :-1] if p is not None else None), \
        (p[:, -1] if p is not None else None)


def _generator_loss(task: nn.Module, out: dict, loss_fn, **match) -> tuple[torch.Tensor, dict]:
    """G's loss for any task: D scores the fake; D's features of the real frame are constants."""
    D = task.discriminator
    cond = task.d_condition(out, detach_table=True)
    score_fake, feats_fake = D(out["fake"], out["y"], **cond)
    with torch.no_grad():
        _, feats_real = D(out["real"], out["y"], **cond)
    return loss_fn(out["real"], out["fake"], score_fake, feats_real, feats_fake, aux=out, **match)


def generator_parameters(generator: nn.Module) -> list[nn.Parameter]:
    """What E/G steps (meta-learning, fine-tuning, the mouth stage's frozen rest) may train of ``generator``:
    all of it but the learned mouth inside, which its own stage trains on real frames (talkinghead.
    inside_training) and which is frozen here (a GAN step through the whole frame would only blur it)."""
    inside = getattr(generator, "inside", None)
    if inside is not None:
        inside.requires_grad_(False)
    return [p for p in generator.parameters() if p.requires_grad]


class MetaLearningTask(nn.Module):
    """E, G and D trained on K-shot episodes (``batch`` from :class:`talkinghead.data.EpisodeDataset`).

    The embedding-match term ``|e_hat - W_i|`` sends gradient to e_hat (E) and to W (applied by D's
    optimiser at the next D update); in the adversarial path D sees ``W_i`` detached, so G's loss
    never pushes D's table towards fakes.
    """

    def __init__(self, model: nn.Module, feed_forward: bool = False, freeze_embedder: bool = False):
        super().__init__()
        self.model = model
        self.feed_forward = feed_forward
        # a frozen E (a pretrained one, when the CPU budget is for G and D) runs in eval mode without a
        # graph; the match term then moves only D's table W towards e_hat
        self.freeze_embedder = freeze_embedder
        if freeze_embedder:
            model.embedder.requires_grad_(False)
            model.embedder.eval()

    def train(self, mode: bool = True) -> "MetaLearningTask":
        super().train(mode)
        if self.freeze_embedder:
            self.model.embedder.eval()
        return self

    generator_path = "generator"  # where the trained (and EMA-averaged) generator sits in self.model

    @property
    def generator(self) -> nn.Module:
        return self.model.generator

    @property
    def discriminator(self) -> nn.Module:
        return self.model.discriminator

    def g_parameters(self) -> list[nn.Parameter]:
        embedder = [] if self.freeze_embedder else list(self.model.embedder.parameters())
        return embedder + generator_parameters(self.model.generator)

    def d_parameters(self) -> list[nn.Parameter]:
        return list(self.model.discriminator.parameters())

    def generate(self, batch: dict, device: torch.device, generator: nn.Module | None = None) -> dict:
        """Fake target frames: ``{"fake" (B,3,S,S), "real", "y", "vi", "e_hat" (B,D)}`` plus the
        generator family's auxiliaries (warped shots, mask, flow)."""
        xs, ys, xt, yt, vi, ps, pt = _split_episode(batch, device)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_embedder):
            _, e_hat = self.model.embedder(xs, ys)
        G = generator or self.model.generator
        out = G.generate(yt, pt, G.identity_state(e_hat, xs, ps))  # the family's fake and auxiliaries
        return {**out, "real": xt, "y": yt, "vi": vi, "e_hat": e_hat, "points": pt}

    def d_condition(self, out: dict, detach_table: bool = False) -> dict:
        D = self.model.discriminator
        if detach_table:
            return {"w": (D.W(out["vi"]) + D.w0).detach()}
        return {"video_index": out["vi"]}

    def g_loss(self, out: dict, loss_fn) -> tuple[torch.Tensor, dict]:
        D = self.model.discriminator
        match = {} if self.feed_forward else {"e_hat": out["e_hat"], "w_i": D.W(out["vi"])}
        total, terms = _generator_loss(self, out, loss_fn, **match)
        # Logged, not optimised: an embedder whose ReLU output has collapsed to 0 (all identities
        # alike) shows up here as 0 long before the samples make it obvious.
        terms["e_hat_norm"] = out["e_hat"].detach().norm(dim=1).mean()
        return total, terms


class FineTuneTask(nn.Module):
    """G' and D' for one new person (the paper's fine-tuning stage).

    ``e_hat`` ``(D,)`` is the mean embedding of the person's photos (computed by the caller with E).
    psi ``(n_psi,)`` starts at ``P e_hat`` and w ``(D,)`` at ``w0 + e_hat``; both are trained with G's
    and D's weights. Batches are episodes whose last frame is the target (K may be 0).
    """

    def __init__(self, model: nn.Module, e_hat: torch.Tensor, train_generator: bool = True):
        super().__init__()
        self.model = model
        self.train_generator = train_generator
        if not train_generator:  # psi' alone: G keeps the meta-learned weights
            model.generator.requires_grad_(False)
        e_hat = e_hat.detach().reshape(1, -1)
        with torch.no_grad():
            self.psi = nn.Parameter(model.generator.psi_from_embedding(e_hat).reshape(-1).clone())
            self.w = nn.Parameter((model.discriminator.w0 + e_hat.reshape(-1)).clone())
        model.embedder.requires_grad_(False)

    generator_path = "generator"  # where the trained (and EMA-averaged) generator sits in self.model

    @property
    def generator(self) -> nn.Module:
        return self.model.generator

    @property
    def discriminator(self) -> nn.Module:
        return self.model.discriminator

    def g_parameters(self) -> list[nn.Parameter]:
        return (generator_parameters(self.model.generator) if self.train_generator else []) + [self.psi]

    def d_parameters(self) -> list[nn.Parameter]:
        D = self.model.discriminator
        return list(D.trunk.parameters()) + [D.b, self.w]

    def generate(self, batch: dict, device: torch.device, generator: nn.Module | None = None) -> dict:
        """A family that reads shots takes them from the batch (``shots`` ``(B,K,3,S,S)``, ``shot_points``
        ``(B,K,68,2)``: the other photos of each target, see :func:`fine_tune`)."""
        _, _, xt, yt, vi, _, pt = _split_episode(batch, device)
        state = {"psi": self.psi.unsqueeze(0)}
        for key in ("shots", "shot_points"):
            if key in batch:
                state[key] = batch[key].to(device, non_blocking=True)
        out = (generator or self.model.generator).generate(yt, pt, state)
        return {**out, "real": xt, "y": yt, "vi": vi, "points": pt}

    def d_condition(self, out: dict, detach_table: bool = False) -> dict:
        w = self.w.unsqueeze(0).expand(out["real"].shape[0], -1)
        return {"w": w.detach() if detach_table else w}

    def g_loss(self, out: dict, loss_fn) -> tuple[torch.Tensor, dict]:
        return _generator_loss(self, out, loss_fn)


# --------------------------------------------------------------------------------------------
# checkpoint helpers
# --------------------------------------------------------------------------------------------


def _rng_state() -> dict:
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    random.setstate(_as_tuple(state["python"]))
    n = state["numpy"]
    np.random.set_state((n[0], n[1].numpy().astype(np.uint32), n[2], n[3], n[4]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuple(x):
    return tuple(_as_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read a trainer checkpoint safely (``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path} does not exist; start a new run without --resume or point -o at an existing run folder.")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise InputError(f"{path} is not a readable checkpoint ({type(exc).__name__}); delete it or restore a backup.") from exc


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# --------------------------------------------------------------------------------------------
# the trainer
# --------------------------------------------------------------------------------------------


class _StopFlag:
    """First SIGINT/SIGTERM asks the loop to stop after the current step; a second one aborts.
    ``signum`` keeps which signal it was (the CLI exits 130 or 143 accordingly)."""

    def __init__(self):
        self.requested = False
        self.signum: int | None = None
        self._old: dict[int, Any] = {}

    def _handler(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested, self.signum = True, signum
        if os.environ.get("RANK", "0") == "0":
            print("\nstopping after this step and saving a checkpoint (press Ctrl-C again to abort)",
                  file=sys.stderr, flush=True)

    def __enter__(self):
        import threading

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


class Trainer:
    """Explicit ``gen_update`` / ``dis_update`` steps around a task, with EMA, AMP, DDP, checkpoints.

    Args:
        task: a :class:`MetaLearningTask` or :class:`FineTuneTask` (already on ``device``).
        loss_fn: a :class:`talkinghead.losses.GeneratorLoss` (on ``device``).
        opts: :class:`TrainOptions`.
        device: where the task lives; steps run under bf16 autocast there when ``opts.amp`` asks.
        run_dir: where rank 0 writes; ``None`` writes nothing (benchmarks).
        dist: the process group (:func:`init_distributed`); ``None`` for one process.

    After :meth:`fit`, ``stopped_by`` is the signal (SIGINT/SIGTERM) that ended it early, else ``None``.
    """

    def __init__(self, task: nn.Module, loss_fn: nn.Module, opts: TrainOptions, device: torch.device,
                 run_dir: str | os.PathLike | None = None, dist: DistInfo | None = None):
        from .losses import discriminator_loss

        self.task, self.loss_fn, self.opts, self.device = task, loss_fn, opts, device
        self.dist = dist or DistInfo()
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.discriminator_loss = discriminator_loss
        self.ema = copy.deepcopy(task.generator).eval().requires_grad_(False)
        self.opt_g = torch.optim.Adam(task.g_parameters(), lr=opts.lr_g, betas=tuple(opts.betas))
        self.opt_d = torch.optim.Adam(task.d_parameters(), lr=opts.lr_d, betas=tuple(opts.betas))
        amp = opts.amp if opts.amp != "auto" else ("bf16" if device.type == "cuda" else "off")
        self.amp = amp == "bf16"
        self.step = 0
        self.items_consumed = 0  # episodes this rank has taken from its sampler
        self.log_rows: list[dict] = []
        self._last_saved = -1
        self._time_offset = 0.0
        self.stopped_by: int | None = None  # the signal that ended fit() early, if one did
        # optional () -> {name: float}: held-out numbers, logged (a row of their own) every sample_every steps
        self.validate = None

    # ---- one step of each kind ----------------------------------------------------------------
    def _autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp)

    def _finish(self, params: list[nn.Parameter], opt: torch.optim.Optimizer) -> torch.Tensor | None:
        if self.dist.enabled:
            _all_reduce_grads(params, self.dist.world_size)
        norm = None
        if self.opts.grad_clip > 0:
            norm = torch.nn.utils.clip_grad_norm_([p for p in params if p.grad is not None], self.opts.grad_clip)
        opt.step()
        return norm

    def gen_update(self, batch: dict) -> tuple[dict, dict]:
        """One E/G (or G') step. Returns ``(terms, out)``; ``out["fake"]`` is detached for D."""
        task = self.task
        d_params = task.d_parameters()
        req = [p.requires_grad for p in d_params]
        D = task.discriminator
        for p in d_params:
            p.requires_grad_(False)
        # W keeps its gradient: the match term's pull on W_i is applied by D's next step.
        if isinstance(task, MetaLearningTask) and not task.feed_forward:
            D.W.weight.requires_grad_(True)
        self.opt_g.zero_grad(set_to_none=True)
        self.opt_d.zero_grad(set_to_none=True)
        with self._autocast():
            out = task.generate(batch, self.device)
            total, terms = task.g_loss(out, self.loss_fn)
        total.backward()
        for p, r in zip(d_params, req):
            p.requires_grad_(r)
        norm = self._finish(task.g_parameters(), self.opt_g)
        if norm is not None:
            terms["g_grad_norm"] = norm.detach()
        self._update_ema()
        out = {k: (v.detach() if torch.is_tensor(v) else v) for k, v in out.items()}
        return {f"g_{k}" if not k.startswith("g_") else k: v for k, v in terms.items()}, out

    def dis_update(self, batch: dict, out: dict | None = None, keep_grads: bool = False) -> dict:
        """One D (or D') step on ``batch``; ``out`` reuses a detached fake from ``gen_update``."""
        task = self.task
        if not keep_grads:
            self.opt_d.zero_grad(set_to_none=True)
        with self._autocast():
            if out is None:
                with torch.no_grad():
                    out = task.generate(batch, self.device)
                out = {k: (v.detach() if torch.is_tensor(v) else v) for k, v in out.items()}
            D = task.discriminator
            cond = task.d_condition(out)
            score_real, _ = D(out["real"], out["y"], **cond)
            score_fake, _ = D(out["fake"], out["y"], **cond)
            total, terms = self.discriminator_loss(score_real.float(), score_fake.float())
        total.backward()
        norm = self._finish(task.d_parameters(), self.opt_d)
        if norm is not None:
            terms["grad_norm"] = norm.detach()
        return {f"d_{k}" if not k.startswith("d_") else k: v for k, v in terms.items()}

    @torch.no_grad()
    def _update_ema(self) -> None:
        # Ramp the decay up from 0 (as in BigGAN/StyleGAN): a fixed 0.999 would keep a short run's
        # EMA (and the exported generator) mostly at its random initialisation.
        d = min(self.opts.ema_decay, (1.0 + self.step) / (10.0 + self.step))
        for pe, p in zip(self.ema.parameters(), self.task.generator.parameters()):
            pe.lerp_(p.detach(), 1.0 - d)
        for be, b in zip(self.ema.buffers(), self.task.generator.buffers()):
            be.copy_(b)

    def train_step(self, batches: Iterator[dict]) -> dict:
        """``gen_update`` + ``d_steps`` x ``dis_update``; returns float losses averaged over ranks."""
        batch = next(batches)
        g_terms, out = self.gen_update(batch)
        d_terms = self.dis_update(batch, out, keep_grads=True)
        for _ in range(self.opts.d_steps - 1):
            d_terms = self.dis_update(next(batches))
        self.items_consumed += self.opts.batch * self.opts.d_steps
        self.step += 1
        self._last_out = out
        return self._reduce({**g_terms, **d_terms})

    def _reduce(self, terms: dict) -> dict:
        keys = sorted(terms)
        vals = torch.stack([terms[k].detach().float().reshape(()) for k in keys]).to(self.device)
        if self.dist.enabled:
            import torch.distributed as dist

            dist.all_reduce(vals)
            vals /= self.dist.world_size
        return dict(zip(keys, vals.cpu().tolist()))

    # ---- state ---------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "format": 1,
            "step": self.step,
            "items_consumed": self.items_consumed,
            "task": self.task.state_dict(),
            "ema": self.ema.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "rng": _rng_state(),
            "options": json.dumps(self.opts.to_dict()),
        }

    def load_state_dict(self, state: dict) -> None:
        self.task.load_state_dict(state["task"])
        self.ema.load_state_dict(state["ema"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.step = int(state["step"])
        self.items_consumed = int(state["items_consumed"])
        self._last_saved = self.step
        _set_rng_state(state["rng"])

    def save_checkpoint(self) -> None:
        if self.run_dir is None or not self.dist.is_main:
            return
        # through a Python file: torch's own error for a full disk ("unexpected pos") then carries the
        # OSError, which atomic_path reports as one line
        with atomic_path(self.run_dir / CHECKPOINT) as tmp, open(tmp, "wb") as fh:
            torch.save(self.state_dict(), fh)
        self._last_saved = self.step

    # ---- outputs -------------------------------------------------------------------------------
    def _write_log(self) -> None:
        if self.run_dir is None or not self.dist.is_main or not self.log_rows:
            return
        keys = ["step", "time"] + sorted({k for r in self.log_rows for k in r} - {"step", "time"})
        buf = _io.StringIO()
        w = csv.DictWriter(buf, fieldnames=keys, restval="")
        w.writeheader()
        w.writerows(self.log_rows)
        atomic_write_text(self.run_dir / "log.csv", buf.getvalue())

    def _read_log(self) -> None:
        path = self.run_dir / "log.csv" if self.run_dir is not None else None
        if path is None or not path.is_file():
            return
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        self.log_rows = [r for r in rows if int(r["step"]) <= self.step]  # drop what the resumed run redoes
        if self.log_rows:
            self._time_offset = float(self.log_rows[-1]["time"])  # the time column keeps counting

    @torch.no_grad()
    def write_samples(self, batch: dict, rows: int = 4) -> Path | None:
        """PNG grid, one row per item: driving landmark image | real | fake (EMA generator)."""
        if self.run_dir is None or not self.dist.is_main:
            return None
        from .pipeline import write_image  # marked as synthetic like every generated image

        sub = {k: v[:rows] for k, v in batch.items()}
        # eval mode: spectral norm's power iteration must not advance here (rank 0 alone draws samples,
        # and a resumed run must not depend on when samples were written)
        was_training = self.task.training
        self.task.eval()
        try:
            with self._autocast():
                out = self.task.generate(sub, self.device, generator=self.ema)
        finally:
            self.task.train(was_training)
        tiles = torch.cat([out["y"], out["real"], out["fake"].float()], dim=3)  # (b, 3, S, 3S)
        grid = torch.cat(list(tiles), dim=1)  # (3, b*S, 3S)
        img = to_uint8(grid)
        path = self.run_dir / "samples" / f"step-{self.step:07d}.png"
        write_image(path, img, model_name=self.opts.config)  # makes samples/ (atomic_path)
        return path

    def export(self, directory: str | os.PathLike, use_ema: bool = True) -> Path:
        """Write E, G (EMA weights by default) and D as a pretrained folder (``save_pretrained``)."""
        model = copy.deepcopy(self.task.model)
        if use_ema:
            model.get_submodule(self.task.generator_path).load_state_dict(self.ema.state_dict())
        if self.run_dir is not None:
            model.training_info = training_record(_saved_record(Path(self.run_dir)), self.step)
        model.save_pretrained(directory)
        return Path(directory)

    # ---- the loop ------------------------------------------------------------------------------
    def fit(self, batches: Iterator[dict], steps: int) -> dict:
        """Train until ``self.step == steps``; checkpoint every N steps and on exit (Ctrl-C included)."""
        from tqdm import tqdm

        o = self.opts
        main = self.dist.is_main
        bar = tqdm(total=steps, initial=self.step, desc="train", unit="step", disable=not (o.progress and main))
        t0, last = time.time() - self._time_offset, {}
        completed = True
        with _StopFlag() as stop:
            try:
                while self.step < steps:
                    completed = False
                    batch = next(batches)  # kept for the sample grid
                    terms = self.train_step(_chain_first(batch, batches))
                    completed = True
                    last = terms
                    bar.update()
                    if main and (self.step % o.log_every == 0 or self.step == steps):
                        self.log_rows.append({"step": self.step, "time": round(time.time() - t0, 3), **{k: f"{v:.6g}" for k, v in terms.items()}})
                        self._write_log()
                        bar.set_postfix(g=f"{terms.get('g_total', float('nan')):.3f}", d=f"{terms.get('d_total', float('nan')):.3f}")
                    if o.sample_every and self.step % o.sample_every == 0:
                        self.write_samples(batch)
                        if self.validate is not None and main:
                            held = self.validate()
                            self.log_rows.append({"step": self.step, "time": round(time.time() - t0, 3),
                                                  **{k: f"{v:.6g}" for k, v in held.items()}})
                            self._write_log()
                    if o.checkpoint_every and self.step % o.checkpoint_every == 0:
                        self.save_checkpoint()
                    if self._agree(stop.requested):
                        # ranks that got no signal themselves stop for the same reason
                        self.stopped_by = stop.signum or signal.SIGTERM
                        break
            finally:
                bar.close()
                # Only a state at a step boundary can be resumed exactly; a step cut in half is not saved.
                if completed and self._last_saved != self.step:
                    self._write_log()
                    self.save_checkpoint()
        return last

    def _agree(self, flag: bool) -> bool:
        """All ranks stop at the same step when any of them got a signal."""
        if not self.dist.enabled:
            return flag
        import torch.distributed as dist

        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item() > 0)


def _chain_first(first: dict, rest: Iterator[dict]) -> Iterator[dict]:
    yield first
    yield from rest


# --------------------------------------------------------------------------------------------
# the whole run: build everything from options
# --------------------------------------------------------------------------------------------


def make_loader(dataset, opts: TrainOptions, dist: DistInfo, start: int, device: torch.device) -> Iterator[dict]:
    """Endless batches of episodes for this rank, starting at item ``start`` of its sampler."""
    from torch.utils.data import DataLoader

    from .data import EpisodeSampler

    sampler = EpisodeSampler(len(dataset), seed=opts.seed, rank=dist.rank, world_size=dist.world_size, start=start)
    # A private generator: the loader must not draw from the global torch RNG (resume would shift it).
    g = torch.Generator().manual_seed(opts.seed)
    loader = DataLoader(dataset, batch_size=opts.batch, sampler=sampler, num_workers=opts.workers,
                        generator=g, pin_memory=device.type == "cuda", persistent_workers=opts.workers > 0,
                        worker_init_fn=_ignore_stop_signals if opts.workers > 0 else None)
    return iter(loader)


def _ignore_stop_signals(worker_id: int) -> None:
    """Ctrl-C reaches the whole process group: loader workers leave stopping to the trainer, which
    finishes its step and checkpoints (a worker that died first would make that step fail)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def build_loss(opts: TrainOptions, device: torch.device):
    from .losses import GeneratorLoss, LossWeights

    backbones = None
    if opts.content != "none":
        from .perceptual import build_content_backbones

        backbones = build_content_backbones(opts.content)
        backbones = backbones.to(device).eval().requires_grad_(False)
    weights = LossWeights.from_dict(opts.loss_weights) if opts.loss_weights else LossWeights()
    if backbones is None and weights.mouth_content:
        # e.g. fine-tuning with --content none a model trained with the term: the rest of its weights apply
        warnings.warn("content none: the mouth_content loss term is left out (it uses the content backbones).",
                      stacklevel=2)
        weights = dataclasses.replace(weights, mouth_content=0.0)
    return GeneratorLoss(weights, backbones)


# parts trained after meta-learning (stages "mouth" and "inside"): a model without them still counts as the whole generator
LATER_STAGES = ("generator.mouth.", "generator.inside.")


def init_from_pretrained(name_or_dir: str, dataset, config: str | None = None) -> nn.Module:
    """A pretrained model re-shaped for ``dataset``: E, G, D's trunk, w0 and b as trained; D's table ``W``
    resized to the dataset's videos, keeping the trained row of every video the model was trained on
    (``model.video_rows``: new row -> trained row; the rest are set by :func:`init_embedding_table`).

    With ``config`` (a registered name), the model has that architecture and takes every pretrained
    tensor whose name and shape fit it, except the generator's when the generator family differs
    (a warp generator starts from the shipped paper-family E and D, say); ``model.init_parts`` lists
    the networks taken whole.

    Continuing meta-learning from the shipped weights (on more data, on a GPU) needs no checkpoint:
    optimisers start afresh and the run counts its steps from 0 (the record keeps where it started).
    """
    from .config import get_config
    from .hub import load_pretrained
    from .models import TalkingHeadModel

    run_model = Path(str(name_or_dir)) / "model"
    if (Path(str(name_or_dir)) / CHECKPOINT).is_file() and (run_model / "config.json").is_file():
        raise InputError(f"--init-from {name_or_dir} is a run folder: pass its exported model, {run_model}.")
    try:
        src = load_pretrained(name_or_dir)
    except (InputError, WeightsError) as exc:
        raise InputError(f"--init-from {name_or_dir}: {exc}") from None
    cfg = src.config if config is None else get_config(config)
    model = TalkingHeadModel(cfg.replace(num_videos=len(dataset)))
    target = model.state_dict()
    same_family = cfg.generator == src.config.generator
    fits = {k: v for k, v in src.state_dict().items()
            if k != "discriminator.W.weight" and k in target and tuple(v.shape) == tuple(target[k].shape)
            and (same_family or not k.startswith("generator."))}
    # whole networks only: a network half pretrained and half fresh would not be what the record says
    # a later stage's part (the mouth refiner) may be missing: it starts at its zero head, changing nothing
    model.init_parts = [net for net in ("embedder", "generator", "discriminator")
                        if all(k in fits for k in target if k.startswith(net + ".") and k != "discriminator.W.weight"
                               and not (k.startswith(LATER_STAGES) and k not in src.state_dict()))]
    state = {k: v for k, v in fits.items() if k.split(".", 1)[0] in model.init_parts}
    model.load_state_dict(state, strict=False)
    if config is not None and len(model.init_parts) < 3:
        fresh = [n for n in ("embedder", "generator", "discriminator") if n not in model.init_parts]
        warnings.warn(f"--init-from {name_or_dir} with --config {config}: the {' and '.join(fresh)} start(s) "
                      "at random (another architecture or generator family).", stacklevel=2)
    trained = list(src.training_info.get("videos") or [])
    index = {v: i for i, v in enumerate(trained)}
    model.video_rows = {i: index[v] for i, v in enumerate(dataset.videos) if v in index}
    if "discriminator" not in model.init_parts:  # D starts afresh: so do its rows (and w0)
        model.video_rows = {}
    if trained and not model.video_rows and "discriminator" in model.init_parts:
        warnings.warn(f"--init-from {name_or_dir}: none of the cache's {len(dataset.videos)} clips is one of the "
                      f"{len(trained)} it was trained on (a clip's id is its file name and a hash of its "
                      "content; run `preprocess` again on an older cache named by paths), so every row of D's "
                      "table starts at its clip's e_hat.", stacklevel=2)
    with torch.no_grad():
        for new, old in model.video_rows.items():
            model.discriminator.W.weight[new] = src.discriminator.W.weight[old]
    info = src.training_info
    model.training_info = {"config_name": info.get("config_name") if config is None else config,
                           "init_from": {"model": str(name_or_dir), "steps": info.get("steps"),
                                         "parts": model.init_parts, "init_from": info.get("init_from"),
                                         "loss_weights": info.get("loss_weights")}}
    return model


@torch.no_grad()
def init_embedding_table(model: nn.Module, dataset, device: torch.device, keep: dict | None = None) -> None:
    """Start D's table at the embedder's own output: ``W_i = e_hat_i`` (K frames of video i) and
    ``w0 = -mean_i W_i``. With ``keep`` (rows of a pretrained table, see :func:`init_from_pretrained`),
    those rows and the trained ``w0`` stay, and each new video starts at ``W_i = e_hat_i`` as fine-tuning
    starts ``w' = w0 + e_hat``.

    Why: the embedding-match term (weight 80) pulls e_hat towards W_i. With W drawn near 0 it drove the
    embedder's ReLU outputs to exactly 0 within ten steps (a collapse no gradient can undo); with W
    drawn at N(0, 1) D's scores started at +-15. Starting from e_hat makes the match term 0 at step 0,
    and ``W_i + w0`` (what D projects on) is each video's deviation from the mean, so scores start small.
    """
    E, D = model.embedder, model.discriminator
    was_training = E.training
    E.eval()  # no spectral-norm power iteration: the weights' state stays as constructed
    todo = [vi for vi in range(len(dataset)) if keep is None or vi not in keep]
    rows = []
    for vi in todo:
        ep = dataset[(vi, (0,))]
        x, y = ep["frames"], ep["landmarks"]
        if x.shape[0] > 1:  # K shots + target: embed the shots
            x, y = x[:-1], y[:-1]
        rows.append(E(x[None].to(device), y[None].to(device))[1][0])
    if rows:
        D.W.weight[todo] = torch.stack(rows)
    if keep is None:
        D.w0.copy_(-D.W.weight.mean(0))
    E.train(was_training)


def train(opts: TrainOptions, resume: bool = False) -> Trainer:
    """Run meta-learning as described by ``opts`` (the ``talkinghead train`` command), or with
    ``opts.stage == "mouth"`` the warp family's mouth stage (:func:`talkinghead.mouth_training.train_mouth`),
    with ``"inside"`` its learned mouth inside (:func:`talkinghead.inside_training.train_inside`)."""
    if opts.stage not in ("meta", "mouth", "inside"):
        raise InputError(f"stage must be meta, mouth or inside, not {opts.stage!r}.")
    if opts.stage == "mouth":
        from .mouth_training import train_mouth

        return train_mouth(opts, resume)
    if opts.stage == "inside":
        from .inside_training import train_inside

        return train_inside(opts, resume)
    from .config import ModelConfig, get_config
    from .data import EpisodeDataset
    from .models import TalkingHeadModel

    dist, device = init_distributed(opts.device)
    run_dir = Path(opts.run_dir)
    check_output_folder(run_dir, f"Run folder {run_dir}", "choose another -o")
    if resume and not Path(opts.data).is_dir():
        raise InputError(f"The run's cache {opts.data} is not found from {Path.cwd()}: pass --data with its path "
                         "(relative paths are read from the current folder).")
    # the record keeps where the cache is, so --resume works from any folder
    opts = dataclasses.replace(opts, data=str(Path(opts.data).resolve()) if opts.data else opts.data)
    state = load_checkpoint(run_dir / CHECKPOINT) if resume else None
    seed_everything(opts.seed)
    dataset = EpisodeDataset(opts.data, k=opts.k, augment=opts.augment, focus=opts.focus_targets)
    _check_k(dataset, opts.k)
    saved = _saved_record(run_dir) if state is not None else {}
    if state is not None:
        _check_resumable(run_dir, saved, dataset, state, opts)
    if opts.freeze_embedder and not opts.init_from and state is None:
        warnings.warn("--freeze-embedder without --init-from keeps a randomly initialised embedder.", stacklevel=2)
    if opts.init_architecture not in ("pretrained", "config"):
        raise InputError(f"init_architecture must be pretrained or config, not {opts.init_architecture!r}.")
    init = None
    if state is None and opts.init_from:
        init = init_from_pretrained(opts.init_from, dataset,
                                    config=opts.config if opts.init_architecture == "config" else None)
    if init is not None:  # the architecture is the pretrained model's
        cfg = init.config
        opts = dataclasses.replace(opts, config=init.training_info.get("config_name") or opts.config)
    elif "model_config" in saved:  # a resumed run keeps the architecture it started with
        cfg = ModelConfig.from_dict(saved["model_config"])
    else:
        cfg = get_config(opts.config, num_videos=len(dataset))
    dataset.size = cfg.image_size  # episodes are resized on the fly to the model's resolution
    model = init if init is not None else TalkingHeadModel(cfg)
    if opts.reset_heads and init is not None:
        if not hasattr(model.generator, "reset_heads"):
            raise InputError(f"--reset-heads: the {cfg.generator} generator family has no output heads to reset.")
        model.generator.reset_heads()
    task = MetaLearningTask(model, feed_forward=opts.feed_forward, freeze_embedder=opts.freeze_embedder).to(device)
    if state is None:
        init_embedding_table(model, dataset, device,
                             keep=init.video_rows if init is not None and "discriminator" in init.init_parts else None)
    if dist.enabled:
        _broadcast_module(task)
    loss_fn = build_loss(opts, device)
    trainer = Trainer(task, loss_fn, opts, device, run_dir, dist)
    if state is not None:
        try:
            trainer.load_state_dict(state)
        except (RuntimeError, KeyError, ValueError) as exc:  # shapes or keys of another architecture
            raise InputError(f"{run_dir / CHECKPOINT} does not match the model in {run_dir / OPTIONS} "
                             f"({type(exc).__name__}): resume it with its own files, or start a new run.") from None
        trainer._read_log()
    if dist.is_main:
        record = {
            "options": opts.to_dict(),
            "model_config": cfg.to_dict(),
            "config_name": opts.config,
            "loss_weights": loss_fn.weights.to_dict(),
            "content_backbones": list(loss_fn.backbones.names) if loss_fn.backbones is not None else [],
            "world_size": dist.world_size,
            "device": str(device),
            "amp": "bf16" if trainer.amp else "off",
            "videos": dataset.videos,
            "identities": dataset.identities,
            "init_from": model.training_info.get("init_from") if init is not None else saved.get("init_from"),
            "torch": torch.__version__,
        }
        # One entry per start or resume: the top-level fields describe the latest one only.
        segment = {"from_step": trainer.step, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                   **{k: record[k] for k in ("amp", "world_size", "device", "loss_weights", "torch")},
                   "lr_g": opts.lr_g, "lr_d": opts.lr_d, "batch": opts.batch, "k": opts.k}
        record["segments"] = saved.get("segments", []) + [segment]
        atomic_write_text(run_dir / OPTIONS, json.dumps(record, indent=1))
    batches = make_loader(dataset, opts, dist, trainer.items_consumed, device)
    trainer.fit(batches, opts.steps)
    # an interrupted run has a checkpoint to resume from, not a finished model
    if opts.export and dist.is_main and trainer.step > 0 and trainer.stopped_by is None:
        trainer.export(run_dir / "model")
    return trainer


def _check_k(dataset, k: int) -> None:
    """An episode takes K + 1 distinct frames of one clip; a shorter clip would repeat a shot as the target."""
    shortest = min(int(m.get("num_frames", k + 1)) for m in dataset.meta)
    if shortest < k + 1:
        raise InputError(f"--k {k} needs {k + 1} frames per clip, but the shortest clip of {dataset.cache_dir} has "
                         f"{shortest}: lower --k, or preprocess with a larger --min-frames to skip short clips.")


def _check_resumable(run_dir: Path, saved: dict, dataset, state: dict, opts: TrainOptions) -> None:
    """InputError, before anything is written, when resuming would train another run than the saved one."""
    was_frozen = bool(saved.get("options", {}).get("freeze_embedder", False))
    if saved and was_frozen != opts.freeze_embedder:
        raise InputError(f"Run {run_dir} was trained with{'' if was_frozen else 'out'} a frozen embedder and "
                         f"--resume keeps that: {'add' if was_frozen else 'drop'} --freeze-embedder, or start a new "
                         f"run with --init-from {run_dir / 'model'}.")
    videos = saved.get("videos")
    # an entry renamed from a path-based id (see data.legacy_video_id) still names that id in its meta
    named_before = [m.get("video", v) for m, v in zip(dataset.meta, dataset.videos)]
    if videos is not None and list(videos) not in (list(dataset.videos), named_before):
        was = saved.get("options", {}).get("data", "?")
        raise InputError(f"The cache {opts.data} holds other clips ({len(dataset.videos)}) than run {run_dir} was "
                         f"trained on ({len(videos)}, from {was}): resume with that cache, or start a new run with "
                         f"--init-from {run_dir / 'model'} to keep the weights.")
    step = int(state.get("step", 0))
    if opts.steps < step:
        raise InputError(f"Run {run_dir} is already at step {step}, past --steps {opts.steps}: "
                         "pass a larger --steps to train further.")


def _saved_record(run_dir: Path) -> dict:
    """The run's ``training_options.json`` as written before (``{}`` for a new run)."""
    path = run_dir / OPTIONS
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise InputError(f"{path} is not valid JSON: restore it from a backup, or start a new run.") from None


def load_run_model(run_dir: str | os.PathLike, use_ema: bool = True) -> tuple[nn.Module, int]:
    """``(TalkingHeadModel, step)`` from a run's latest checkpoint; G holds the EMA weights by default."""
    from .config import ModelConfig
    from .models import TalkingHeadModel

    run_dir = Path(run_dir)
    record = json.loads((run_dir / OPTIONS).read_text(encoding="utf-8"))
    state = load_checkpoint(run_dir / CHECKPOINT)
    model = TalkingHeadModel(ModelConfig.from_dict(record["model_config"]))
    model.load_state_dict({k[len("model."):]: v for k, v in state["task"].items() if k.startswith("model.")})
    if use_ema:  # the mouth and inside stages average their own part only
        from .inside_training import InsideTask
        from .mouth_training import MouthTask

        path = {"mouth": MouthTask.generator_path, "inside": InsideTask.generator_path}.get(
            record.get("stage"), MetaLearningTask.generator_path)
        model.get_submodule(path).load_state_dict(state["ema"])
    model.training_info = training_record(record, int(state["step"]))
    return model, int(state["step"])


def training_record(record: dict, step: int) -> dict:
    """What a pretrained folder keeps of its run (config.json ``"training"``): steps, loss weights,
    backbones, world size, the videos behind D's rows, the model it started from and the run's segments
    (each start or resume; ``None`` for runs older than the field)."""
    keys = ("loss_weights", "config_name", "world_size", "device", "content_backbones", "videos", "init_from",
            "segments", "stage", "stage_loss_weights")
    out = {"steps": int(step), **{k: record.get(k) for k in keys}, "loss_weights": record.get("loss_weights", {})}
    return {k: v for k, v in out.items() if v is not None or k not in ("stage", "stage_loss_weights")}


def export_pretrained(run_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None, use_ema: bool = True) -> Path:
    """Export a run's latest checkpoint as a pretrained folder (E, G, D incl. W, w0, b)."""
    run_dir = Path(run_dir)
    model, _ = load_run_model(run_dir, use_ema)
    out = Path(out_dir) if out_dir is not None else run_dir / "model"
    model.save_pretrained(out)
    return out


# --------------------------------------------------------------------------------------------
# fine-tuning on one person's photos (the loop behind TalkingHead.personalize)
# --------------------------------------------------------------------------------------------


def fine_tune(model: nn.Module, frames: torch.Tensor, marks: torch.Tensor, e_hat: torch.Tensor, steps: int,
              device: torch.device, *, lr: float, batch_size: int = 2, patience: int = 50, progress: bool = True,
              seed: int = 0, content: str = "auto", loss_weights: dict | None = None, train_generator: bool = True,
              amp: str = "auto", model_name: str = "", log=None, callback=None,
              make_snapshot=None, points: torch.Tensor | None = None) -> tuple[nn.Module, torch.Tensor, dict]:
    """Fine-tune a copy of ``model`` on one person's photos (paper, sec. 3.3) with :class:`FineTuneTask`.

    ``frames`` and ``marks`` are the photos' face crops and landmark images, ``(K, 3, S, S)`` in [-1, 1]
    (kept where they are; each batch moves to ``device``), ``e_hat`` ``(D,)`` their mean embedding,
    ``points`` ``(K, 68, 2)`` their landmarks in crop pixels (needed by a family that warps the shots).
    Each step draws ``batch_size`` photos at random, mirrors each with probability 1/2, and trains G'
    (psi' from ``P e_hat``, and G's weights with ``train_generator``) at ``lr`` and D' (``w' = w0 +
    e_hat``) at ``4 * lr``, with the content and adversarial losses (``content``: the backbones of
    :func:`build_loss`; ``loss_weights``: overrides of :class:`~talkinghead.losses.LossWeights`). It
    stops after ``steps``, or once the smoothed reconstruction loss has not improved for ``patience``
    steps (0: never early). ``model`` itself is not changed. A family that warps shots gets, for each
    target photo, the *other* photos as its shots (the photo itself when there is only one: then only
    its mirror image is a new view), so G' learns to render a photo it does not copy.

    ``log(terms)`` gets every step's ``{"step", **terms}``; ``callback(step, terms, snapshot)`` runs after
    each step, where ``snapshot()`` gives ``make_snapshot(generator, psi)`` of copies of the current G'
    and psi' (``(generator, psi)`` itself without ``make_snapshot``).

    Returns ``(generator, psi, info)``: G' in eval mode (not the EMA copy), psi' ``(n_psi,)``, and what
    the run did (steps, losses, seconds, device, backbones, loss weights, learning rates, amp).

    Raises:
        InputError: at the first NaN or infinite loss, or when G' ends with non-finite weights.
    """
    from tqdm import tqdm

    from .data import flip_landmarks

    if frames.dim() != 4 or frames.shape[1] != 3 or frames.shape != marks.shape:
        raise ValueError(f"frames and marks must both be (K, 3, S, S), got {tuple(frames.shape)} and "
                         f"{tuple(marks.shape)}")
    needs_shots = getattr(model.generator, "needs_shots", False)
    if points is not None and tuple(points.shape) != (len(frames), 68, 2):
        raise ValueError(f"points must be ({len(frames)}, 68, 2), got {tuple(points.shape)}")
    if needs_shots and points is None:
        raise ValueError("the warp generator fine-tunes from the photos' landmarks: pass points (K, 68, 2)")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = copy.deepcopy(model).to(device).train()
    task = FineTuneTask(model, e_hat.to(device), train_generator=train_generator).to(device)
    opts = TrainOptions(config=model_name, data="", run_dir="", steps=steps, batch=batch_size,
                        k=0, device=str(device), d_steps=1, content=content, progress=False,
                        lr_g=lr, lr_d=4 * lr, amp=amp, loss_weights=dict(loss_weights or {}))
    loss_fn = build_loss(opts, device)
    trainer = Trainer(task, loss_fn, opts, device, run_dir=None)

    def batches() -> Iterator[dict]:
        while True:
            idx = rng.integers(0, len(frames), batch_size)
            flip = rng.random(batch_size) < 0.5
            x, y = frames[idx].clone(), marks[idx].clone()
            # a mirrored photo is another view of the same face: flip image and drawn landmarks alike
            x[flip], y[flip] = x[flip].flip(-1), y[flip].flip(-1)
            batch = {"frames": x[:, None], "landmarks": y[:, None],
                     "video_index": torch.zeros(batch_size, dtype=torch.long)}
            if points is not None:
                p = points[idx].clone()
                if flip.any():
                    p[flip] = torch.from_numpy(flip_landmarks(p[flip].cpu().numpy(), frames.shape[-1])).to(p.device)
                batch["points"] = p[:, None]
            if needs_shots:  # leave-one-out: the target's own photo is not among its shots
                others = torch.tensor([[j for j in range(len(frames)) if j != i] or [int(i)] for i in idx])
                batch["shots"], batch["shot_points"] = frames[others], points[others]
            yield batch

    def snapshot():  # copies: the optimiser updates G' and psi' in place
        generator, psi = copy.deepcopy(task.model.generator), task.psi.detach().clone()
        return (generator, psi) if make_snapshot is None else make_snapshot(generator, psi)

    stream = batches()
    best, since, history = float("inf"), 0, []
    t0 = time.time()
    bar = tqdm(range(steps), desc="fine-tune", unit="step", disable=not progress)
    for step in bar:
        terms = trainer.train_step(stream)
        _check_finite(terms, step + 1, opts)
        g = terms.get("g_total", float("nan"))
        # early stop on the reconstruction terms (content, pixel), smoothed: the adversarial terms
        # swing by design and would end fine-tuning at a random step
        recon = [v for k, v in terms.items() if k.startswith("g_content_") or k == "g_pixel"]
        history.append(float(sum(recon)) if recon else g)
        smooth = float(np.mean(history[-10:]))
        if smooth < best - 0.005 * abs(best):
            best, since = smooth, 0
        else:
            since += 1
        bar.set_postfix(g=f"{g:.3f}", d=f"{terms.get('d_total', float('nan')):.3f}")
        if log is not None:
            log({"step": step + 1, **terms})
        if callback is not None:
            callback(step + 1, terms, snapshot)
        if patience and since >= patience:
            break
    bar.close()
    _check_finite_weights(task, len(history), opts)
    # G' itself, not the EMA copy: with a decay of 0.999 a few hundred steps would leave the EMA
    # mostly the meta-learned generator while psi' is fully trained.
    generator = copy.deepcopy(task.model.generator).eval()
    info = {"fine_tune_steps": len(history), "asked_steps": steps,
            "stopped_early": len(history) < steps, "final_g_loss": g if history else None,
            "final_reconstruction_loss": history[-1] if history else None,
            "seconds": round(time.time() - t0, 2), "device": str(device),
            "content_backbones": list(loss_fn.backbones.names) if loss_fn.backbones is not None else [],
            "loss_weights": loss_fn.weights.to_dict(), "lr_g": opts.lr_g, "lr_d": opts.lr_d,
            "train_generator": train_generator, "amp": "bf16" if trainer.amp else "off"}
    return generator, task.psi.detach(), info

def _diverged(step: int, what: str, opts) -> InputError:
    return InputError(f"Fine-tuning diverged at step {step} ({what}) with lr={opts.lr_g:g}: lower the learning "
                      "rate (lr) or the loss weights and try again.")


def _check_finite(terms: dict, step: int, opts) -> None:
    """Stop at the first NaN or infinite loss: every later step would only spread it through G'."""
    bad = [k for k, v in terms.items() if isinstance(v, float) and not math.isfinite(v)]
    if bad:
        key = "g_total" if "g_total" in bad else sorted(bad)[0]  # the generator's loss says the most
        raise _diverged(step, f"{key} is {terms[key]}", opts)


def _check_finite_weights(task, steps: int, opts) -> None:
    """The last update can break the weights after a finite loss; never hand back such an avatar."""
    params = [task.psi, *task.model.generator.parameters()]
    if not all(bool(torch.isfinite(p).all()) for p in params):
        raise _diverged(steps, "the generator's weights are not finite", opts)

