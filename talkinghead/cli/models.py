"""``talkinghead models``: the registered model configs with parameters and GFLOPs per network."""
from __future__ import annotations

import argparse


def register(subparsers, formatter_class) -> None:
    p = subparsers.add_parser(
        "models",
        help="list the model configs with parameters and GFLOPs per frame of each network",
        description="For each registered model config, the embedder, generator and discriminator's parameter\n"
                    "counts and forward GFLOPs for one frame (convolutions and matrix products, 2 per multiply-add).",
        formatter_class=formatter_class,
    )
    p.add_argument("configs", nargs="*", metavar="CONFIG", help="configs to show (default: all registered)")
    p.add_argument("--json", action="store_true", help="print a JSON list of rows instead of a table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    from ..config import get_config, list_configs, model_summary

    names = args.configs or list_configs()
    rows = []
    for name in names:
        cfg = get_config(name)  # unknown names raise InputError listing the known ones
        for r in model_summary(cfg):
            rows.append({"config": name, "image_size": cfg.image_size, **r})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    header = f"{'config':<12} {'size':>5} {'network':<14} {'params':>12} {'GFLOPs/frame':>13}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['config']:<12} {r['image_size']:>5} {r['network']:<14} {r['params']:>12,} {r['gflops']:>13.2f}")
    return 0
