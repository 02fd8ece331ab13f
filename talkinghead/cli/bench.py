"""``talkinghead bench``: speed and memory of animation, fine-tuning, landmarks and training (one JSON)."""
from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers, formatter_class) -> None:
    p = subparsers.add_parser(
        "bench", help="benchmark animation, fine-tuning, landmarks, training and FLOP use; write one JSON",
        description="Runs benchmarks/run.py of the source checkout: animation frames/s (crop only, pasted into\n"
                    "512 px and 1080p frames), fine-tuning seconds for 1/8/32 photos (extrapolated from a few\n"
                    "steps), landmark frames/s per backend, training steps/s, peak memory and the generator's\n"
                    "FLOP/s against a plain conv and matmul, on CPU and on CUDA when present.\n\n"
                    "  talkinghead bench --quick -o /tmp/bench",
        formatter_class=formatter_class)
    p.add_argument("-o", "--output", default=None, metavar="DIR",
                   help="folder for bench-<device>.json (default: the checkout's benchmarks/results; with "
                        "--quick $TMPDIR/talkinghead-bench, so the committed numbers stay)")
    p.add_argument("--quick", action="store_true", help="tiny config, a few frames and steps (seconds)")
    p.set_defaults(func=run)


def bench_script() -> Path:
    """``benchmarks/run.py`` of the checkout this package runs from."""
    from ..errors import InputError

    script = Path(__file__).resolve().parents[2] / "benchmarks" / "run.py"
    if not script.is_file():
        raise InputError(f"{script} is missing: `talkinghead bench` runs from a source checkout of talkinghead "
                         "(git clone it and install with pip install -e .).")
    return script


def run(args: argparse.Namespace) -> int:
    import importlib.util

    script = bench_script()
    spec = importlib.util.spec_from_file_location("_talkinghead_bench_run", script)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    path = mod.run_benchmarks(args.output, quick=args.quick)
    print(f"wrote {path}")
    return 0
