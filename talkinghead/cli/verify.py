"""``talkinghead verify FILE...``: is each file marked as talkinghead output, and do its credentials hold?"""
from __future__ import annotations

import argparse

from ._common import bounded

MAX_FRAMES = 10000  # frames examined: the mark is found in a few dozen


def register(subparsers, formatter_class) -> None:
    p = subparsers.add_parser(
        "verify",
        help="check images/videos for talkinghead's signed content credentials (C2PA) and invisible watermark",
        description="Report both marks of each file: the C2PA manifest (content credentials: generator, signer,\n"
                    "actions, validation, whether the hard binding still matches the bytes) and the invisible\n"
                    "watermark, then one verdict. Exit status, one per verdict:\n"
                    "  0  talkinghead output: content credentials valid\n"
                    "  1  not marked (neither mark)\n"
                    "  2  a file is unreadable ('FILE: error: ...' on stderr; the other files are still checked)\n"
                    "  3  manifest stripped, watermark found (a re-encode, or written without credentials)\n"
                    "  4  content changed after signing (the manifest no longer matches the bytes)\n"
                    "  5  foreign manifest: content credentials of another generator\n"
                    "With several files: their status when they all agree, else 2 if one is unreadable, else 1.",
        formatter_class=formatter_class,
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="images or videos to check")
    p.add_argument("--max-frames", type=bounded(int, 1, True, MAX_FRAMES), default=64,
                   help="frames of a video to examine, spread over it")
    p.add_argument("--json", action="store_true", help="print one JSON object per file instead of text")
    p.set_defaults(func=run)


def _watermark_line(det) -> str:
    if not det.found:
        return "watermark: not found"
    who = det.model or f"tag {det.payload!r}"
    alone = f", {det.frames_found}/{det.frames} frames alone" if det.frames > 1 else ""
    return (f"watermark: FOUND (talkinghead, model {who}, confidence {det.confidence:.2f}, "
            f"scale {det.scale:g}{alone})")


def run(args: argparse.Namespace) -> int:
    import json
    import sys

    from ..credentials import STATUS_UNREADABLE, combined_status, describe
    from ..errors import TalkingHeadError
    from ..watermark import verify_file

    statuses = []
    for path in args.files:
        try:
            res = verify_file(path, max_frames=args.max_frames)
        except TalkingHeadError as exc:
            print(f"{path}: error: {exc}", file=sys.stderr)
            statuses.append(STATUS_UNREADABLE)
            continue
        status, verdict = res.verdict
        statuses.append(status)
        det = res.watermark
        if args.json:
            print(json.dumps({"path": res.path, "verdict": verdict, "status": status,
                              "watermark": det.found, "payload": det.payload,
                              "model": det.model, "confidence": round(det.confidence, 3),
                              "scale": det.scale, "frames": det.frames, "frames_found": det.frames_found,
                              "metadata": res.metadata_found, "metadata_tags": res.metadata,
                              "credentials": res.credentials.to_dict() if res.credentials else None}))
        else:
            meta = ("metadata: synthetic, model " + res.tag("model", "?") if res.metadata_found
                    else "metadata: none")
            print(f"{path}: {verdict}")
            for line in (describe(res.credentials) if res.credentials else "manifest: not read",
                         _watermark_line(det), meta):
                print(f"  {line}")
    return combined_status(statuses)
