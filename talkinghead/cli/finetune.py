"""``talkinghead finetune``: learn a person from 1 to 32 photos and save the avatar."""
from __future__ import annotations

import argparse

from ._common import add_finetune_options, add_model_options, batch_size, finetune_kwargs, refuse_overwriting_inputs


def register(subparsers, formatter_class) -> None:
    p = subparsers.add_parser(
        "finetune", help="fine-tune on 1 to 32 photos of a person and save an avatar folder",
        description="Personalise the model to the person in --photos (the paper's few-shot fine-tuning:\n"
                    "G' with trainable AdaIN parameters and D' with w' = w0 + e_hat, trained on the photos)\n"
                    "and write an avatar folder for `talkinghead animate --avatar`.\n\n"
                    "  talkinghead finetune --photos me1.jpg me2.jpg me3.jpg -o me/ --steps 200",
        formatter_class=formatter_class)
    p.add_argument("--photos", nargs="+", required=True, metavar="IMG", help="1 to 32 photos of one person")
    p.add_argument("-o", "--output", required=True, metavar="AVATAR_DIR", help="avatar folder to write")
    p.add_argument("--batch", type=batch_size, default=2, help="photos per fine-tuning step")
    add_model_options(p)
    add_finetune_options(p, default_steps=200)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import InputError
    from ..io import check_output_folder
    from ..pipeline import AVATAR_CONFIG, load

    # checked before fine-tuning, which can take minutes: a result that cannot be saved is lost
    out = check_output_folder(args.output, f"-o {args.output}", "give -o a new or an avatar folder's name")
    if out.is_dir() and any(out.iterdir()) and not (out / AVATAR_CONFIG).is_file():
        raise InputError(f"{out} is a folder that holds other files: give -o a new folder (or an avatar's, "
                         "to replace it).")
    refuse_overwriting_inputs(out, args.photos)
    model = load(args.model or "default", device=args.device)
    avatar = model.personalize(args.photos, backend=args.backend, face_index=args.face_index,
                               batch_size=args.batch, **finetune_kwargs(args, model))
    avatar.save(args.output)
    info = avatar.info
    how = (f"{info.get('fine_tune_steps')} fine-tuning steps in {info.get('seconds')} s on {info.get('device')}"
           + (" (stopped early: the loss stalled)" if info.get("stopped_early") else "")
           if info.get("fine_tune_steps") else "feed-forward (no fine-tuning)")
    print(f"wrote avatar {args.output}: {len(args.photos)} photo(s), {how}")
    return 0
