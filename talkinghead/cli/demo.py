"""``talkinghead demo``: the offline demo: a public-domain portrait talking, with the shipped model."""
from __future__ import annotations

import argparse

from ._common import add_output_options, preset_seconds


def register(subparsers, formatter_class) -> None:
    p = subparsers.add_parser(
        "demo", help="animate a public-domain portrait with the 'talk' preset (offline)",
        description="Animate the astronaut photo that ships with scikit-image (public domain) with the\n"
                    "built-in 'talk' motion and the shipped model. Needs no network and no driving video.",
        formatter_class=formatter_class)
    p.add_argument("-o", "--output", default="demo.mp4", metavar="OUT.mp4", help="output video")
    p.add_argument("--model", default="default", help="model name or folder")
    p.add_argument("--seconds", type=preset_seconds, default=4.0, help="length of the clip")
    p.add_argument("--preset", default="talk", choices=["talk", "idle"], help="motion preset")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="where to run")
    add_output_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from skimage import data

    from ..io import check_video_output
    from ..pipeline import load
    from ._common import write

    check_video_output(args.output)
    from ._common import signing_key

    signing_key(args)  # a key that cannot sign is one line before the model loads
    model = load(args.model, device=args.device)
    avatar = model.personalize([data.astronaut()], progress=False)
    video = avatar.animate_preset(args.preset, seconds=args.seconds, fps=25.0, crop_only=args.crop_only,
                                  batch_size=args.batch_size)
    write(args.output, video, args)
    return 0
