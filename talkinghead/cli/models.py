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
    p.add_argument("configs", nargs="*", metavar="CONFIG",
                   help="configs to show, or pretrained models by name or folder such as default (default: all "
                        "registered configs)")
    p.add_argument("--json", action="store_true", help="print a JSON list of rows instead of a table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    from ..config import list_configs
    from ..models import model_summary

    names = args.configs or list_configs()
    rows = []
    for name in names:
        cfg = _config_of(name, list_configs())
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


def _config_of(name: str, configs: list[str]):
    """A registered config, else the config of a pretrained model (its config.json only, no weights read)."""
    from ..config import get_config
    from ..errors import InputError, WeightsError
    from ..hub import CONFIG_NAME, _read_config, resolve_pretrained

    if name in configs:
        return get_config(name)
    try:
        cfg, _ = _read_config(resolve_pretrained(name) / CONFIG_NAME)
    except WeightsError:
        raise InputError(f"{name!r} is neither a model config ({', '.join(configs)}) nor a pretrained model "
                         "(a name in pretrained/ or a folder holding config.json): check the name.") from None
    return cfg
