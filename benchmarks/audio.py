"""Audio-driven animation speed (issue 19): seconds of audio animated per second of compute, on the CPU.

    python benchmarks/audio.py [-o benchmarks/results] [--seconds 4] [--quick]

Two numbers, each "audio seconds per compute second" (above 1: faster than real time):

- ``audio_to_motion``: decoding, features, the audio-to-motion network, head motion and blinks for the
  whole sound track (33.6 s of speech from ``../shared/data/eval/driving/liveportrait__driving__d6.mp4``,
  or a synthetic tone where the data is absent): what ``--audio`` adds to an animation;
- ``end_to_end``: ``Avatar.animate_audio`` + ``write_video`` for the first ``--seconds`` of it at 25 fps
  with the default generator (``pretrained/default``), pasted back into the Mona Lisa (``s9``),
  watermarked, with the audio muxed: what a user waits for, without personalisation (timed apart).

Both are the best of ``--repeats`` runs on one thread and on all threads; the machine's own 3x3
convolution and matmul GFLOP/s are measured in the same run (``benchmarks/run.py``'s
``reference_flops``), since 2-core machines differ by up to 5x (docs: ENVIRONMENT). Writes
``<out>/audio-cpu.json``.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DATA = REPO.parent / "shared" / "data"
CLIP = DATA / "eval" / "driving" / "liveportrait__driving__d6.mp4"
PORTRAIT = DATA / "eval" / "source" / "liveportrait__source__s9.jpg"


def _run_module():
    spec = importlib.util.spec_from_file_location("_bench_run", HERE / "run.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _audio(tmp: Path) -> Path:
    if CLIP.is_file():
        return CLIP
    from talkinghead.io import _ffmpeg_exe

    path = tmp / "tone.wav"
    expr = "0.3*sin(2*PI*150*t)*(0.55+0.45*sin(2*PI*4*t))*gt(mod(t\\,1.5)\\,0.3)"
    subprocess.run([_ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i", f"aevalsrc='{expr}':s=44100:d=30",
                    str(path)], check=True)
    return path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-o", "--out", default=str(HERE / "results"))
    p.add_argument("--seconds", type=float, default=4.0, help="audio seconds animated end to end")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="tiny configs, one repeat (for a smoke test)")
    args = p.parse_args(argv)

    import numpy as np
    import torch

    import talkinghead as th
    from talkinghead.audio import SAMPLE_RATE, check_audio
    from talkinghead.audio2motion import audio_motion, load_audio_model

    run = _run_module()
    tmp = Path(tempfile.mkdtemp(prefix="talkinghead-audio-bench-"))
    audio = _audio(tmp)
    seconds_total = len(check_audio(audio)) / SAMPLE_RATE
    repeats = 1 if args.quick else args.repeats
    net = load_audio_model()
    source = th.read_image(PORTRAIT) if PORTRAIT.is_file() else np.asarray(__import__("skimage.data").data.astronaut())
    result: dict = {"benchmark": "audio-driven animation (benchmarks/audio.py)", "audio": str(audio.name),
                    "audio_seconds": round(seconds_total, 2), "audio_model": {"parameters": net.num_parameters(),
                                                                              "config": net.config.to_dict()}}
    threads_all = torch.get_num_threads()
    model = th.load("default", device="cpu")
    t0 = time.perf_counter()
    avatar = model.personalize([source], progress=False)
    result["personalise_seconds"] = round(time.perf_counter() - t0, 2)
    piece = tmp / "piece.wav"
    from talkinghead.io import _ffmpeg_exe

    subprocess.run([_ffmpeg_exe(), "-v", "error", "-y", "-i", str(audio), "-t", str(args.seconds), "-vn", str(piece)],
                   check=True)
    piece_seconds = len(check_audio(piece)) / SAMPLE_RATE
    for threads in sorted({1, threads_all}):
        torch.set_num_threads(threads)
        motion = run.best_seconds(lambda: audio_motion(avatar.source.landmarks, audio, 25.0, model=net), repeats)
        out = tmp / "out.mp4"

        def animate():
            video = avatar.animate_audio(piece, fps=25.0, model=net, progress=False)
            th.write_video(out, video, credentials=False)

        end = run.best_seconds(animate, 1 if args.quick else max(1, repeats - 1))
        result[f"threads_{threads}"] = {
            "audio_to_motion": {"seconds": round(motion, 3), "audio_seconds_per_second": round(seconds_total / motion, 1)},
            "end_to_end": {"audio_seconds": round(piece_seconds, 2), "frames": int(round(piece_seconds * 25)),
                           "seconds": round(end, 2), "audio_seconds_per_second": round(piece_seconds / end, 3),
                           "frames_per_second": round(piece_seconds * 25 / end, 2)},
        }
        print(f"{threads} thread(s): audio->motion {seconds_total / motion:.0f}x real time; end to end "
              f"{piece_seconds / end:.3f} audio s per s ({piece_seconds * 25 / end:.2f} fps)", flush=True)
    torch.set_num_threads(threads_all)
    result["reference_flops"] = run.reference_flops(torch.device("cpu"), args.quick)
    result["machine"] = {"cpus": os.cpu_count(), "load_avg_at_end": os.getloadavg(), "platform": platform.platform(),
                         "python": platform.python_version(), "torch": torch.__version__}
    result["note"] = ("best of the repeats; the end-to-end time includes rendering with the default generator, "
                      "paste-back, the watermark and H.264 + AAC encoding, not personalisation "
                      "(personalise_seconds). Other processes shared the CPU: see load_avg_at_end.")
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "audio-cpu.json"
    path.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
