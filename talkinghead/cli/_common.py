"""Options shared by the generating subcommands (animate, finetune, demo), and argparse types that
refuse impossible numbers up front (exit 2 before any slow work)."""
from __future__ import annotations

import argparse
import math

# The API's bounds (talkinghead.checks: a preset of 1e9 s would try to allocate 186 GiB, --fps 1e9 22 GB)
from ..checks import MAX_BATCH_SIZE, MAX_FINE_TUNE_STEPS, MAX_FPS, MAX_PRESET_SECONDS

MAX_SEED = 2**32 - 1  # numpy's seed range (EvalOptions checks the same bound)
MAX_WORKERS = 256  # processes


def bounded(kind, low: float, low_ok: bool, high: float | None = None):
    """An argparse ``type`` for a finite number ``> low`` (``>= low`` when ``low_ok``) and ``<= high``."""
    fmt = (lambda v: f"{v:d}") if kind is int else (lambda v: f"{v:g}")
    bound = f"{'>=' if low_ok else '>'} {fmt(low)}" + (f" and <= {fmt(high)}" if high is not None else "")
    name = "an integer" if kind is int else "a number"

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {name}") from None
        if not (math.isfinite(value) and (value >= low if low_ok else value > low)
                and (high is None or value <= high)):
            raise argparse.ArgumentTypeError(f"{text!r} must be {name} {bound}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


count = bounded(int, 0, True)            # 0, 1, 2, ...
positive_int = bounded(int, 1, True)     # 1, 2, ...
positive_float = bounded(float, 0, False)
non_negative_float = bounded(float, 0, True)
preset_seconds = bounded(float, 0, False, MAX_PRESET_SECONDS)
fps = bounded(float, 0, False, MAX_FPS)
batch_size = bounded(int, 1, True, MAX_BATCH_SIZE)
fine_tune_steps = bounded(int, 0, True, MAX_FINE_TUNE_STEPS)
workers = bounded(int, 1, True, MAX_WORKERS)
seed = bounded(int, 0, True, MAX_SEED)


def add_bad_frames_option(p) -> None:
    """``--on-bad-frames``: what a frame of a video that cannot be decoded becomes (see VideoReader)."""
    p.add_argument("--on-bad-frames", default="hold", choices=["hold", "skip", "error"],
                   help="a video frame that cannot be decoded (a damaged file): hold = repeat the frame before it "
                        "(keeps the length and the audio's sync), skip = leave it out, error = refuse the clip; "
                        "hold and skip print a warning with the count and the frames")


def same_file(a, b) -> bool:
    """Whether two paths name the same file (see :func:`talkinghead.io.same_file`)."""
    from ..io import same_file as same

    return same(a, b)


def refuse_overwriting_inputs(output, inputs, what: str = "-o") -> None:
    """InputError when the output would replace one of the user's input files, or one of them is a
    symbolic link loop (:func:`talkinghead.io.refuse_overwriting`, which the API uses too)."""
    from ..io import refuse_overwriting

    refuse_overwriting(output, [p for p in inputs if p], what)


def add_face_options(p) -> None:
    """``--source IMG`` (repeat) or ``--avatar DIR``: whose face a generating command animates."""
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--source", action="append", metavar="IMG", help="photo of the face (repeat for 1 to 32 photos)")
    who.add_argument("--avatar", metavar="DIR", help="an avatar folder written by `talkinghead finetune`")


def check_sources(paths) -> None:
    """Each ``--source`` photo is an existing, readable file: a wrong path is one line before the model
    loads (decoding it and finding the face are personalize's, after)."""
    from ..io import _check_file

    for path in paths or []:
        _check_file(path, "Image")


def add_model_options(p) -> None:
    # None, not "default": animate --avatar must tell an explicit --model (refused) from no --model
    p.add_argument("--model", default=None,
                   help="model name (looked up in pretrained/, the installed copy, then $TALKINGHEAD_HOME) or a "
                        "model folder (default: default)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="where to run")
    p.add_argument("--backend", default="auto", choices=["auto", "dlib", "face-alignment", "mediapipe"],
                   help="landmark detector; auto = face-alignment if its weights are present, else dlib, and a "
                        "photo in which that finds no face is tried again with MediaPipe")
    p.add_argument("--face-index", type=count, default=0, help="which face when a photo shows several (0 = largest)")


def add_output_options(p) -> None:
    p.add_argument("--crop-only", action="store_true", help="write the face crop instead of pasting it back")
    p.add_argument("--label", default=None, metavar="TEXT", help="draw a visible label such as 'AI-generated'")
    p.add_argument("--no-watermark", action="store_true",
                   help="research only: skip the invisible watermark (recorded in the file's metadata; the signed "
                        "content credentials stay)")
    p.add_argument("--no-credentials", action="store_true",
                   help="leave out the signed C2PA manifest (content credentials) that tells other software the file "
                        "is AI-generated; not recommended: see docs/responsible-use.md")
    p.add_argument("--sign-cert", default=None, metavar="CERT.pem",
                   help="sign the content credentials with this certificate chain (PEM, the signing certificate "
                        "first; default: $TALKINGHEAD_C2PA_CERT, else this installation's self-signed key in the "
                        "cache folder, which identifies the installation, not a trusted publisher)")
    p.add_argument("--sign-key", default=None, metavar="KEY.pem",
                   help="the private key of --sign-cert (PEM, unencrypted; default: $TALKINGHEAD_C2PA_KEY)")
    p.add_argument("--batch-size", type=batch_size, default=8, help="frames generated per batch")
    add_size_option(p)


def add_size_option(p) -> None:
    p.add_argument("--size", default="auto", choices=["auto", "256", "512"],
                   help="the face's resolution: auto = pasted back at the source image's own resolution (crops: 512 "
                        "where the source's face spans 384 px or more, else 256); 256 or 512 = a face crop of that "
                        "size (the network runs at its trained size, its flow, mask and colour are upsampled)")


def check_output(path) -> None:
    """Refuse, before any slow work, an output ``-o`` cannot be: a video (.mp4 .mov .m4v .mkv) or an image
    (.png, .jpg...: one still, the first frame)."""
    from pathlib import Path

    from ..io import IMAGE_EXTENSIONS, check_output_file, check_video_output

    if Path(path).suffix.lower() in IMAGE_EXTENSIONS:
        check_output_file(path, f"Cannot write image {path}", "choose another output path")
    else:
        check_video_output(path)


def signing_key(args):
    """The content credentials' key of ``--sign-cert``/``--sign-key`` (checked: one line before any work
    when it cannot sign), or None: the default key, or no credentials with ``--no-credentials``."""
    if args.no_credentials:
        if args.sign_cert or args.sign_key:
            from ..errors import InputError

            raise InputError("--sign-cert/--sign-key sign the content credentials that --no-credentials leaves "
                             "out: drop one or the other.")
        return None
    from ..credentials import signing_key as load, unavailable_reason

    reason = unavailable_reason()
    if reason is not None:
        if args.sign_cert or args.sign_key:  # asked for by name: not dropped with a mere warning
            from ..errors import DependencyError

            raise DependencyError(f"--sign-cert/--sign-key need c2pa-python, which does not work here ({reason}): "
                                  "run `pip install c2pa-python`, or drop them to write without content credentials.")
        return None  # written without credentials, with one warning (talkinghead.credentials)
    return load(args.sign_cert, args.sign_key)


def add_finetune_options(p, default_steps: int) -> None:
    p.add_argument("--fine-tune-steps", "--steps", dest="fine_tune_steps", type=fine_tune_steps, default=default_steps,
                   help="fine-tuning steps on the photos (0 = feed-forward: embed only)")
    p.add_argument("--patience", type=count, default=None,
                   help="stop fine-tuning when the loss has not improved for this many steps; 0 = never stop "
                        "early (default: 50)")
    p.add_argument("--lr", type=positive_float, default=None, metavar="LR",
                   help="G' learning rate when fine-tuning; D' uses 4x (default: 2e-4, talkinghead.pipeline.FINE_TUNE_LR)")
    add_loss_weight_option(p, "fine-tuning's loss weights (default: the ones the model was meta-trained with)")
    p.add_argument("--amp", default="auto", choices=["auto", "bf16", "off"],
                   help="bf16 autocast while fine-tuning: auto = on CUDA only; bf16 also on CPUs with AMX "
                        "(about 1.5x faster there)")


def add_loss_weight_option(p, help_text: str) -> None:
    p.add_argument("--loss-weight", action="append", default=None, metavar="NAME=VALUE",
                   help=f"{help_text}; repeat for several, e.g. --loss-weight pixel=10 (names: "
                        "content_vgg19, content_vggface, content_stlpips, adversarial, feature_matching, "
                        "embedding_match, pixel, flow_smoothness, flow_magnitude, mask, mouth_pixel, mouth_content, inside_pixel)")


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
            out[name.strip()] = float(value)
        except ValueError:
            raise InputError(f"--loss-weight {item!r} is not NAME=VALUE with a number, e.g. pixel=10.") from None
    try:  # names, and values finite and >= 0
        LossWeights.from_dict(out)
    except ValueError as exc:
        raise InputError(f"--loss-weight: {exc}.") from None
    return out


def finetune_kwargs(args, model) -> dict:
    """personalize() keywords from the fine-tuning options (it checks them); --loss-weight changes
    single terms of the model's own fine-tuning weights."""
    kw = {"fine_tune_steps": args.fine_tune_steps, "amp": args.amp}
    if args.patience is not None:
        kw["patience"] = args.patience
    if args.lr is not None:
        kw["lr"] = args.lr
    weights = parse_loss_weights(args.loss_weight)
    return kw if weights is None else {**kw, "loss_weights": {**model.loss_weights, **weights}}


def write(path, video, args) -> None:
    from pathlib import Path

    from ..io import IMAGE_EXTENSIONS
    from ..pipeline import write_image, write_video

    if getattr(args, "size", "auto") != "auto" and hasattr(video, "face_size"):
        video.face_size = int(args.size)
    marks = {"watermark": not args.no_watermark, "label": args.label, "credentials": not args.no_credentials,
             "signing_key": signing_key(args)}
    if Path(path).suffix.lower() in IMAGE_EXTENSIONS:  # a still: only the first frame is generated
        frames = iter(video)
        write_image(path, next(frames), model_name=video.model_name, animation=video, **marks)
        getattr(frames, "close", lambda: None)()  # stops the generation at once
        print(f"wrote {path}: the first of {len(video)} frames")
        return
    write_video(path, video, **marks)
    extra = "" if not getattr(video, "audio_from", None) else f", audio from {video.audio_from}"
    print(f"wrote {path}: {len(video)} frames at {video.fps:g} fps{extra}")
