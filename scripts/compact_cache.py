"""Shrink a preprocessing cache to a size budget, to carry it to a remote GPU machine.

Keeps every clip (so D's table keeps one row per video), an evenly spaced subset of each clip's
frames, re-encoded as JPEG at ``--quality``; landmarks and meta come along untouched. The number of
frames per clip is the largest that fits ``--budget-mib`` (measured on a sample, then checked).

    python scripts/compact_cache.py cache/train -o cache/train-small --budget-mib 55 --quality 85
"""
import argparse
import sys
from pathlib import Path

import numpy as np

from talkinghead.data import CacheEntry, list_entries, write_entry


def evenly(n: int, k: int) -> np.ndarray:
    """``k`` indices spread over ``range(n)``, first and last included (all of them when ``k >= n``)."""
    return np.arange(n) if k >= n else np.unique(np.linspace(0, n - 1, k).round().astype(int))


def bytes_per_frame(entries: list[CacheEntry], quality: int, sample: int = 4) -> float:
    import cv2

    sizes = []
    for e in entries:
        for t in evenly(len(e), sample):
            ok, buf = cv2.imencode(".jpg", e.frame(int(t))[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
            sizes.append(buf.size)
    return float(np.mean(sizes)) + 8 * 68 * 2 / 2 + 16  # + landmarks (float32) and offsets/indices


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cache")
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--budget-mib", type=float, default=55.0)
    ap.add_argument("--quality", type=int, default=85)
    ap.add_argument("--min-frames", type=int, default=9, help="K + 1: fewer frames per clip cannot make an episode")
    args = ap.parse_args()

    entries = [CacheEntry.load(p) for p in list_entries(args.cache)]
    per_frame = bytes_per_frame(entries, args.quality)
    lengths = np.array([len(e) for e in entries])
    budget = args.budget_mib * 2**20 * 0.97  # npz headers and JPEG variance
    k = int(lengths.max())
    while k > args.min_frames and np.minimum(lengths, k).sum() * per_frame > budget:
        k -= 1
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    for e in entries:
        keep = evenly(len(e), k)
        write_entry(out / f"{e.name}.npz", [e.frame(int(t)) for t in keep], e.landmarks[keep],
                    frame_index=e.frame_index[keep], meta=e.meta, jpeg_quality=args.quality)
    total = sum(p.stat().st_size for p in out.glob("*.npz"))
    print(f"{len(entries)} clips, at most {k} frames each ({int(np.minimum(lengths, k).sum())} frames), "
          f"JPEG quality {args.quality}: {total / 2**20:.1f} MiB in {out}")
    return 0 if total <= args.budget_mib * 2**20 else 1


if __name__ == "__main__":
    sys.exit(main())
