"""Train the audio-to-motion model shipped as ``pretrained/audio2motion`` (issue 19).

    python scripts/train_audio2motion.py --steps 300 --set weight_decay=0.01 --set lr=0.001 --set val_every=25 \
        --set 'loss_weights={"opening": 8, "correlation": 1.0}'       # the shipped model; resumes
    python scripts/train_audio2motion.py --export pretrained/audio2motion

Features: ``runs/audio/features.npz`` from the preprocessing cache ``cache/train`` (landmark tracks) and
the clips of ``../shared/data/train`` that have an audio track (built once, in seconds). The run:
``runs/audio/run`` (see :mod:`talkinghead.audio_training`). One CPU thread: the 300 steps took about
15 s, and the best validation step (125) is what ``--export`` ships.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cache", default="cache/train", help="the preprocessing cache (landmark tracks)")
    p.add_argument("--data", default="../shared/data/train", help="the clips (their audio)")
    p.add_argument("--features", default="runs/audio/features.npz")
    p.add_argument("--run", default="runs/audio/run")
    p.add_argument("--config", default="default")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", action="append", default=[], metavar="OPTION=JSON",
                   help="another AudioTrainOptions field, e.g. --set window=200 --set 'loss_weights={\"opening\": 8}'")
    p.add_argument("--export", default=None, metavar="DIR", help="copy the run's best model here and stop")
    args = p.parse_args(argv)
    os.chdir(REPO)  # the paths above are the repository's

    from talkinghead.audio_training import AudioTrainOptions, build_features, train_audio

    if args.export:  # the best validation step, its record's paths made relative to the repository
        from talkinghead.audio2motion import load_audio_model

        from talkinghead.audio_training import AudioClips, validate

        net = load_audio_model(Path(args.run) / "model")
        options = net.training_info.get("options", {})
        if Path(args.features).is_file():  # scored again as animate --audio runs it now
            net.training_info["validation"] = validate(net, AudioClips(args.features, options["val_identities"]).val)
        for key in ("run_dir", "features"):
            if key in options and Path(options[key]).is_absolute():
                options[key] = os.path.relpath(options[key], REPO)
        net.save_pretrained(args.export)
        print(f"exported {Path(args.run) / 'model'} (step {net.training_info.get('step')}) to {args.export}")
        return 0
    if not Path(args.features).is_file():
        Path(args.features).parent.mkdir(parents=True, exist_ok=True)
        build_features(args.cache, args.features, data_dir=args.data)
    extra = {k: json.loads(v) for k, v in (s.split("=", 1) for s in args.set)}
    opts = AudioTrainOptions(run_dir=args.run, features=args.features, config=args.config, steps=args.steps,
                             seed=args.seed, **extra)
    train_audio(opts, resume=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
