"""``talkinghead animate``: a portrait or painting (or a saved avatar) driven by a video or a preset."""
from __future__ import annotations

import argparse

from ._common import (add_bad_frames_option, add_face_options, add_finetune_options, add_model_options,
                      add_output_options, check_sources, count, finetune_kwargs, fps, positive_int, preset_seconds,
                      refuse_overwriting_inputs)


def register(subparsers, formatter_class) -> None:
    p = subparsers.add_parser(
        "animate", help="animate a portrait, painting or avatar from a driving video or a motion preset",
        description="Animate the face in --source photos (or a saved --avatar) with the motion of --driving,\n"
                    "or with a built-in --motion-preset. The output keeps the driving clip's fps and audio\n"
                    "and is marked as synthetic (invisible watermark, metadata and signed C2PA content\n"
                    "credentials). An image name (-o still.png) writes the first frame alone.\n\n"
                    "  talkinghead animate --source mona_lisa.jpg --driving speech.mp4 -o out.mp4\n"
                    "  talkinghead animate --avatar me/ --driving speech.mp4 -o out.mp4\n"
                    "  talkinghead animate --source me.jpg --motion-preset talk --seconds 5 -o out.mp4\n"
                    "  talkinghead animate --source mona_lisa.jpg --audio speech.wav -o out.mp4   # lips follow the audio",
        formatter_class=formatter_class)
    add_face_options(p)
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--driving", metavar="VIDEO", help="driving video whose face motion is transferred")
    how.add_argument("--motion-preset", choices=["talk", "idle"], help="built-in motion instead of a driving video")
    how.add_argument("--audio", metavar="SPEECH",
                     help="a sound track (wav, mp3, m4a, or a video's audio) that the face speaks: the lips, jaw and "
                          "brows follow it (pretrained/audio2motion); at most 600 s")
    p.add_argument("-o", "--output", required=True, metavar="OUT.mp4",
                   help="output video (.mp4 .mov .m4v .mkv), or an image (.png .jpg ...) for the first frame alone")
    p.add_argument("--motion", default="relative", choices=["relative", "absolute"],
                   help="relative keeps the source's face shape; absolute uses the driver's landmarks as they are")
    p.add_argument("--reference", default="best",
                   help="driving frame that relative motion is measured from: best (most like the source, its mouth as "
                        "open as the source's, its eyes as open as the driver's usually are), first, or an index")
    p.add_argument("--seconds", type=preset_seconds, default=None, help="length with --motion-preset (default: 5)")
    p.add_argument("--fps", type=fps, default=None, help="frame rate with --motion-preset or --audio (default: 25)")
    p.add_argument("--head-motion", choices=["none", "natural"], default=None,
                   help="with --audio: natural = speech-aware head sway, nods and blinks; none = a still head "
                        "(blinks only) (default: natural)")
    p.add_argument("--audio-model", default=None, metavar="NAME_OR_DIR",
                   help="with --audio: the audio-to-motion model, a name or a folder (default: audio2motion)")
    p.add_argument("--max-frames", type=positive_int, default=None, help="animate only the first N driving frames")
    p.add_argument("--driving-face-index", type=count, default=0, metavar="N",
                   help="which face of the driving clip to follow when it shows several (0 = largest)")
    p.add_argument("--redetect-every", type=positive_int, default=None, metavar="N",
                   help="with dlib landmarks, detect the driving face once every N frames and follow it "
                        "in between, 5x faster (default: 1, every frame; following lowered eye-opening correlation in a check)")
    add_bad_frames_option(p)
    add_model_options(p)
    add_finetune_options(p, default_steps=0)
    add_output_options(p)
    p.set_defaults(func=run)


def check_before_work(args: argparse.Namespace) -> None:
    """Every mistake that can be seen without the model, found before minutes of fine-tuning."""
    from ..errors import InputError
    from ..io import VideoReader
    from ._common import check_output, signing_key

    refuse_overwriting_inputs(args.output, [*(args.source or []), args.driving, args.avatar, args.audio])
    check_output(args.output)
    check_sources(args.source)
    signing_key(args)  # a key that cannot sign is one line now, not after fine-tuning
    if args.avatar:
        extra = [flag for flag, used in (("--fine-tune-steps", args.fine_tune_steps), ("--lr", args.lr is not None),
                                         ("--loss-weight", bool(args.loss_weight)), ("--amp", args.amp != "auto"),
                                         ("--patience", args.patience is not None), ("--face-index", args.face_index),
                                         ("--model", args.model is not None)) if used]
        if extra:
            raise InputError(f"{', '.join(extra)} cannot be used with --avatar, which is already personalised: "
                             "drop them, or run `talkinghead finetune` again to make a new avatar.")
    if not args.audio:
        extra = [flag for flag, value in (("--head-motion", args.head_motion), ("--audio-model", args.audio_model))
                 if value is not None]
        if extra:
            raise InputError(f"{', '.join(extra)} only apply to --audio.")
    if args.driving:
        extra = [flag for flag, value in (("--seconds", args.seconds), ("--fps", args.fps)) if value is not None]
        if extra:
            raise InputError(f"{', '.join(extra)} only apply to --motion-preset: a driving video sets the length "
                             "and frame rate (use --max-frames to shorten it).")
        with VideoReader(args.driving, max_frames=1) as reader:  # readable, with at least one frame
            reader.read_all()
    elif args.max_frames is not None:
        raise InputError("--max-frames only applies to --driving: with --audio the audio sets the length, with "
                         "--motion-preset --seconds does.")
    elif args.redetect_every is not None:
        raise InputError("--redetect-every only applies to --driving: it says how the driving face is tracked.")
    elif args.audio:
        _check_audio_args(args)
    else:
        from ..motion import preset_frames

        preset_frames(args.motion_preset, args.seconds or 5.0, args.fps or 25.0)  # --seconds x --fps frames, bounded


def _check_audio_args(args: argparse.Namespace) -> None:
    """--audio: its options, the sound track (an audio track, not silence only, not too long) and the model."""
    from ..audio import check_audio, frame_count
    from ..audio2motion import load_audio_model
    from ..checks import MAX_FRAMES
    from ..errors import InputError

    if args.seconds is not None:
        raise InputError("--seconds only applies to --motion-preset: the audio sets the length.")
    samples = check_audio(args.audio)
    n = frame_count(len(samples), args.fps or 25.0)
    if n > MAX_FRAMES:
        raise InputError(f"{args.audio} at {args.fps or 25.0:g} fps is {n} frames, more than the {MAX_FRAMES} an "
                         "animation can have: lower --fps.")
    load_audio_model(args.audio_model or "audio2motion")  # missing or bad weights: one line now


def run(args: argparse.Namespace) -> int:
    from ..pipeline import Avatar, load

    check_before_work(args)
    if args.avatar:
        avatar = Avatar.load(args.avatar, device=args.device)
        print(f"loaded {avatar}")
    else:
        model = load(args.model or "default", device=args.device)
        avatar = model.personalize(args.source, backend=args.backend, face_index=args.face_index,
                                   **finetune_kwargs(args, model))
        faces = avatar.source.num_faces
        print(f"personalised {model.name} on {len(args.source)} photo(s)"
              + (f" ({faces} faces in {avatar.source.name}, used #{args.face_index})" if faces > 1 else ""))
    if args.driving:
        ref = int(args.reference) if args.reference.lstrip("-").isdigit() else args.reference
        if ref not in ("best", "first") and not isinstance(ref, int):
            from ..errors import InputError

            raise InputError(f"--reference must be best, first or a frame index, not {args.reference!r}.")
        video = avatar.animate(args.driving, motion=args.motion, reference=ref, crop_only=args.crop_only, backend=args.backend,
                               face_index=args.driving_face_index, max_frames=args.max_frames,
                               batch_size=args.batch_size, on_bad_frames=args.on_bad_frames,
                               redetect_every=args.redetect_every)
        filled = video.info.get("filled_frames", 0)
        if filled:
            print(f"{filled} driving frame(s) without a detected face were interpolated")
    elif args.audio:
        video = avatar.animate_audio(args.audio, fps=args.fps or 25.0, head_motion=args.head_motion or "natural",
                                     model=args.audio_model or "audio2motion", crop_only=args.crop_only,
                                     batch_size=args.batch_size)
    else:
        video = avatar.animate_preset(args.motion_preset, seconds=args.seconds or 5.0, fps=args.fps or 25.0,
                                      crop_only=args.crop_only, batch_size=args.batch_size)
    from ._common import write

    write(args.output, video, args)
    return 0
