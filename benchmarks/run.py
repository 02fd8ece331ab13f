"""All benchmarks in one JSON: animation, fine-tuning, landmarks, training, memory, FLOPs (issue 7).

    python benchmarks/run.py [-o benchmarks/results] [--quick]      # or: talkinghead bench [-o DIR] [--quick]

For CPU, and for CUDA when a GPU is present:
- animation frames/s of an FF avatar driven by the ``talk`` preset: face crops only, and pasted back
  into a 512 px and a 1920x1080 frame (the user path: ``Avatar.animate_landmarks``);
- fine-tuning seconds for 1, 8 and 32 photos: a few steps are timed and the per-step time is
  extrapolated to the paper's ~40 epochs at batch 2 (``ceil(40 * T / 2)`` steps), stated as such;
- training steps/s (``benchmarks/train.py``, one process per config so its peak RSS is its own);
- peak memory: the process's RSS high-water mark after each part, CUDA max allocated per part on GPU;
- the generator's FLOPs per frame (``model_summary``) and the achieved FLOP/s in crop-only animation,
  as a share of what a plain 3x3 convolution and a matmul reach in the same run.
Landmark frames/s per backend (CPU) come from ``benchmarks/landmarks.py`` on the eval driving clips.

``--quick`` uses the tiny config, a few frames/steps and no VGG content loss (for the tests). The default uses
``pretrained/default`` where present, else ``cpu-256`` with random weights (said in the JSON).
Writes ``<out>/bench-<device>.json`` where ``<device>`` is ``cuda`` on a GPU machine, else ``cpu``; ``<out>``
defaults to ``benchmarks/results`` (the committed numbers), or for ``--quick`` to ``$TMPDIR/talkinghead-bench``
so that tiny-config numbers never replace them unasked.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
EPOCHS, FT_BATCH = 40, 2  # the reimplementations' fine-tuning length (PAPER.md)


def _script(name: str):
    """Import a sibling benchmark script as a module (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", HERE / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def peak_rss_mib() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # KiB on Linux


def best_seconds(fn, repeat: int = 3) -> float:
    """The fastest of ``repeat`` calls of ``fn()``, in seconds: the one least slowed by other work on the
    machine (the benchmarks' one timing rule)."""
    best = float("inf")
    for _ in range(max(1, int(repeat))):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _cuda_reset(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _memory(device) -> dict:
    import torch

    out = {"peak_rss_mib": peak_rss_mib()}
    if device.type == "cuda":
        out["cuda_max_allocated_mib"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return out


def source_photo(size: int) -> np.ndarray:
    """The public-domain astronaut photo (scikit-image), resized to ``size`` px."""
    import cv2
    from skimage import data

    img = data.astronaut()
    return img if size == 512 else cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)


_DATA = None  # --data: the training benchmark's cache (default: cache/train, else a synthetic one)
_BACKEND = "auto"  # or a detector returning --landmarks (a GPU box without dlib); set by main()


def fixed_detector(path: str):
    """A LandmarkDetector that returns the landmarks saved in ``path`` (``(68, 2)`` for the 512 px
    astronaut), scaled to the image: detection is then not part of the timings (said in the JSON)."""
    from talkinghead.landmarks import Face, LandmarkDetector

    known = np.load(path).astype(np.float32)

    class Fixed(LandmarkDetector):
        name = "fixed-landmarks"

        def _load(self):
            pass

        def _detect(self, image):
            lm = known * (image.shape[1] / 512.0)
            return [Face(lm, (float(lm[:, 0].min()), float(lm[:, 1].min()), float(lm[:, 0].max()), float(lm[:, 1].max())))]

    return Fixed()


def bench_animation(th, frames: int, batch: int) -> dict:
    """Frames/s of crop-only animation and of paste-back into 512 px and 1080p frames."""
    import cv2

    from talkinghead.landmarks import crop_from_landmarks
    from talkinghead.motion import preset_motion
    from talkinghead.pipeline import Avatar, SourceFace

    _cuda_reset(th.device)
    avatar = th.personalize([source_photo(512)], progress=False, backend=_BACKEND)
    src = avatar.source
    # a 1080p frame: the photo upscaled 2x and centred on a 1920x1080 canvas
    canvas = np.zeros((1080, 1920, 3), np.uint8)
    ox, oy = (1920 - 1024) // 2, (1080 - 1024) // 2
    canvas[oy:oy + 1024, ox:ox + 1024] = cv2.resize(src.image, (1024, 1024), interpolation=cv2.INTER_LINEAR)
    lm_hd = (src.landmarks + 0.5) * 2 - 0.5 + np.array([ox, oy], np.float32)
    src_hd = SourceFace(canvas, lm_hd, crop_from_landmarks(lm_hd, th.image_size), "astronaut-1080p")
    avatar_hd = Avatar(avatar.generator, avatar.state, avatar.e_hat, src_hd, th.name, th.config)
    out = {"frames": frames, "batch": batch, "source": "skimage astronaut, FF avatar, talk preset"}
    for key, av, crop_only, size in (("crop_only", avatar, True, th.image_size), ("paste_512", avatar, False, 512),
                                     ("paste_1080p", avatar_hd, False, "1920x1080")):
        lm = preset_motion(av.source.landmarks, "talk", seconds=(frames + batch) / 25, fps=25)
        anim = av.animate_landmarks(lm[:batch], 25, crop_only=crop_only, batch_size=batch, progress=False)
        list(anim)  # warm-up (allocation, cuDNN autotune)
        anim = av.animate_landmarks(lm[batch:batch + frames], 25, crop_only=crop_only, batch_size=batch, progress=False)
        _sync(th.device)
        t0 = time.perf_counter()
        stamps, n = [t0], 0
        for _ in anim:
            n += 1
            if n % batch == 0:  # a batch is generated, then yielded frame by frame
                stamps.append(time.perf_counter())
        _sync(th.device)
        dt = time.perf_counter() - t0
        # the best batch shows the speed without other processes' bursts on a shared machine
        best = min(np.diff(stamps)) / batch if len(stamps) > 1 else dt / n
        out[key] = {"frame": size, "fps": round(n / dt, 2), "ms_per_frame": round(1000 * dt / n, 2),
                    "fps_best_batch": round(1 / best, 2)}
    out["memory"] = _memory(th.device)
    return out


def bench_finetune(th, photo_counts, steps: int, photo_size: int, content: str = "auto") -> dict:
    """Fine-tuning time per photo count: setup (detection, embedding, losses) + steps, extrapolated."""
    base = source_photo(photo_size)
    rows = []
    for n in photo_counts:
        # distinct photos of one face: small shifts of the same picture
        photos = [np.roll(base, (2 * (i % 5) - 4, 2 * (i // 5 % 5) - 4), axis=(0, 1)) for i in range(n)]
        stamps: list[float] = []
        _cuda_reset(th.device)
        t0 = time.perf_counter()
        avatar = th.personalize(photos, fine_tune_steps=steps, patience=0, progress=False, content=content,
                                backend=_BACKEND, log=lambda terms: (_sync(th.device), stamps.append(time.perf_counter())))
        total = time.perf_counter() - t0
        diffs = np.diff(stamps)
        per_step = float(np.median(diffs)) if len(diffs) else stamps[0] - t0
        # detection, embedding, copying the model, loss backbones (0 when noise makes it negative)
        setup = max(0.0, stamps[0] - t0 - per_step)
        paper_steps = math.ceil(EPOCHS * n / FT_BATCH)
        rows.append({"photos": n, "timed_steps": len(stamps), "measured_seconds": round(total, 2),
                     "setup_seconds": round(setup, 2), "seconds_per_step": round(per_step, 4),
                     "paper_steps": paper_steps,
                     "extrapolated_seconds": round(setup + per_step * paper_steps, 1),
                     "content_backbones": avatar.info.get("content_backbones"), **_memory(th.device)})
    return {"note": f"{steps} steps timed per photo count; extrapolated_seconds = setup + seconds_per_step x "
                    f"ceil({EPOCHS} epochs x photos / batch {FT_BATCH}) (extrapolated, not measured)",
            "photo_size": photo_size, "batch": FT_BATCH, "results": rows}


def bench_training(config: str, device: str, steps: int, k: int, content: str = "auto") -> dict:
    """``benchmarks/train.py``'s measurement in its own process (per-config peak RSS)."""
    train = _script("train")
    data = _DATA or train.default_data()
    cmd = [sys.executable, str(HERE / "train.py"), "--one", config, "--data", data, "--steps", str(steps),
           "--k", str(k), "--device", device, "--content", content]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if proc.returncode != 0:
        return {"config": config, "device": device, "error": (proc.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench_landmarks(frames: int) -> dict:
    """Frames/s per available landmark backend via ``benchmarks/landmarks.py`` (needs the eval clips)."""
    import contextlib
    import io

    lm = _script("landmarks")
    with tempfile.TemporaryDirectory() as tmp:
        out, text = Path(tmp) / "landmarks.json", io.StringIO()
        try:
            with contextlib.redirect_stdout(text):
                lm.main(["-o", str(out), "--frames", str(frames)])
        except SystemExit as exc:  # no eval clips here
            return {"error": str(exc)}
        finally:  # its table, but not "wrote <temporary file>": that file is gone in a moment
            print("".join(line for line in text.getvalue().splitlines(True) if not line.startswith("wrote ")), end="")
        return json.loads(out.read_text())


def reference_flops(device, quick: bool) -> dict:
    """FLOP/s of a plain 3x3 convolution and of a square matmul (best of 3), for comparison."""
    import torch

    n = 512 if quick else (4096 if device.type == "cuda" else 1024)
    b, c, s = (2, 32, 32) if quick else ((32, 128, 64) if device.type == "cuda" else (8, 64, 64))
    a = torch.randn(n, n, device=device)
    x, w = torch.randn(b, c, s, s, device=device), torch.randn(c, c, 3, 3, device=device)
    calls = {"matmul": (lambda: a @ a, 2 * n ** 3, f"{n}x{n} @ {n}x{n} fp32"),
             "conv3x3": (lambda: torch.nn.functional.conv2d(x, w, padding=1), 2 * b * c * c * 9 * s * s,
                         f"{b}x{c}x{s}x{s}, {c}->{c} channels fp32")}
    out = {}
    with torch.inference_mode():
        for name, (fn, flops, shape) in calls.items():
            fn()
            best = float("inf")
            for _ in range(3):
                _sync(device)
                t0 = time.perf_counter()
                fn()
                _sync(device)
                best = min(best, time.perf_counter() - t0)
            out[name] = {"shape": shape, "gflop_per_s": round(flops / best / 1e9, 2)}
    return out


def bench_device(th, device, quick: bool, training_config: str) -> dict:
    from talkinghead.models.summary import model_summary

    th.model.to(device)
    th.device = device
    frames, batch = (4, 4) if quick else (64, 8)
    # --quick skips the VGG content loss (its load dominates tiny steps): timings then exclude it
    content = "none" if quick else "auto"
    # training first: a child process's RSS high-water mark starts from this process's RSS at spawn
    parent_rss = peak_rss_mib()
    train = bench_training(training_config, str(device), steps=1 if quick else 3, k=2 if quick else 8,
                           content=content)
    train["parent_peak_rss_mib_at_spawn"] = parent_rss
    anim = bench_animation(th, frames, batch)
    ft = bench_finetune(th, (1, 8, 32), steps=2 if quick else 4, photo_size=256 if quick else 512, content=content)
    gflops = next(r["gflops"] for r in model_summary(th.config) if r["network"] == "generator")
    ref = reference_flops(device, quick)
    achieved = gflops * anim["crop_only"]["fps"]
    flops = {"generator_gflop_per_frame": round(gflops, 3), "achieved_gflop_per_s": round(achieved, 2),
             "reference": ref,
             "share_of_conv3x3": round(achieved / ref["conv3x3"]["gflop_per_s"], 4),
             "share_of_matmul": round(achieved / ref["matmul"]["gflop_per_s"], 4),
             "note": "achieved = generator FLOPs per frame x crop-only frames/s (the rest of the frame time "
                     "- landmark images, uint8 conversion - counts against it)"}
    return {"device": str(device), "threads": __import__("torch").get_num_threads(), "animation": anim,
            "finetune": ft, "training": train, "flops": flops, "memory": _memory(device)}


def default_out_dir(quick: bool) -> Path:
    """The committed ``benchmarks/results``; for --quick a folder in the temp dir (tiny-config numbers
    must not replace the committed ones unless -o asks for it)."""
    return Path(tempfile.gettempdir()) / "talkinghead-bench" if quick else HERE / "results"


def check_out_dir(out: Path) -> None:
    """Refuse, before minutes of benchmarking, a folder that cannot be written: a file, below a file,
    or without write permission."""
    from talkinghead.errors import InputError
    from talkinghead.io import check_output_folder

    check_output_folder(out, f"-o {out}", "choose a folder for bench-<device>.json")
    parent = next((q for q in (out, *out.absolute().parents) if q.exists()), None)
    if parent is not None and not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"-o {out}: {parent} is not writable: choose a folder you can write to.")


def run_benchmarks(out_dir: str | os.PathLike | None = None, quick: bool = False, log=print,
                   devices: list[str] | None = None) -> Path:
    """Run everything and write ``bench-<device>.json``; returns its path. ``out_dir``: see
    :func:`default_out_dir`. ``devices``: a subset of ``cpu``/``cuda`` (default: the CPU, and CUDA when
    present)."""
    sys.path.insert(0, str(REPO))
    out = Path(out_dir) if out_dir else default_out_dir(quick)
    check_out_dir(out)
    import torch

    from talkinghead.atomic import atomic_write_text
    from talkinghead.config import get_config
    from talkinghead.models import TalkingHeadModel
    from talkinghead.pipeline import load

    t_start, load_start = time.time(), os.getloadavg()
    found = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    devices = [torch.device(d) for d in (devices or found) if d in found]
    with tempfile.TemporaryDirectory() as tmp:
        if quick:
            torch.manual_seed(0)
            model_dir, weights = Path(tmp) / "tiny", "random (tiny config, --quick)"
            TalkingHeadModel(get_config("tiny", num_videos=3)).save_pretrained(model_dir)
            training_config = "tiny"
        elif (REPO / "pretrained" / "default" / "config.json").is_file():
            model_dir, weights, training_config = REPO / "pretrained" / "default", "pretrained/default", "cpu-256"
        else:
            torch.manual_seed(0)
            model_dir, weights = Path(tmp) / "cpu-256", "random (cpu-256: pretrained/default is absent)"
            TalkingHeadModel(get_config("cpu-256")).save_pretrained(model_dir)
            training_config = "cpu-256"
        th = load(model_dir, device="cpu")
        th.name = "bench"
        results = {}
        for dev in devices:
            log(f"benchmarking on {dev} ...")
            results[str(dev)] = bench_device(th, dev, quick, training_config)
    log("landmark backends (CPU) ...")
    record = {
        "benchmark": "talkinghead bench" + (" --quick" if quick else ""),
        "quick": quick, "model": weights, "config": th.config.to_dict(), "image_size": th.image_size,
        "machine": {"cpus": os.cpu_count(), "load_avg_at_start": load_start, "load_avg_at_end": os.getloadavg(),
                    "platform": platform.platform(), "python": platform.python_version(),
                    "torch": torch.__version__,
                    "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
        "devices": results,
        "landmark_detection": ("not timed: fixed landmarks from a file (--landmarks)" if _BACKEND != "auto"
                               else "included in fine-tuning setup_seconds"),
        "landmarks": bench_landmarks(3 if quick else 60),
        "peak_rss_mib": peak_rss_mib(),
        "seconds": None,
    }
    record["seconds"] = round(time.time() - t_start, 1)
    path = out / f"bench-{'cuda' if torch.cuda.is_available() else 'cpu'}.json"
    atomic_write_text(path, json.dumps(record, indent=1) + "\n")
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-o", "--output", default=None,
                    help="folder for bench-<device>.json (default: benchmarks/results; with --quick $TMPDIR/talkinghead-bench)")
    ap.add_argument("--quick", action="store_true", help="tiny config, a few frames and steps (seconds)")
    ap.add_argument("--devices", nargs="+", choices=["cpu", "cuda"], help="default: cpu, and cuda when present")
    ap.add_argument("--data", help="cache for the training benchmark (default: cache/train, else synthetic)")
    ap.add_argument("--landmarks", help="(68, 2) .npy landmarks of the 512 px astronaut, for machines without dlib")
    args = ap.parse_args(argv)
    global _DATA, _BACKEND
    _DATA = args.data
    if args.landmarks:
        _BACKEND = fixed_detector(args.landmarks)
    sys.path.insert(0, str(REPO))
    from talkinghead.errors import TalkingHeadError

    try:
        path = run_benchmarks(args.output, args.quick, devices=args.devices)
    except TalkingHeadError as exc:  # one line, as `talkinghead bench` prints it
        print(f"{Path(__file__).name}: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
