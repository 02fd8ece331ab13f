"""Landmark detection speed per available backend on the eval driving clips.

    python benchmarks/landmarks.py -o benchmarks/results/landmarks.json [--frames 60]
    python benchmarks/landmarks.py --derive-mediapipe   # re-derive MEDIAPIPE_TO_IBUG68 against dlib

Frames are decoded before timing (decoding is not counted); each backend's models are loaded and warmed
up on one frame first. Reports frames/s and the share of frames with a face.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from talkinghead.atomic import atomic_write_text  # noqa: E402
from talkinghead.errors import TalkingHeadError  # noqa: E402
from talkinghead.io import read_video  # noqa: E402
from talkinghead.landmarks import detectors as D  # noqa: E402


def data_dir() -> Path:
    import os

    env = os.environ.get("TALKINGHEAD_DATA")
    d = Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"
    if not (d / "eval" / "driving").is_dir():
        sys.exit(f"no eval clips in {d}/eval/driving: set TALKINGHEAD_DATA to the data folder")
    return d


def available_backends() -> list[str]:
    out = ["dlib"]
    if D.face_alignment_weights_present():
        out.append("face-alignment")
    try:
        import mediapipe  # noqa: F401

        out.append("mediapipe")
    except ImportError:
        pass
    return out


def derive_mediapipe(clips: list[Path], frames: int) -> None:
    """Nearest mesh vertex per dlib point, by median distance in inter-ocular units."""
    dl, mp = D.get_detector("dlib").load(), D.MediaPipeDetector(max_faces=1).load()
    dists = []
    for clip in clips:
        for f in read_video(clip, max_frames=frames)[0][::5]:
            a, res = dl.detect(f), mp._mesh.process(f)
            if len(a) != 1 or not res.multi_face_landmarks:
                continue
            h, w = f.shape[:2]
            mesh = np.array([[p.x * w, p.y * h] for p in res.multi_face_landmarks[0].landmark])
            lm = a[0].landmarks.astype(np.float64)
            iod = np.linalg.norm(lm[36:42].mean(0) - lm[42:48].mean(0))
            dists.append(np.linalg.norm(lm[:, None] - mesh[None], axis=2) / iod)
    dists = np.stack(dists)
    idx = np.median(dists, axis=0).argmin(1)
    err = dists[:, np.arange(68), idx]
    print(f"{len(dists)} frames; table: {tuple(int(i) for i in idx)}")
    print(f"mean error / eye distance: {err.mean():.3f} (jaw {err[:, :17].mean():.3f}, rest {err[:, 17:].mean():.3f})")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-o", "--output", default="benchmarks/results/landmarks.json")
    ap.add_argument("--frames", type=int, default=60, help="frames per clip")
    ap.add_argument("--backends", nargs="*", default=None, help="default: every available backend")
    ap.add_argument("--derive-mediapipe", action="store_true")
    args = ap.parse_args(argv)
    clips = sorted((data_dir() / "eval" / "driving").iterdir())
    if args.derive_mediapipe:
        derive_mediapipe(clips, 150)
        return 0
    videos = {c.name: read_video(c, max_frames=args.frames)[0] for c in clips}
    rows = []
    for name in args.backends or available_backends():
        try:
            det = D.get_detector(name).load()
        except TalkingHeadError as exc:
            print(f"skip {name}: {exc}")
            continue
        det.detect(next(iter(videos.values()))[0])  # warm-up
        n = found = 0
        t0 = time.perf_counter()
        for frames in videos.values():
            for f in frames:
                found += bool(det.detect(f))
                n += 1
        dt = time.perf_counter() - t0
        rows.append({"backend": det.name, "frames": n, "seconds": round(dt, 3), "fps": round(n / dt, 2),
                     "ms_per_frame": round(1000 * dt / n, 2), "face_found": round(found / n, 4)})
    result = {"clips": list(videos), "frames_per_clip": args.frames,
              "resolution": sorted({f"{v.shape[2]}x{v.shape[1]}" for v in videos.values()}),
              "machine": {"python": platform.python_version(), "cpu": platform.processor() or platform.machine()},
              "results": rows}
    atomic_write_text(args.output, json.dumps(result, indent=2) + "\n")
    print(f"{'backend':16s} {'frames':>7s} {'fps':>8s} {'ms/frame':>9s} {'found':>6s}")
    for r in rows:
        print(f"{r['backend']:16s} {r['frames']:7d} {r['fps']:8.1f} {r['ms_per_frame']:9.1f} {r['face_found']:6.1%}")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
