"""Memory on a long 1080p driving clip (issue 18): does ``talkinghead animate`` stay flat?

    nice -n 10 python benchmarks/memory.py [--minutes 10] [-o benchmarks/results] [--threads 2]

Makes a 1920x1080, 25 fps driving clip of ``--minutes`` minutes from the eval clip ``d0`` (its frames
scaled to 1080 px high on a grey 16:9 canvas, played forwards and backwards so the motion never jumps),
then runs the shipped command on it exactly as a user would,
``talkinghead animate --source s10.jpg --driving long.mp4 -o out.mp4``, in a child process. Every
second it reads the resident memory of the child and of its own children (ffmpeg's decoder and
encoder) from ``/proc``, and the tqdm bar's phase (landmarks, then frames) from its stderr.

The answer is the resident memory over the run: peak, and its growth over each phase (the median of the
last tenth of the phase minus the median of its second tenth, so start-up and the first allocations do
not count as growth), in MB and MB per minute of video. Flat means a growth that is small beside the
peak and does not scale with the clip's length: compare a 1-minute and a 10-minute run.

Writes ``<out>/memory-cpu.json``. Linux only (``/proc``).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DATA = REPO.parent / "shared" / "data" / "eval"
SOURCE = DATA / "source" / "liveportrait__source__s10.jpg"
DRIVING = DATA / "driving" / "liveportrait__driving__d0.mp4"
FPS = 25


def long_clip(path: Path, minutes: float, base: Path | None) -> int:
    """Write the 1080p driving clip; returns its frame count."""
    import cv2

    from talkinghead.io import VideoReader, VideoWriter

    if base is not None and base.is_file():
        with VideoReader(base) as r:
            frames = [f for f in r]
    else:  # the astronaut nodding, where the eval data is absent
        from skimage import data

        img = data.astronaut()
        frames = [np.roll(img, int(6 * np.sin(i / 4)), axis=0) for i in range(50)]
    side = 1080
    canvas = np.full((1080, 1920, 3), 128, np.uint8)
    ox = (1920 - side * frames[0].shape[1] // frames[0].shape[0]) // 2
    hd = []
    for f in frames:
        w = side * f.shape[1] // f.shape[0]
        c = canvas.copy()
        c[:, ox:ox + w] = cv2.resize(f, (w, side), interpolation=cv2.INTER_LINEAR)
        hd.append(c)
    cycle = hd + hd[-2:0:-1]  # forwards, then backwards: no jump where the loop closes
    total = int(round(minutes * 60 * FPS))
    with VideoWriter(path, FPS, preset="ultrafast") as w:
        for i in range(total):
            w.write(cycle[i % len(cycle)])
    return total


def _children(pid: int) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if ppid == pid:
                out.append(int(d))
    return out


def _rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


def tree_rss_mb(pid: int) -> tuple[float, float]:
    """Resident MB of ``pid`` alone, and of it with all its descendants."""
    own = _rss_mb(pid)
    total, todo = own, _children(pid)
    while todo:
        c = todo.pop()
        total += _rss_mb(c)
        todo.extend(_children(c))
    return own, total


def growth(samples: list[dict], phase: str, key: str) -> dict | None:
    """Growth of ``key`` over one phase: median of its last tenth minus median of its second tenth."""
    xs = [s for s in samples if s["phase"] == phase]
    if len(xs) < 20:
        return None
    n = len(xs)
    early = float(np.median([s[key] for s in xs[n // 10: 2 * n // 10]]))
    late = float(np.median([s[key] for s in xs[-(n // 10):]]))
    seconds = xs[-1]["t"] - xs[0]["t"]
    return {"early_mb": round(early, 1), "late_mb": round(late, 1), "growth_mb": round(late - early, 1),
            "phase_seconds": round(seconds, 1), "samples": n}


def main(argv=None) -> Path:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("-o", "--out", default=str(HERE / "results"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--keep", help="keep the driving clip and the output in this folder")
    args = p.parse_args(argv)

    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="th-memory-"))
    work.mkdir(parents=True, exist_ok=True)
    clip, out = work / f"driving-1080p-{args.minutes:g}min.mp4", work / "animated.mp4"
    t0 = time.perf_counter()
    frames = long_clip(clip, args.minutes, DRIVING) if not clip.is_file() else None
    if frames is None:
        from talkinghead.io import VideoReader

        frames = VideoReader(clip).num_frames
    clip_seconds = time.perf_counter() - t0
    source = SOURCE if SOURCE.is_file() else None
    if source is None:
        import cv2
        from skimage import data

        source = work / "astronaut.png"
        cv2.imwrite(str(source), data.astronaut()[:, :, ::-1])
    if out.exists():
        out.unlink()
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "TALKINGHEAD_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "talkinghead", "animate", "--source", str(source), "--driving", str(clip),
           "-o", str(out)]
    proc = subprocess.Popen(cmd, env=env, cwd=str(REPO), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    phase = {"name": "start", "last": ""}

    def read_stderr():  # tqdm redraws with \r: the phase is the bar's description
        buf = b""
        while True:
            chunk = proc.stderr.read1(4096) if hasattr(proc.stderr, "read1") else proc.stderr.read(4096)
            if not chunk:
                return
            buf = (buf + chunk)[-8192:]
            text = buf.decode("utf-8", "replace")
            m = re.findall(r"(\w[\w ]*?):\s+\d+%", text)
            if m:
                phase["name"] = m[-1].strip()
            phase["last"] = text[-2000:]

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    samples = []
    start = time.perf_counter()
    while proc.poll() is None:
        own, total = tree_rss_mb(proc.pid)
        samples.append({"t": round(time.perf_counter() - start, 1), "phase": phase["name"],
                        "rss_mb": round(own, 1), "tree_rss_mb": round(total, 1)})
        time.sleep(1.0)
    reader.join(timeout=5)
    import resource

    peak_child_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"animate failed (exit {proc.returncode}):\n{phase['last']}")
    from talkinghead.io import VideoReader

    written = VideoReader(out).num_frames
    phases = list(dict.fromkeys(s["phase"] for s in samples))
    record = {
        "benchmark": "benchmarks/memory.py",
        "command": " ".join(["talkinghead"] + cmd[3:]).replace(str(work) + "/", "").replace(str(REPO.parent) + "/", "../"),
        "minutes": args.minutes, "driving_frames": frames, "frame": "1920x1080", "fps": FPS,
        "frames_written": written, "threads": args.threads,
        "making_the_clip_seconds": round(clip_seconds, 1), "animate_seconds": round(wall, 1),
        "peak_rss_mb": {"python": round(max(s["rss_mb"] for s in samples), 1),
                        "with_ffmpeg": round(max(s["tree_rss_mb"] for s in samples), 1),
                        "largest_process_maxrss": round(peak_child_mb, 1)},
        "phases": phases,
        "growth": {ph: {"python": growth(samples, ph, "rss_mb"), "with_ffmpeg": growth(samples, ph, "tree_rss_mb")}
                   for ph in phases if ph != "start"},
        # one sample in every few, enough to plot
        "samples": samples[:: max(1, len(samples) // 300)],
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_avg_at_end": os.getloadavg()},
    }
    dest = Path(args.out)
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / "memory-cpu.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=1))
    os.replace(tmp, path)
    print(json.dumps({k: v for k, v in record.items() if k != "samples"}, indent=1))
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main()
