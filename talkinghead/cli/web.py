"""``talkinghead web``: the local web app (Gradio), for people who will not open a terminal."""
from __future__ import annotations

import argparse

from ._common import bounded

port = bounded(int, 1, True, 65535)


def register(subparsers, formatter_class) -> None:
    from ..web import MAX_SECONDS, MAX_UPLOAD_BYTES

    p = subparsers.add_parser(
        "web", help="a local web app: animate a portrait in the browser, verify a file (needs talkinghead[web])",
        description="Serve a web page for animate and verify: upload a portrait (or pick a public-domain\n"
                    "sample), drive it with a preset, a clip or a voice recording, optionally fine-tune, then\n"
                    "watch and download the watermarked video. Runs offline, with nothing downloaded.\n"
                    "Needs the web extra: pip install 'talkinghead[web]'. See docs/web.md.\n\n"
                    f"Limits in the page: {MAX_UPLOAD_BYTES // 2**20} MB a file; clips, recordings and presets of "
                    f"at most {MAX_SECONDS:g} s.\n\n"
                    "  talkinghead web                      # then open http://localhost:7860/\n"
                    "  talkinghead web --port 8080 --model runs/mine/model",
        formatter_class=formatter_class)
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on; anything but loopback lets others on the network use it (warned)")
    p.add_argument("--port", type=port, default=7860, help="port to listen on")
    p.add_argument("--model", default="default", help="model name or folder")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="where to run")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..web import serve

    serve(args.host, args.port, args.model, args.device)
    return 0
