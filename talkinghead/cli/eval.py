"""``talkinghead eval``: the paper's few-shot self-reenactment protocol on held-out clips, as a report."""
from __future__ import annotations

import argparse

from ._common import bounded, seed

# Upper bounds that catch typos (--shots 100000000 would first try to hold that many frames).
MAX_SHOTS, MAX_FRAMES, MAX_FT_STEPS = 1000, 10000, 100000


def register(subparsers, formatter_class) -> None:
    p = subparsers.add_parser(
        "eval", help="evaluate a model on held-out clips (self-reenactment; cross-identity with --sources)",
        description="The paper's protocol: the first T frames of each clip are the few shots (T in --shots),\n"
                    "--frames evenly spaced later frames are generated from their own landmarks (each in its\n"
                    "own crop) and compared with the real crops. Baselines: the nearest few-shot frame and a\n"
                    "piecewise affine warp of it. The mouth region is also scored alone, over the test frames\n"
                    "whose mouth is open. Writes report.json, report.md, plots and sample strips.\n"
                    "Interrupted (Ctrl-C), it resumes: the same command reuses what REPORT_DIR/.partial kept.\n\n"
                    "  talkinghead eval --videos held_out/*.mp4 --shots 1 8 32 --modes ff ft -o report/\n"
                    "  talkinghead eval --videos clip.mp4 --sources mona_lisa.jpg -o report/   # + cross-identity\n"
                    "  talkinghead eval --audio --videos speech_clips/*.mp4 -o report/         # audio-driven sync",
        formatter_class=formatter_class)
    p.add_argument("--videos", nargs="+", required=True, metavar="VIDEO", help="held-out clips of people not trained on")
    p.add_argument("--sources", nargs="*", default=[], metavar="IMG",
                   help="portraits to drive with the clips (cross-identity: identity kept, motion followed)")
    p.add_argument("--shots", nargs="+", type=bounded(int, 1, True, MAX_SHOTS), default=[1, 8, 32], metavar="T", help="few-shot set sizes")
    p.add_argument("--modes", nargs="+", default=["ff", "ft"], choices=["ff", "ft"],
                   help="feed-forward (embed only) and/or fine-tuned")
    p.add_argument("--model", default="default", help="model name (pretrained/, the installed copy, then $TALKINGHEAD_HOME) or folder")
    p.add_argument("--frames", type=bounded(int, 1, True, MAX_FRAMES), default=32, metavar="N", help="test frames per clip")
    p.add_argument("--test-from", type=bounded(int, 1, True, MAX_SHOTS), default=None, metavar="N",
                   help="test frames start at frame N (default: the largest --shots), so that runs with different "
                        "--shots score the same frames: e.g. --shots 8 --modes ft --test-from 32 beside a --shots 1 8 32 run")
    p.add_argument("--ft-steps", type=bounded(int, 0, True, MAX_FT_STEPS), default=40, metavar="N", help="fine-tuning steps in FT mode")
    p.add_argument("--backend", default="auto", choices=["auto", "dlib", "face-alignment", "mediapipe"],
                   help="landmark detector (crops, driving landmarks and AKD)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="where to run the model")
    p.add_argument("--no-baselines", action="store_true", help="skip the nearest-frame and warp baselines")
    p.add_argument("--seed", type=seed, default=0, help="seed for fine-tuning")
    p.add_argument("--audio", action="store_true",
                   help="instead: audio-driven sync; each clip's own audio predicts its mouth, compared with its "
                        "tracked landmarks, beside the talk preset and a mean-motion baseline (see docs/animating.md)")
    p.add_argument("--audio-model", default=None, metavar="NAME_OR_DIR",
                   help="with --audio: the audio-to-motion model (default: audio2motion)")
    p.add_argument("-o", "--output", required=True, metavar="REPORT_DIR", help="folder for the report")
    p.set_defaults(func=run, eval_parser=p)


# the self-reenactment options, which eval --audio does not read
_VIDEO_ONLY = ("sources", "shots", "modes", "model", "frames", "ft_steps", "device", "no_baselines", "test_from")


def run(args: argparse.Namespace) -> int:
    from ..errors import InputError

    if args.audio:
        extra = ["--" + name.replace("_", "-") for name in _VIDEO_ONLY
                 if getattr(args, name) != args.eval_parser.get_default(name)]
        if extra:
            raise InputError(f"{', '.join(extra)} {'does' if len(extra) == 1 else 'do'} not apply to eval --audio (it scores the audio model's mouth "
                             "against each clip's own landmarks): drop them.")
        return run_audio(args)
    if args.audio_model is not None:
        raise InputError("--audio-model only applies to eval --audio.")
    import shutil
    from pathlib import Path

    from ..evaluation import EvalOptions, evaluate, write_report
    from ..evaluation.protocol import check_clip_length, clip_labels
    from ..io import check_output_folder, read_image
    from ..pipeline import load

    opts = EvalOptions(shots=tuple(args.shots), modes=tuple(args.modes), frames=args.frames, ft_steps=args.ft_steps,
                       backend=args.backend, baselines=not args.no_baselines, seed=args.seed,
                       test_from=args.test_from)
    # fail on a bad input or output before the model loads and minutes are spent
    check_output_folder(args.output, f"-o {args.output}", "choose a folder for the report")
    clip_labels(args.videos)
    for v in args.videos:
        check_clip_length(v, opts.shots, opts.test_from)
    for s in args.sources:
        read_image(s)
    model = load(args.model, device=args.device)
    work = Path(args.output) / ".partial"
    result = evaluate(model, args.videos, opts, sources=args.sources, work_dir=work)
    report = write_report(result, args.output)
    shutil.rmtree(work, ignore_errors=True)  # the report holds the results now
    for r in report["results"]:
        vals = "  ".join(f"{k} {'n/a' if r[k] is None else format(r[k], '.3f')}"
                         for k in ("ssim", "lpips", "csim", "akd", "mouth_lpips", "mouth_ssim"))
        print(f"{r['label']:>24s} T={r['shots']:<3d} {vals} (mouth open in {r['mouth_open_frames']} frames)")
    print(f"wrote {args.output}/report.md ({report['protocol']}; {len(report['files']['samples'])} sample strips)")
    return 0


def run_audio(args: argparse.Namespace) -> int:
    """``eval --audio``: :func:`talkinghead.evaluation.audio.evaluate_audio` on the clips, as a report."""
    import shutil
    from pathlib import Path

    from ..audio import probe_audio
    from ..audio2motion import load_audio_model
    from ..evaluation.audio import AudioEvalOptions, evaluate_audio, write_audio_report
    from ..evaluation.protocol import clip_labels
    from ..io import check_output_folder

    check_output_folder(args.output, f"-o {args.output}", "choose a folder for the report")
    clip_labels(args.videos)
    for v in args.videos:
        probe_audio(v)  # exists and is a media file; a clip without audio is listed in the report
    net = load_audio_model(args.audio_model or "audio2motion")
    backend = "dlib" if args.backend == "auto" else args.backend
    work = Path(args.output) / ".partial"
    result = evaluate_audio(args.videos, net, AudioEvalOptions(backend=backend, seed=args.seed), work_dir=work)
    write_audio_report(result, args.output)
    shutil.rmtree(work, ignore_errors=True)
    for m, s in result["summary"].items():
        r = "n/a" if s["mean_correlation"] is None else f"{s['mean_correlation']:.3f}"
        print(f"{m:>30s}: mean mouth-opening correlation {r}, largest |lag| {s['max_abs_lag']}")
    print(f"wrote {args.output}/report.md")
    return 0
