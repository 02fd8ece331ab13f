"""Options shared by the generating subcommands (animate, finetune, demo)."""
from __future__ import annotations


def add_model_options(p) -> None:
    p.add_argument("--model", default="default",
                   help="model name (looked up in pretrained/, then $TALKINGHEAD_HOME) or a model folder")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="where to run")
    p.add_argument("--backend", default="auto", choices=["auto", "dlib", "face-alignment", "mediapipe"],
                   help="landmark detector")
    p.add_argument("--face-index", type=int, default=0, help="which face when a photo shows several (0 = largest)")


def add_output_options(p) -> None:
    p.add_argument("--crop-only", action="store_true", help="write the face crop instead of pasting it back")
    p.add_argument("--label", default=None, metavar="TEXT", help="draw a visible label such as 'AI-generated'")
    p.add_argument("--no-watermark", action="store_true",
                   help="research only: skip the invisible watermark (recorded in the file's metadata)")
    p.add_argument("--batch-size", type=int, default=8, help="frames generated per batch")


def add_finetune_options(p, default_steps: int) -> None:
    p.add_argument("--fine-tune-steps", "--steps", dest="fine_tune_steps", type=int, default=default_steps,
                   help="fine-tuning steps on the photos (0 = feed-forward: embed only)")
    p.add_argument("--patience", type=int, default=50, help="stop fine-tuning when the loss stalls this many steps")
    p.add_argument("--lr", type=float, default=None, metavar="LR",
                   help="G' learning rate when fine-tuning; D' uses 4x (default: talkinghead.pipeline.FINE_TUNE_LR)")


def finetune_kwargs(args) -> dict:
    """personalize() keywords from the fine-tuning options (it checks them)."""
    kw = {"fine_tune_steps": args.fine_tune_steps, "patience": args.patience}
    return kw if args.lr is None else {**kw, "lr": args.lr}


def write(path, video, args) -> None:
    from ..pipeline import write_video

    write_video(path, video, watermark=not args.no_watermark, label=args.label)
    extra = "" if not getattr(video, "audio_from", None) else f", audio from {video.audio_from}"
    print(f"wrote {path}: {len(video)} frames at {video.fps:g} fps{extra}")
