"""Fine-tune on a few photos of one person (or N frames of a clip), save the avatar, animate it.

    python examples/finetune_photos.py --photos me1.jpg me2.jpg me3.jpg --steps 200 -o me/
    python examples/finetune_photos.py --video clip.mp4 --frames 8 --steps 100 -o clip_avatar/

Without --photos or --video, 8 frames of the first clip in ../shared/data/eval/driving/ (beside a
source checkout) are used. The avatar folder can be animated later with
``talkinghead animate --avatar DIR --driving VIDEO -o OUT.mp4``; this script animates it with the
built-in ``talk`` preset into DIR/preview.mp4.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
EVAL = REPO.parent / "shared" / "data" / "eval"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    who = p.add_mutually_exclusive_group()
    who.add_argument("--photos", nargs="+", type=Path, help="1 to 32 photos of one person")
    who.add_argument("--video", type=Path, help="a clip of one person: --frames of it are the photos")
    p.add_argument("--frames", type=int, default=8, help="frames taken from --video, evenly spaced")
    p.add_argument("-o", "--output", type=Path, default=Path("avatar"), help="avatar folder to write")
    p.add_argument("--model", default="default", help="model name or folder")
    p.add_argument("--steps", type=int, default=100, help="fine-tuning steps (0 = feed-forward)")
    p.add_argument("--patience", type=int, default=50, help="stop when the loss stalls this many steps")
    p.add_argument("--seconds", type=float, default=4.0, help="length of the preview animation")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    args = p.parse_args(argv)
    if args.photos is None and args.video is None:
        clips = sorted((EVAL / "driving").glob("*.mp4"))
        args.video = clips[0] if clips else EVAL / "driving" / "liveportrait__driving__d0.mp4"
    return args


def frames_of(video: Path, n: int) -> list[np.ndarray]:
    """``n`` evenly spaced uint8 (H, W, 3) RGB frames of a clip (decoded in one streaming pass)."""
    from talkinghead import VideoReader

    with VideoReader(video) as reader:
        total = max(1, reader.num_frames)  # may be an estimate: keep what the stream really holds
        wanted = set(np.linspace(0, total - 1, num=min(n, total)).round().astype(int).tolist())
        return [frame for i, frame in enumerate(reader) if i in wanted]


def main(argv=None) -> int:
    args = parse_args(argv)
    inputs = args.photos or [args.video]
    missing = [p for p in inputs if not p.is_file()]
    if missing:
        print(f"{missing[0]} does not exist: pass --photos or --video with existing files "
              "(the default needs ../shared/data/eval/ beside the repository).", file=sys.stderr)
        return 2

    import talkinghead as th

    try:
        photos = [str(p) for p in args.photos] if args.photos else frames_of(args.video, args.frames)
        model = th.load(args.model, device=args.device)
        print(f"fine-tuning {model.name} on {len(photos)} photo(s) for up to {args.steps} steps")
        avatar = model.personalize(photos, fine_tune_steps=args.steps, patience=args.patience)
        avatar.save(args.output)
        info = avatar.info
        print(f"saved {args.output}: {info['fine_tune_steps']} steps"
              + (f" in {info['seconds']} s on {info['device']}" if info["fine_tune_steps"] else " (feed-forward)")
              + (", stopped early" if info.get("stopped_early") else ""))

        avatar = th.Avatar.load(args.output, device=args.device)                 # what `animate --avatar` does
        preview = args.output / "preview.mp4"
        th.write_video(preview, avatar.animate_preset("talk", seconds=args.seconds))
    except th.TalkingHeadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {preview}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
