"""``talkinghead preprocess``: whole clips -> face crops + landmarks in a training cache."""
from __future__ import annotations

import os

from ._common import bounded, positive_int, workers

MAX_FRAMES = 10000  # frames kept per clip: a larger number is a typo that would hold the whole clip in memory

DESCRIPTION = """\
Crop the face of every frame of the given clips (files or folders) into CACHE: one .npz per clip with
JPEG crops, (T, 68, 2) landmarks in crop pixels and a JSON record (with the identity from --manifest).
At most --max-frames frames per clip are kept, evenly spaced over the clip; frames with no face are
dropped. Rerunning skips clips already done (or already skipped), and warns when they were made with other
settings (--overwrite redoes them); a report lists what was skipped and why.

example: talkinghead preprocess ../shared/data/train -o cache/train --manifest ../shared/data/MANIFEST.csv
"""


def register(subparsers, formatter_class) -> None:
    p = subparsers.add_parser("preprocess", help="crop faces + landmarks of training clips into a cache",
                              description=DESCRIPTION, formatter_class=formatter_class)
    p.add_argument("videos", nargs="+", metavar="VIDEO", help="video files or folders holding them")
    p.add_argument("-o", "--output", required=True, metavar="CACHE", help="cache folder")
    p.add_argument("--size", type=positive_int, default=256, help="side of the square face crops, in pixels (64 to 1024)")
    p.add_argument("--max-frames", type=bounded(int, 1, True, MAX_FRAMES), default=300,
                   help="frames kept per clip (evenly spaced)")
    p.add_argument("--min-frames", type=positive_int, default=9, help="clips with fewer face frames are skipped (K+1 = 9)")
    p.add_argument("--workers", type=workers, default=max(1, min(4, (os.cpu_count() or 1))), help="processes")
    p.add_argument("--manifest", metavar="CSV", help="CSV with path,identity columns (paths relative to the CSV)")
    p.add_argument("--backend", "--detector", dest="detector", default="dlib",
                   choices=["dlib", "face-alignment", "mediapipe", "auto"],
                   help="landmark backend (dlib works offline; --detector is an older name)")
    p.add_argument("--overwrite", action="store_true", help="redo clips already in the cache")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..data import preprocess

    report = preprocess(args.videos, args.output, size=args.size, max_frames=args.max_frames,
                        min_frames=args.min_frames, manifest=args.manifest, workers=args.workers,
                        detector=args.detector, overwrite=args.overwrite)
    print(report.summary())
    return 0 if report.count("done") + report.count("exists") > 0 else 1
