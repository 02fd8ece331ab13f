"""``talkinghead train``: meta-learning of E, G and D on a preprocessing cache (or a later stage of the warp family)."""
from __future__ import annotations

from ._common import (MAX_WORKERS, add_loss_weight_option, bounded, count, parse_loss_weights, positive_float,
                      positive_int, seed)

d_steps = bounded(int, 1, True, 10)  # BigGAN uses 2; more only starves G
batch = bounded(int, 1, True, 256)  # episodes per process: a larger one is a typo that would fill the memory
shots = bounded(int, 1, True, 64)  # K frames per episode (the paper: 8); memory grows with K
steps = bounded(int, 1, True, 10_000_000)  # generator steps: 10 million is months on a GPU

DESCRIPTION = """\
Meta-learning on K-shot episodes of a cache built by `talkinghead preprocess`. RUN_DIR receives
training_options.json, log.csv, samples/*.png, checkpoint.pt (every --checkpoint-every steps and on exit,
Ctrl-C included) and, when --steps are done, model/ (E, G with EMA weights, D with W, w0, b) for
fine-tuning. Ctrl-C or SIGTERM stops after the current step with a checkpoint (exit 130 or 143);
--resume continues exactly where the run stopped, with the same cache and architecture.
--init-from starts E, G and D from a pretrained model (the shipped one: default) instead of at random,
with fresh optimisers; its architecture comes along.
--stage mouth trains the warp family's mouth refiner after meta-learning: the rest of the --init-from
model stays frozen, RUN_DIR/mouth-crops/ keeps --mouth-crops crops of it (built first, resumable), and
model/ is the whole model with the refiner (--config warp-mouth-256).
--stage inside trains the warp family's learned mouth inside (teeth, the dark of the mouth) on the
cache's real frames: RUN_DIR/inside-crops.npz keeps boxes about their lips (built first), every 8th clip
is held out (val_* rows in log.csv), the rest of the --init-from model stays frozen, and model/ is the
whole model with the inside (--config warp-256).
Several processes: torchrun --nproc_per_node N -m talkinghead train ...

example: talkinghead train --config cpu-256 --data cache/train -o runs/cpu256 --steps 500 \\
             --lr-g 1e-4 --loss-weight content_stlpips=1.5 --loss-weight pixel=10   # the paper family's recipe
         talkinghead train --stage mouth --config warp-mouth-256 --init-from default --data cache/train \\
             -o runs/mouth --k 8 --batch 8 --focus-targets 0.5 --lr-g 1e-3 --lr-d 4e-4 \\
             --loss-weight content_stlpips=1.5 --loss-weight pixel=1 --loss-weight adversarial=0.5 \\
             --loss-weight feature_matching=5
         talkinghead train --stage inside --init-from default --data cache/train -o runs/inside \
             --batch 16 --lr-g 3e-4 --steps 1000
         talkinghead train --init-from default --data cache/train -o runs/more --steps 2000
"""

# Options that --resume takes from the saved run unless given again on the command line.
_OVERRIDABLE = ("config", "init_from", "data", "steps", "batch", "k", "device", "sample_every", "checkpoint_every",
                "lr_g", "lr_d", "d_steps", "seed", "workers", "content", "log_every", "amp", "focus_targets", "stage",
                "mouth_crops")


def register(subparsers, formatter_class) -> None:
    p = subparsers.add_parser("train", help="meta-learn E, G, D on a preprocessed cache (DDP aware)",
                              description=DESCRIPTION, formatter_class=formatter_class)
    p.add_argument("--config", default=None, help="model config name (paper-256, cpu-256, tiny, warp-256, warp-mouth-256, warp-tiny; `talkinghead models` lists "
                        "them); default cpu-256")
    p.add_argument("--init-from", default=None, metavar="NAME|DIR",
                   help="start from a pretrained model's E, G, D (its config) instead of random weights; with "
                        "--config, that architecture, taking E, D and G from the model where they fit (G only "
                        "of the same generator family)")
    p.add_argument("--data", default=None, metavar="CACHE", help="cache folder from `talkinghead preprocess`")
    p.add_argument("-o", "--output", required=True, metavar="RUN_DIR", help="run folder")
    p.add_argument("--steps", type=steps, default=None, help="total generator steps (default 1000)")
    p.add_argument("--batch", type=batch, default=None, help="episodes per step and process, 1 to 256 (default 1)")
    p.add_argument("--k", type=shots, default=None, help="few-shot frames per episode, 1 to 64 (default 8)")
    p.add_argument("--resume", action="store_true", help="continue RUN_DIR from its checkpoint")
    p.add_argument("--device", default=None, choices=["auto", "cpu", "cuda"], help="default auto")
    p.add_argument("--sample-every", type=count, default=None, help="steps between sample grids; 0 = none (default 500)")
    p.add_argument("--checkpoint-every", type=count, default=None,
                   help="steps between checkpoints; 0 = only at the end and on Ctrl-C (default 1000)")
    p.add_argument("--log-every", type=positive_int, default=None, help="steps between log.csv rows (default 10)")
    p.add_argument("--lr-g", type=positive_float, default=None, help="Adam lr of E and G (default 5e-5)")
    p.add_argument("--lr-d", type=positive_float, default=None, help="Adam lr of D (default 2e-4)")
    p.add_argument("--d-steps", type=d_steps, default=None, help="D updates per G update, 1 to 10 (default 1; paper ~2)")
    p.add_argument("--seed", type=seed, default=None, help="default 0")
    p.add_argument("--amp", default=None, choices=["auto", "bf16", "off"],
                   help="bf16 autocast: auto = on CUDA only; bf16 also on CPUs with AMX (1.45x per step measured, "
                        "docs/training.md) (default auto)")
    p.add_argument("--focus-targets", type=bounded(float, 0, True, 1), default=None, metavar="P",
                   help="share of episodes whose target is a wide-open mouth or a blink, where a warp has least "
                        "to copy (default 0: targets drawn uniformly)")
    p.add_argument("--workers", type=bounded(int, 0, True, MAX_WORKERS), default=None,
                   help="data loader processes (default 0)")
    p.add_argument("--content", default=None, choices=["auto", "paper", "stlpips", "none"],
                   help="content-loss backbones (default auto: VGG19/VGGFace if present, else ST-LPIPS VGG16)")
    add_loss_weight_option(p, "override one of the paper's loss weights")
    p.add_argument("--feed-forward", action="store_true", help="no embedding-match term (the paper's FF variant)")
    p.add_argument("--freeze-embedder", action="store_true",
                   help="keep E as it starts (with --init-from): G and D get the compute")
    p.add_argument("--reset-heads", action="store_true",
                   help="with --init-from: the warp generator's output heads start afresh, at the warp")
    p.add_argument("--stage", default=None, choices=["meta", "mouth", "inside"],
                   help="meta: meta-learning (default); mouth: the warp family's mouth refiner on a frozen --init-from "
                        "model; inside: its learned mouth inside, on the cache's real frames")
    p.add_argument("--mouth-crops", type=bounded(int, 1, True, 1_000_000), default=None, metavar="N",
                   help="--stage mouth: crops of the frozen model to train on (default 4000; ~1 s each on a CPU core)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    import json
    import sys
    from pathlib import Path

    from ..errors import InputError
    from ..io import check_output_folder
    from ..training import OPTIONS, TrainOptions, train

    given = {k: getattr(args, k) for k in _OVERRIDABLE if getattr(args, k) is not None}
    run_dir = Path(args.output)
    if args.resume and args.init_from:
        raise InputError("--init-from starts a new run and --resume continues one: give one of them.")
    check_output_folder(run_dir, f"Run folder {run_dir}", "choose another -o")  # before its record is read
    if args.resume:
        saved = run_dir / OPTIONS
        if not saved.is_file():
            raise InputError(f"{saved} does not exist; run without --resume to start a new run in {run_dir}.")
        try:
            opts = TrainOptions.from_dict(json.loads(saved.read_text(encoding="utf-8"))["options"])
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            raise InputError(f"{saved} is not a valid run record: restore it from a backup, or start a new run.") from None
        if args.config and args.config != opts.config:
            raise InputError(f"Run {run_dir} is a {opts.config} run and --resume keeps its architecture: drop "
                             f"--config {args.config}, or start a new run.")
        opts = TrainOptions.from_dict({**opts.to_dict(), **given, "run_dir": str(run_dir)})
    else:
        if (run_dir / "checkpoint.pt").exists():
            raise InputError(f"{run_dir} already holds a run; pass --resume to continue it or choose another -o.")
        if "data" not in given:
            raise InputError("--data CACHE is required: build a cache with `talkinghead preprocess VIDEOS -o CACHE`.")
        if given.get("stage") == "mouth":  # the mouth stage's config is the one with a refiner
            given.setdefault("config", "warp-mouth-256")
        if given.get("stage") == "inside":  # the shipped architecture, which has the inside
            given.setdefault("config", "warp-256")
        opts = TrainOptions.from_dict({**given, "run_dir": str(run_dir)})
        if args.init_from and args.config:  # that architecture, with every pretrained part that fits it
            opts.init_architecture = "config"
    weights = parse_loss_weights(args.loss_weight)
    if weights is not None:  # on --resume too: the run's saved weights, with these replaced
        opts.loss_weights = {**opts.loss_weights, **weights}
    if args.feed_forward:
        opts.feed_forward = True
    if args.freeze_embedder:
        opts.freeze_embedder = True
    if args.reset_heads:
        opts.reset_heads = True
    if args.no_progress:
        opts.progress = False
    trainer = train(opts, resume=args.resume)
    if trainer.dist.enabled:
        import torch.distributed as dist

        dist.destroy_process_group()
    if trainer.stopped_by is not None:
        import signal

        if trainer.dist.is_main:
            print(f"talkinghead train: stopped at step {trainer.step} of {opts.steps}; checkpoint saved in "
                  f"{run_dir}: continue with --resume", file=sys.stderr)
        return 130 if trainer.stopped_by == signal.SIGINT else 143
    if trainer.dist.is_main:
        print(f"{trainer.step} steps done; run folder {run_dir}")
    return 0
