"""``talkinghead live``: animate a portrait from a camera (or a video standing in for one), frame by frame."""
from __future__ import annotations

import argparse

from ._common import (add_face_options, add_model_options, add_size_option, check_sources, count, positive_int,
                      refuse_overwriting_inputs)


def register(subparsers, formatter_class) -> None:
    p = subparsers.add_parser(
        "live", help="animate a portrait live from a camera, with a preview window, a virtual camera and a file",
        description="Animate the face in --source (or a saved --avatar) frame by frame as the camera's frames\n"
                    "arrive. Shows a preview window where a display exists (q or Esc stops), sends the frames to a\n"
                    "virtual camera where pyvirtualcam is installed (pip install 'talkinghead[live]') and writes\n"
                    "-o OUT.mp4, all watermarked; the output file is also tagged and signed as synthetic. When\n"
                    "animation cannot keep up, the newest frame is animated and the ones it replaced are dropped:\n"
                    "the summary says how many. Ctrl-C ends a camera session and keeps the file.\n\n"
                    "  talkinghead live --source me.jpg --camera 0\n"
                    "  talkinghead live --source mona_lisa.jpg --driving speech.mp4 -o out.mp4",
        formatter_class=formatter_class)
    add_face_options(p)
    how = p.add_mutually_exclusive_group()
    how.add_argument("--camera", type=count, default=None, metavar="N", help="camera index (default: 0)")
    how.add_argument("--driving", metavar="VIDEO",
                     help="a video file standing in for the camera (played at its own frame rate)")
    p.add_argument("-o", "--output", default=None, metavar="OUT.mp4", help="also write the animation to this video")
    p.add_argument("--preview", default="auto", choices=["auto", "on", "off"],
                   help="the preview window: auto = where a display exists")
    p.add_argument("--virtual-camera", default="auto", choices=["auto", "on", "off"],
                   help="send the frames to a virtual camera: auto = where pyvirtualcam is installed and finds one")
    p.add_argument("--every-frame", action="store_true",
                   help="with --driving: animate every frame however long it takes, instead of the clip's real time")
    p.add_argument("--max-frames", type=positive_int, default=None, help="stop after N input frames")
    p.add_argument("--crop-only", action="store_true", help="show the face crop instead of pasting it back")
    p.add_argument("--label", default=None, metavar="TEXT", help="draw a visible label such as 'AI-generated'")
    p.add_argument("--no-watermark", action="store_true", help="research only: skip the invisible watermark")
    p.add_argument("--no-credentials", action="store_true", help="leave the signed C2PA manifest out of -o's file")
    p.add_argument("--json", default=None, metavar="SUMMARY.json", help="write the session's summary (latency, drops) here")
    add_size_option(p)
    add_model_options(p)
    p.set_defaults(func=run, sign_cert=None, sign_key=None)


def run(args: argparse.Namespace) -> int:
    import json

    from ..errors import InputError
    from ..pipeline import Avatar, load
    from ._common import check_output, signing_key

    if args.every_frame and args.driving is None:
        raise InputError("--every-frame only applies to --driving: a camera does not wait.")
    if args.output is not None:
        refuse_overwriting_inputs(args.output, [*(args.source or []), args.driving, args.avatar])
        check_output(args.output)
        if not str(args.output).lower().endswith((".mp4", ".mov", ".m4v", ".mkv")):
            raise InputError(f"-o {args.output}: live mode writes a video (.mp4 .mov .m4v .mkv).")
    if args.json is not None:  # the summary is written after the session: its path is checked now
        from ..io import check_output_file

        refuse_overwriting_inputs(args.json, [*(args.source or []), args.driving, args.avatar, args.output], "--json")
        check_output_file(args.json, f"Cannot write the summary {args.json}", "choose another --json path")
    check_sources(args.source)
    from ..live import check_outputs, open_camera

    check_outputs(args.output, args.preview, args.virtual_camera)  # somewhere to show it, before the model loads
    if args.driving is not None:
        from ..io import VideoReader

        with VideoReader(args.driving, max_frames=1) as reader:  # readable, with a frame, before the model loads
            reader.read_all()
    else:
        open_camera(args.camera or 0).release()  # the camera opens, before the model loads
    key = signing_key(args)
    if args.avatar:
        avatar = Avatar.load(args.avatar, device=args.device)
    else:
        model = load(args.model or "default", device=args.device)
        avatar = model.personalize(args.source, backend=args.backend, face_index=args.face_index, progress=False)
    from ..live import run_live

    summary = run_live(avatar, camera=None if args.driving else (args.camera or 0), driving=args.driving,
                       output=args.output, preview=args.preview, virtual_camera=args.virtual_camera,
                       realtime=not args.every_frame, max_frames=args.max_frames,
                       face_size=None if args.size == "auto" else int(args.size), crop_only=args.crop_only,
                       watermark=not args.no_watermark, label=args.label, credentials=not args.no_credentials,
                       signing_key=key)
    if args.json:
        from ..atomic import atomic_write_text

        atomic_write_text(args.json, json.dumps(summary.as_dict(), indent=1) + "\n")
    print(summary.line())
    if args.output:
        held = summary.frames_written - summary.animated
        gaps = max(0, held - len(summary.dropped))  # slots a camera left empty (it delivered below its fps)
        why = " and ".join(([f"{len(summary.dropped)} dropped"] if summary.dropped else []) +
                           ([f"{gaps} slots the camera left empty"] if gaps else []))
        extra = f" ({held} of them repeat the frame before, in place of {why})" if held else ""
        print(f"wrote {args.output}: {summary.frames_written} frames at {summary.input_fps:g} fps{extra}")
    return 0
