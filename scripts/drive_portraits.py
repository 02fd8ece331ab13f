"""Drive portraits with whole driving clips and check what a user would check.

For each (portrait, clip): the animated video is written with the library's own path (watermark, audio),
then read back: one output frame per driving frame, the driving fps, audio when the driver has it, a
face found in the output, mouth/eye opening that follows the driver's (Pearson correlation over time),
and identity kept (CSIM to the portrait, dlib 128-d). Writes summary.json and a contact sheet PNG per
pair (driving frame | output face, every --sheet-every frames).

    python scripts/drive_portraits.py --sources ../shared/data/eval/source/liveportrait__source__s9.jpg \
        --driving ../shared/data/eval/driving/*.mp4 -o runs/portraits
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sources", nargs="+", required=True)
    p.add_argument("--driving", nargs="+", required=True)
    p.add_argument("--model", default="default")
    p.add_argument("--check-every", type=int, default=3, help="check every N-th output frame")
    p.add_argument("--sheet-every", type=int, default=15, help="contact-sheet frame spacing")
    p.add_argument("--max-frames", type=int, default=None)
    p.add_argument("--fine-tune-steps", type=int, default=0, help="fine-tune on each portrait first (0: FF)")
    p.add_argument("--psi-only", action="store_true", help="fine-tune psi' alone (G keeps its weights)")
    p.add_argument("--sheet-driver", choices=["landmarks", "frame"], default="landmarks",
                   help="contact sheets' top row: the driver's landmarks drawn (publishable with a public-domain "
                        "portrait) or the driving frame itself (not for publishing: the driver's rights)")
    p.add_argument("-o", "--output", required=True)
    args = p.parse_args()

    import cv2

    import talkinghead as th
    from talkinghead import metrics as M
    from talkinghead.io import VideoReader
    from talkinghead.landmarks import (crop_from_landmarks, crop_image, draw_landmarks, get_detector, track_video,
                                       transform_landmarks)

    out_dir = Path(args.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = th.load(args.model)
    det = get_detector("dlib")
    rows = []
    for src in args.sources:
        avatar = model.personalize([src], fine_tune_steps=args.fine_tune_steps, patience=0, progress=False,
                                   train_generator=not args.psi_only)
        src_crop = avatar.source.crop_and_landmark_image(model.image_size)[0]
        for clip in args.driving:
            name = f"{Path(src).stem}__{Path(clip).stem}"
            video = avatar.animate(clip, max_frames=args.max_frames, progress=False)
            drv = track_video(clip, backend=det, max_frames=args.max_frames)
            out = th.write_video(out_dir / f"{name}.mp4", video)
            with VideoReader(clip) as r:
                d_fps, d_audio = r.fps, r.has_audio
            idx, faces, sheet = [], [], []
            with VideoReader(out) as r, VideoReader(clip) as drv_reader:
                o_fps, o_audio = r.fps, r.has_audio
                drv_frames = iter(drv_reader)
                n_out = 0
                for t, frame in enumerate(r):
                    n_out += 1
                    dframe = next(drv_frames, None)
                    if t % args.check_every == 0:
                        idx.append(t)
                        faces.append(crop_image(frame, avatar.source.crop))
                    if t % args.sheet_every == 0 and len(sheet) < 8 and dframe is not None:
                        face = faces[-1] if idx[-1] == t else crop_image(frame, avatar.source.crop)
                        if args.sheet_driver == "frame":
                            d = cv2.resize(dframe, (face.shape[1], face.shape[0]))
                        else:  # the driver's own landmarks in its own crop, drawn
                            lm_t = drv.landmarks[min(t, len(drv) - 1)]
                            d = draw_landmarks(transform_landmarks(lm_t, crop_from_landmarks(lm_t, face.shape[0])),
                                               face.shape[0])
                        sheet.append(np.concatenate([d, face], axis=0))
            faces = np.stack(faces)
            lm_out = np.stack([(f[0].landmarks if (f := det.detect(img)) else np.full((68, 2), np.nan, np.float32))
                               for img in faces])
            lm_drv = drv.landmarks[idx]
            mouth = M.opening_correlation(lm_out, lm_drv, "mouth", det.name)
            eye = M.opening_correlation(lm_out, lm_drv, "eye", det.name)
            ident = M.csim(faces, np.repeat(src_crop[None], len(faces), 0))
            row = {"source": Path(src).name, "driving": Path(clip).name, "output": str(out),
                   "fine_tune_steps": avatar.info.get("fine_tune_steps", 0),
                   "train_generator": avatar.info.get("train_generator"),
                   "driving_frames": len(drv), "output_frames": n_out, "driving_fps": d_fps, "output_fps": o_fps,
                   "driving_audio": d_audio, "output_audio": o_audio,
                   "checked_frames": len(idx),
                   "face_found_share": float(np.isfinite(lm_out).all(axis=(1, 2)).mean()),
                   "mouth_opening_correlation": mouth.value, "eye_opening_correlation": eye.value,
                   "csim_to_source": ident.value, "filled_driving_frames": int(np.sum(drv.filled))}
            rows.append(row)
            print(json.dumps(row))
            if sheet:
                th.write_image(out_dir / f"{name}.png", np.concatenate(sheet, axis=1), model_name=avatar.model_name)
    (out_dir / "summary.json").write_text(json.dumps(rows, indent=1, default=float))


if __name__ == "__main__":
    main()
