"""``talkinghead verify FILE...``: is each file marked as talkinghead output?"""
from __future__ import annotations

import argparse

from ._common import bounded

MAX_FRAMES = 10000  # frames examined: the mark is found in a few dozen


def register(subparsers, formatter_class) -> None:
    p = subparsers.add_parser(
        "verify",
        help="check images/videos for the talkinghead watermark and provenance metadata",
        description="Look for the invisible talkinghead watermark and the 'synthetic' metadata in each file.\n"
                    "Exit status: 0 when every file is marked, 1 when some are not, 2 when a file is unreadable\n"
                    "(reported as 'FILE: error: ...' on stderr; the other files are still checked).",
        formatter_class=formatter_class,
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="images or videos to check")
    p.add_argument("--max-frames", type=bounded(int, 1, True, MAX_FRAMES), default=64,
                   help="frames of a video to examine, spread over it")
    p.add_argument("--json", action="store_true", help="print one JSON object per file instead of text")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json
    import sys

    from ..errors import TalkingHeadError
    from ..watermark import verify_file

    status = 0
    for path in args.files:
        try:
            res = verify_file(path, max_frames=args.max_frames)
        except TalkingHeadError as exc:
            print(f"{path}: error: {exc}", file=sys.stderr)
            status = 2
            continue
        det = res.watermark
        if args.json:
            print(json.dumps({"path": res.path, "watermark": det.found, "payload": det.payload,
                              "model": det.model, "confidence": round(det.confidence, 3),
                              "scale": det.scale, "frames": det.frames, "frames_found": det.frames_found,
                              "metadata": res.metadata_found, "metadata_tags": res.metadata}))
        else:
            if det.found:
                who = det.model or f"tag {det.payload!r}"
                mark = (f"watermark FOUND (talkinghead, model {who}, confidence {det.confidence:.2f}, "
                        f"scale {det.scale:g}" + (f", {det.frames_found}/{det.frames} frames alone" if det.frames > 1 else "") + ")")
            else:
                mark = "watermark not found"
            meta = ("metadata: synthetic, model " + res.tag("model", "?") if res.metadata_found
                    else "metadata: none")
            print(f"{path}: {mark}; {meta}")
        if not res.marked and status == 0:
            status = 1
    return status
