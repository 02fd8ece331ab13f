"""``talkinghead landmarks``: 68-point landmarks of a video or photo, saved as .npz."""
from __future__ import annotations

import argparse

from ._common import add_bad_frames_option, count, non_negative_float, refuse_overwriting_inputs

DESCRIPTION = """\
Detect 68 face landmarks (iBUG order) in every frame of a video, or in a photo (T = 1).

The .npz holds `landmarks` (T, 68, 2) float32 pixels, `fps` (0 for a photo), `missing` (T,) frames
where no face was found, `filled` (T,) frames whose landmarks were interpolated (short gaps only; long
gaps are an error), `faces_per_frame` (T,) and `backend`.
"""


def register(subparsers, formatter_class) -> None:
    p = subparsers.add_parser("landmarks", help="detect 68 face landmarks in a video or photo",
                              description=DESCRIPTION, formatter_class=formatter_class)
    p.add_argument("input", metavar="INPUT", help="video (mp4, mov, avi, mkv, webm, mpg, mpeg, m4v) or image")
    p.add_argument("-o", "--output", required=True, metavar="OUT.npz", help="where to write the landmarks")
    p.add_argument("--backend", default="auto", choices=("auto", "dlib", "face-alignment", "mediapipe"),
                   help="detector; auto = face-alignment if its weights are present, else dlib, and a photo in "
                        "which that finds no face is tried again with MediaPipe (as animate and finetune do)")
    p.add_argument("--face-index", type=count, default=0, metavar="N",
                   help="which face when several are seen: 0 = largest (in a video, the face is then followed)")
    p.add_argument("--no-smooth", action="store_true", help="keep the raw per-frame landmarks of a video")
    p.add_argument("--max-gap", type=non_negative_float, default=0.5, metavar="SECONDS",
                   help="longest run of frames without a face that is filled by interpolation")
    p.add_argument("--preview", metavar="OUT.mp4", default=None,
                   help="also write frames and their landmark images side by side (.mp4, or .png for a photo)")
    p.add_argument("--device", default="auto", help="torch device for the face-alignment backend (auto: CUDA if present)")
    add_bad_frames_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import numpy as np

    from ..atomic import atomic_path
    from ..errors import InputError
    from ..io import (IMAGE_EXTENSIONS, VideoReader, check_output_file, check_video_output, is_video_path, read_image,
                      write_image, write_video)
    from ..landmarks import draw_landmarks, get_detector, select_face, track_video
    from ..pipeline import _fallback_faces

    src, out = Path(args.input), Path(args.output)
    if out.suffix.lower() != ".npz":
        raise InputError(f"Output {out} must end in .npz: name it like landmarks.npz.")
    refuse_overwriting_inputs(out, [src])
    check_output_file(out, f"-o {out}", "choose another output path")
    if args.preview:  # checked now: a bad name would only fail after the whole clip was tracked
        refuse_overwriting_inputs(args.preview, [src, out], "--preview")
        if is_video_path(src) or Path(args.preview).suffix.lower() not in IMAGE_EXTENSIONS:
            check_video_output(args.preview)
        else:
            check_output_file(args.preview, f"--preview {args.preview}", "choose another output path")
    det = get_detector(args.backend, device=args.device)
    used = det.name  # the backend whose points are saved: MediaPipe when auto's second try found the face
    if is_video_path(src):
        track = track_video(src, det, face_index=args.face_index, smooth=not args.no_smooth,
                            max_gap_s=args.max_gap, on_bad_frames=args.on_bad_frames)
        lm, fps, missing, filled, counts = track.landmarks, track.fps, track.missing, track.filled, track.faces_per_frame
    else:
        image = read_image(src)
        faces = det.detect(image)
        if not faces and args.backend == "auto":
            faces = _fallback_faces(image, str(src), det.name, args.device)
            used = "mediapipe" if faces else used
        face = select_face(faces, args.face_index, str(src))
        lm, fps = face.landmarks[None], 0.0
        missing, filled = np.zeros(1, bool), np.zeros(1, bool)
        counts = np.array([len(faces)], np.int32)

    with atomic_path(out) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, landmarks=lm.astype(np.float32), fps=np.float32(fps), missing=missing, filled=filled,
                 faces_per_frame=counts, backend=np.array(used))
    print(f"backend: {used}")
    print(f"faces seen: {int(counts.max(initial=0))} (using face {args.face_index})")
    print(f"frames: {len(lm)}, without a face: {int(missing.sum())}, filled: {int(filled.sum())}")
    print(f"wrote {out}")

    if args.preview:
        prev = Path(args.preview)

        def side_by_side(frame, points):
            h, w = frame.shape[:2]
            return np.concatenate([frame, draw_landmarks(points, (w, h))], axis=1)

        if is_video_path(src):
            reader = VideoReader(src, on_bad_frames=args.on_bad_frames)  # the frames the landmarks are of
            write_video(prev, (side_by_side(f, p) for f, p in zip(reader, lm)), fps,
                        audio_from=src if reader.has_audio else None)
        elif prev.suffix.lower() in IMAGE_EXTENSIONS:
            write_image(prev, side_by_side(image, lm[0]))
        else:
            write_video(prev, [side_by_side(image, lm[0])], 1.0)
        print(f"wrote {prev}")
    return 0
