"""Motion for the source face: transfer from a driving clip, or built-in presets.

All functions work on 68-point landmarks in the iBUG 300-W order, ``float32`` ``(68, 2)`` for one face
and ``(T, 68, 2)`` for a track, in pixel coordinates.

Relative transfer (the default for animating someone else's face) keeps the source's face shape: the
driving clip contributes only how its landmarks move away from a reference frame, after normalising for
face position and size. Absolute transfer uses the driving landmarks as they are (self-reenactment).
"""
from __future__ import annotations

import numbers

import numpy as np

from .checks import (MAX_FRAMES, MAX_PRESET_SECONDS, check_choice, check_fps, check_int, check_memory,
                     check_number)
from .errors import InputError

MODES = ("relative", "absolute")
PRESETS = ("talk", "idle")

# Points that move little with expression (brow-free: nose bridge, lower nose, eye corners): their
# centre and spread define the face's position and size.
STABLE = np.r_[27:36, 36, 39, 42, 45]
JAW = np.arange(0, 17)
MOUTH_OUTER = np.arange(48, 60)
MOUTH_INNER = np.arange(60, 68)
UPPER_LID = {"left": np.array([37, 38]), "right": np.array([43, 44])}
LOWER_LID = {"left": np.array([41, 40]), "right": np.array([47, 46])}
# (upper, lower) points that close against each other: eyelids and inner lips
CLOSING_PAIRS = np.array([[37, 41], [38, 40], [43, 47], [44, 46], [61, 67], [62, 66], [63, 65]])


def _check_track(track: np.ndarray, name: str) -> np.ndarray:
    """``(T, 68, 2)`` float32 (one face ``(68, 2)`` becomes ``T = 1``), else an :class:`InputError`."""
    try:
        track = np.asarray(track, dtype=np.float32)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be an array of shape (T, 68, 2) or (68, 2) (68 landmarks in pixels), "
                         f"not {type(track).__name__}.") from None
    if not (track.shape == (68, 2) or track.ndim == 3 and track.shape[1:] == (68, 2) and len(track) > 0):
        raise InputError(f"{name} must have shape (T, 68, 2) or (68, 2) (68 landmarks in pixels), got "
                         f"{tuple(track.shape)}.")
    return track[None] if track.ndim == 2 else track


def check_motion(mode: str, reference) -> None:
    """The arguments of :func:`transfer_motion`, checked before a driving clip is tracked."""
    check_choice("motion", mode, MODES)
    if not (reference in ("best", "first") if isinstance(reference, str) else
            isinstance(reference, numbers.Integral) and not isinstance(reference, bool)):
        raise InputError(f"reference must be best, first or a frame index, not {reference!r}.")


def face_frame(lm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centre ``(..., 2)`` and size ``(...)`` of faces ``(..., 68, 2)`` from their stable points."""
    pts = lm[..., STABLE, :]
    centre = pts.mean(axis=-2)
    size = np.sqrt(((pts - centre[..., None, :]) ** 2).sum(-1).mean(-1))
    return centre, np.maximum(size, 1e-6)


def normalise(lm: np.ndarray) -> np.ndarray:
    """Landmarks ``(..., 68, 2)`` with the stable-point centre at 0 and unit stable-point spread."""
    centre, size = face_frame(lm)
    return (lm - centre[..., None, :]) / size[..., None, None]


def _procrustes_rotation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """2x2 rotation R minimising ||a R - b|| for centred point sets ``(N, 2)``."""
    u, _, vt = np.linalg.svd(a.T @ b)
    d = np.sign(np.linalg.det(u @ vt))
    return u @ np.diag([1.0, d]) @ vt


# The "best" reference: the mean shape difference of all 68 points (normalised), plus these weights times
# the difference of mouth opening from the source's and of eye opening from the driver's own median
# (metrics.mouth_opening, metrics.eye_opening: gaps over the face's size). Relative motion adds the
# driver's change of opening to the source's, so the reference is the driver's state that the source's
# stands for. A mouth at rest is closed on every face: measured from a reference more open than the
# source, every driver frame less open than it shuts the source's mouth, and the output opens only past
# it. The shape alone (the mouth is 20 of 68 points) chose frames of KatieHill's clip at an opening of
# 0.19 to 0.41 for four of the five eval portraits (her 10th percentile is 0.03), and the Mona Lisa's
# mouth followed it with a correlation of 0.43. Eyes differ between faces and painters, so theirs is
# matched to the driver's usual opening, not the source's: a reference mid-blink (or wide-eyed) opens
# (or narrows) the source's eyes in every other frame; with the mouth term alone Vermeer's girl took a
# half-blink of d0 as reference and her eye correlation fell from 0.76 to 0.56
REFERENCE_MOUTH_WEIGHT = 0.5
REFERENCE_EYE_WEIGHT = 0.5


def most_similar_frame(source: np.ndarray, driving: np.ndarray, mouth_weight: float = REFERENCE_MOUTH_WEIGHT,
                       eye_weight: float = REFERENCE_EYE_WEIGHT) -> int:
    """Index of the driving frame whose expression is closest to the source's.

    Faces are compared after removing position, size and in-plane rotation, so the answer reflects
    mouth and eye shape rather than where the head is: the mean point distance, plus ``mouth_weight``
    times the difference of mouth opening from the source's and ``eye_weight`` times that of eye opening
    from the driver's median (:data:`REFERENCE_MOUTH_WEIGHT`, :data:`REFERENCE_EYE_WEIGHT`): a
    closed-mouth source is measured from a driver frame whose mouth is closed too, and not from a blink.
    """
    from .metrics import eye_opening, mouth_opening

    src = normalise(_check_track(source, "source")[0])
    drv = normalise(_check_track(driving, "driving"))
    mouth = np.abs(mouth_opening(drv) - float(mouth_opening(src)[0]))
    eyes = eye_opening(drv)
    eyes = np.abs(eyes - np.nanmedian(eyes)) if np.isfinite(eyes).any() else eyes
    best, best_err = 0, np.inf
    for t, d in enumerate(drv):
        if not np.isfinite(d).all():
            continue
        rot = _procrustes_rotation(d[STABLE], src[STABLE])
        err = float(np.abs(d @ rot - src).mean()) + mouth_weight * float(mouth[t]) + eye_weight * float(eyes[t])
        if err < best_err:
            best, best_err = t, err
    return best


# A turned face shows its far side narrowed. How far across the source's face each point sits, as a
# function of where the driver's reference frame has it (both normalised, along each face's eye line),
# is locally linear; its slope at a point scales the sideways part of the driver's expression change
# there. Copied unscaled, a frontal driver's sideways jaw and mouth put the mouth corner of Vermeer's
# girl (her far side a quarter as wide as the driver's) outside her jaw line in 30 of 100 frames of one
# clip (1 once scaled). SIDE_BANDWIDTH: the local fit's Gaussian width in normalised units (a face is
# about 4 across). The slope is clamped to SIDE_SCALE_RANGE: below 0.2 it is a detection's fault, not
# a pose; and it only ever narrows. A turned face's near side measures wider than a frontal driver's
# in the normalised frame (the turn shrinks the stable points' spread), but the vertical motion is not
# rescaled for that, so widening the sideways part alone would stretch a mouth sideways more than it
# opens (by up to 1.8x on the Mona Lisa's near side).
SIDE_BANDWIDTH = 0.5
SIDE_SCALE_RANGE = (0.2, 1.0)


def _across(n: np.ndarray) -> np.ndarray:
    """Unit vector along a face's eye line (left eye centre to right), ``(..., 68, 2)`` -> ``(..., 2)``."""
    v = n[..., 42:48, :].mean(-2) - n[..., 36:42, :].mean(-2)
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-9)


def side_scales(source_n: np.ndarray, reference_n: np.ndarray) -> np.ndarray:
    """``(68,)`` factors for the sideways component of each point's expression change: the local slope of
    the source's across-face position against the driver reference's (``(68, 2)`` normalised faces, the
    reference turned into the source's orientation), a Gaussian-weighted linear fit over all 68 points
    about each one. 1 where the source is as wide there as the driver, or wider; below 1 on a turned
    source's far side."""
    xs, xr = source_n @ _across(source_n), reference_n @ _across(reference_n)
    w = np.exp(-0.5 * ((xr[None, :] - xr[:, None]) / SIDE_BANDWIDTH) ** 2)  # (68, 68): row i fits about i
    w /= w.sum(1, keepdims=True)
    mr, ms = w @ xr, w @ xs
    cov = (w * (xr[None, :] - mr[:, None]) * (xs[None, :] - ms[:, None])).sum(1)
    var = (w * (xr[None, :] - mr[:, None]) ** 2).sum(1)
    return np.clip(cov / np.maximum(var, 1e-9), *SIDE_SCALE_RANGE)


def transfer_motion(
    source: np.ndarray,
    driving: np.ndarray,
    mode: str = "relative",
    reference: str | int = "best",
    foreshorten: bool = True,
) -> np.ndarray:
    """Landmarks for the source face following the driving clip.

    Args:
        source: ``(68, 2)`` landmarks of the source face, in source-image pixels.
        driving: ``(T, 68, 2)`` landmarks of the driving clip, in driving-frame pixels.
        mode: ``"relative"`` moves the source's own landmarks by the driving motion relative to a
            reference frame, normalised for face size and position (keeps the source's face shape);
            ``"absolute"`` places the driving landmarks themselves on the source face's position and
            size (the driving face's shape replaces the source's).
        reference: for ``relative``: ``"first"``, ``"best"`` (the driving frame most like the source's
            expression, so a source with a closed mouth is not driven "more closed") or a frame index.
        foreshorten: for ``relative``: scale the sideways part of the expression change on each side of
            the face by how wide that side is in the source against the driver's reference
            (:func:`side_scales`), so a turned portrait's far side moves as little as it shows.

    Returns:
        ``(T, 68, 2)`` float32 landmarks in source-image pixels.
    """
    check_motion(mode, reference)
    src = _check_track(source, "source")[0]
    drv = _check_track(driving, "driving")
    if not np.isfinite(src).all():
        raise InputError("The source landmarks contain NaN: the source image needs a detected face.")
    if not np.isfinite(drv).all():
        raise InputError("The driving landmarks contain NaN: fill or drop frames without a face first.")
    src_c, src_s = face_frame(src)
    drv_c, drv_s = face_frame(drv)
    if mode == "absolute":
        # Driving shape as it is, placed where the source face is; head motion relative to the first
        # driving frame carries over in source units.
        ref_c, ref_s = drv_c[0], drv_s[0]
        scale = src_s / ref_s
        out = (drv - ref_c) * scale + src_c
        return out.astype(np.float32)
    if reference == "first":
        ref = 0
    elif reference == "best":
        ref = most_similar_frame(src, drv)
    else:
        ref = int(reference)
        if not 0 <= ref < len(drv):
            raise InputError(f"Reference frame {ref} is outside the driving clip (frames 0..{len(drv) - 1}): "
                             "give an index in that range, or 'best' or 'first'.")
    drv_n = normalise(drv)
    # Expression change in the reference frame's orientation: undo each frame's in-plane rotation
    # relative to the reference, take the shape difference, turn it into the source face's own
    # orientation (a tilted portrait opens its mouth along its own vertical), add it to the source and
    # apply the frame's rotation.
    out = np.empty_like(drv)
    ref_n = drv_n[ref]
    src_n = normalise(src)
    to_source = _procrustes_rotation(ref_n[STABLE], src_n[STABLE])  # reference orientation -> source's
    if foreshorten:  # the sideways component, along the source's eye line, scaled per point
        across = _across(src_n)
        sideways = (side_scales(src_n, ref_n @ to_source) - 1.0)[:, None] * across  # (68, 2)
    for t in range(len(drv)):
        rot = _procrustes_rotation(drv_n[t][STABLE], ref_n[STABLE])  # frame t -> reference orientation
        delta = (drv_n[t] @ rot - ref_n) @ to_source
        if foreshorten:
            delta = delta + sideways * (delta @ across)[:, None]
        shape = (src_n + delta) @ rot.T  # back to frame t's orientation
        scale = src_s * drv_s[t] / drv_s[ref]
        shift = (drv_c[t] - drv_c[ref]) * (src_s / drv_s[ref])
        out[t] = shape * scale + src_c + shift
    return close_without_crossing(out).astype(np.float32)


def close_without_crossing(track: np.ndarray) -> np.ndarray:
    """``(T, 68, 2)`` landmarks where no upper eyelid or inner upper lip lies below its lower partner.

    Relative transfer adds the driver's change of opening to the source's own. When the driver closes
    (or presses) more than in its reference frame and the source's gap is smaller, as a painting's
    closed mouth is, the sum is negative: the upper lip would cross below the lower one, which draws an
    inverted, open mouth (on the Mona Lisa this happened in 143 of 200 frames of one clip). Closed is
    as far as a gap goes, so each crossed pair meets halfway, along the face's own vertical (the normal
    of the line between the eye centres).
    """
    out = np.array(track, dtype=np.float64, copy=True)
    across = _across(out)  # (T, 2): left-to-right eye centres
    down = np.stack([-across[:, 1], across[:, 0]], axis=-1)[:, None, :]  # (T, 1, 2), image y points down
    upper, lower = CLOSING_PAIRS[:, 0], CLOSING_PAIRS[:, 1]
    gap = ((out[:, lower] - out[:, upper]) * down).sum(-1, keepdims=True)  # (T, P, 1), < 0 when crossed
    half = np.minimum(gap, 0.0) / 2 * down
    out[:, upper] += half
    out[:, lower] -= half
    return out


def preset_frames(preset: str, seconds: float, fps: float) -> int:
    """The number of frames a preset of ``seconds`` at ``fps`` has, once its arguments are checked."""
    if preset not in PRESETS:
        raise InputError(f"Unknown motion preset {preset!r}: use 'talk' or 'idle'.")
    seconds = check_number("seconds", seconds, 0, maximum=MAX_PRESET_SECONDS)
    fps = check_fps(fps)
    n = max(1, int(round(seconds * fps)))
    if n > MAX_FRAMES:
        raise InputError(f"{seconds:g} s at {fps:g} fps is {n} frames, more than the {MAX_FRAMES} a preset can have: "
                         "lower the seconds or the fps.")
    return n


def preset_motion(
    source: np.ndarray,
    preset: str = "talk",
    seconds: float = 5.0,
    fps: float = 25.0,
    seed: int = 0,
) -> np.ndarray:
    """Landmark track made from the source's own landmarks, without a driving video.

    ``talk``: speech-like mouth opening (syllables at ~4 Hz with pauses), blinks every 2-6 s and small
    head motion. ``idle``: blinks, slow breathing and a gentle head sway. Deterministic for a seed.
    ``seconds`` is at most :data:`~talkinghead.checks.MAX_PRESET_SECONDS`, ``fps`` at most
    :data:`~talkinghead.checks.MAX_FPS`, and together they make at most
    :data:`~talkinghead.checks.MAX_FRAMES` frames: anything else is an :class:`InputError`, before any
    memory is taken.

    Returns:
        ``(round(seconds * fps), 68, 2)`` float32 landmarks in source-image pixels.
    """
    n = preset_frames(preset, seconds, fps)
    seed = check_int("seed", seed, 0)
    check_memory(n * 68 * 2 * 8 * 6, f"A motion preset of {n} frames", "lower the seconds or the fps")  # ~6 tracks of float64
    src = _check_track(source, "source")[0].astype(np.float64)
    rng = np.random.default_rng(seed)
    t = np.arange(n) / fps
    centre, size = face_frame(src)

    # Blinks: a 150 ms close-open at random 2-6 s intervals.
    blink = np.zeros(n)
    when = rng.uniform(0.5, 2.0)
    while when < seconds:
        blink += np.exp(-0.5 * ((t - when) / 0.05) ** 2)
        when += rng.uniform(2.0, 6.0)
    blink = np.clip(blink, 0, 1)

    mouth = np.zeros(n)
    if preset == "talk":
        # Syllable rate ~4 Hz with random amplitudes, grouped into phrases separated by short pauses.
        syll = np.maximum(0.0, np.sin(2 * np.pi * 4.0 * t + rng.uniform(0, 2 * np.pi)))
        knots = np.arange(0.0, seconds + 0.5, 0.25)  # a new syllable loudness every 250 ms
        amp = np.interp(t, knots, rng.uniform(0.3, 1.0, len(knots)))
        phrase = (np.sin(2 * np.pi * t / rng.uniform(2.5, 3.5)) > -0.6).astype(float)
        phrase = np.convolve(phrase, np.ones(5) / 5, mode="same")[:n]
        mouth = syll * amp * phrase
        head_amp, head_hz = 0.06, 0.35
    else:
        head_amp, head_hz = 0.03, 0.15

    out = np.repeat(src[None], n, axis=0)
    # Mouth: lower lip and lower jaw move down by up to ~0.35 face sizes (open mouth).
    open_px = 0.35 * size * mouth
    lower = np.r_[56:59, 65:68]  # lower lip centre points (outer 56-58, inner 65-67)
    corners = np.array([48, 54, 60, 64])
    out[:, lower, 1] += open_px[:, None]
    out[:, [55, 59], 1] += 0.6 * open_px[:, None]
    out[:, corners, 1] += 0.15 * open_px[:, None]
    out[:, 6:11, 1] += 0.5 * open_px[:, None]  # chin follows the jaw
    out[:, [5, 11], 1] += 0.3 * open_px[:, None]
    # Eyes: move lids towards each other's midline.
    for side in ("left", "right"):
        up, lo = UPPER_LID[side], LOWER_LID[side]
        mid = (src[up, 1] + src[lo, 1]) / 2
        out[:, up, 1] += (mid - src[up, 1])[None] * blink[:, None]
        out[:, lo, 1] += (mid - src[lo, 1])[None] * blink[:, None]
    # Head: small in-plane rotation, nod and breathing-like vertical motion about the face centre.
    phase = rng.uniform(0, 2 * np.pi, 3)
    angle = head_amp * 0.5 * np.sin(2 * np.pi * head_hz * t + phase[0])
    dx = head_amp * size * np.sin(2 * np.pi * head_hz * 0.7 * t + phase[1])
    dy = head_amp * size * 0.5 * np.sin(2 * np.pi * 0.25 * t + phase[2])
    cos, sin = np.cos(angle), np.sin(angle)
    rel = out - centre
    rot = np.stack([rel[..., 0] * cos[:, None] - rel[..., 1] * sin[:, None],
                    rel[..., 0] * sin[:, None] + rel[..., 1] * cos[:, None]], axis=-1)
    out = rot + centre + np.stack([dx, dy], -1)[:, None, :]
    return out.astype(np.float32)
