"""Animate a painting with the motion of a driving video, through the Python API.

    python examples/animate_painting.py                       # Mona Lisa + a clip from ../shared/data/eval
    python examples/animate_painting.py --source me.jpg --driving speech.mp4 -o me.mp4 --max-frames 100

The defaults point at the real test material kept beside a source checkout (``../shared/data/eval/``,
relative to the repository root). The output keeps the driving clip's fps and audio and carries the
talkinghead watermark (check it with ``talkinghead verify OUT``).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EVAL = REPO.parent / "shared" / "data" / "eval"


def default_driving() -> Path:
    """The first driving clip of ``../shared/data/eval/driving/`` (or where it would be)."""
    clips = sorted((EVAL / "driving").glob("*.mp4"))
    return clips[0] if clips else EVAL / "driving" / "liveportrait__driving__d0.mp4"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--source", type=Path, default=EVAL / "source" / "liveportrait__source__s9.jpg",
                   help="portrait or painting")
    p.add_argument("--driving", type=Path, default=default_driving(), help="driving video")
    p.add_argument("-o", "--output", type=Path, default=Path("out.mp4"), help="output video")
    p.add_argument("--model", default="default", help="model name or folder")
    p.add_argument("--motion", default="relative", choices=["relative", "absolute"])
    p.add_argument("--max-frames", type=int, default=None, help="animate only the first N driving frames")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--label", default=None, help="visible label, e.g. AI-generated")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    for what, path in (("source image", args.source), ("driving video", args.driving)):
        if not path.is_file():
            print(f"The {what} {path} does not exist: pass --{what.split()[0]} PATH "
                  "(the defaults need ../shared/data/eval/ beside the repository).", file=sys.stderr)
            return 2

    import talkinghead as th

    try:
        model = th.load(args.model, device=args.device)
        avatar = model.personalize(args.source)                 # feed-forward: embed the painting
        video = avatar.animate(args.driving, motion=args.motion, max_frames=args.max_frames)
        th.write_video(args.output, video, label=args.label)    # watermark, metadata, driving audio
    except th.TalkingHeadError as exc:                         # no face, missing weights, bad file
        print(f"error: {exc}", file=sys.stderr)
        return 2
    audio = f", audio from {video.audio_from.name}" if video.audio_from else ""
    print(f"wrote {args.output}: {len(video)} frames at {video.fps:g} fps{audio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
