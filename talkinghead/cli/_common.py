"""Options shared by the generating subcommands (animate, finetune, demo)."""
from __future__ import annotations


def add_model_options(p) -> None:
    p.add_argument("--model", default="default",
                   help="model name (looked up in pretrained/, the installed copy, then $TALKINGHEAD_HOME) or a model folder")
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
                   help="G' learning rate when fine-tuning; D' uses 4x (default: 2e-4, talkinghead.pipeline.FINE_TUNE_LR)")
    add_loss_weight_option(p, "fine-tuning's loss weights (default: the ones the model was meta-trained with)")
    p.add_argument("--amp", default="auto", choices=["auto", "bf16", "off"],
                   help="bf16 autocast while fine-tuning: auto = on CUDA only; bf16 also on CPUs with AMX "
                        "(about 1.5x faster there)")


def add_loss_weight_option(p, help_text: str) -> None:
    p.add_argument("--loss-weight", action="append", default=None, metavar="NAME=VALUE",
                   help=f"{help_text}; repeat for several, e.g. --loss-weight pixel=10 (names: "
                        "content_vgg19, content_vggface, content_stlpips, adversarial, feature_matching, "
                        "embedding_match, pixel)")


def parse_loss_weights(items) -> dict | None:
    """``["pixel=10", ...]`` -> ``{"pixel": 10.0}``, checked against LossWeights (InputError otherwise)."""
    if not items:
        return None
    from ..errors import InputError
    from ..losses import LossWeights

    out = {}
    for item in items:
        name, _, value = item.partition("=")
        try:
            out[name.strip()] = weight = float(value)
        except ValueError:
            weight = -1.0
        if not weight >= 0:
            raise InputError(f"--loss-weight {item!r} is not NAME=VALUE with a number >= 0, e.g. pixel=10.")
    try:
        LossWeights.from_dict(out)
    except ValueError as exc:
        raise InputError(f"--loss-weight: {exc}.") from None
    return out


def finetune_kwargs(args, model) -> dict:
    """personalize() keywords from the fine-tuning options (it checks them); --loss-weight changes
    single terms of the model's own fine-tuning weights."""
    kw = {"fine_tune_steps": args.fine_tune_steps, "patience": args.patience, "amp": args.amp}
    if args.lr is not None:
        kw["lr"] = args.lr
    weights = parse_loss_weights(args.loss_weight)
    return kw if weights is None else {**kw, "loss_weights": {**model.loss_weights, **weights}}


def write(path, video, args) -> None:
    from ..pipeline import write_video

    write_video(path, video, watermark=not args.no_watermark, label=args.label)
    extra = "" if not getattr(video, "audio_from", None) else f", audio from {video.audio_from}"
    print(f"wrote {path}: {len(video)} frames at {video.fps:g} fps{extra}")
