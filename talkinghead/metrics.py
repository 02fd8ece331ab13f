"""Image metrics of the evaluation: SSIM, LPIPS, CSIM, AKD and (where possible) FID.

Inputs: ``uint8`` RGB numpy images ``(H, W, 3)`` (or stacks ``(N, H, W, 3)`` / lists of them), or torch
``float`` ``(B, 3, H, W)`` / ``(3, H, W)`` in [-1, 1] where a function says so. Each metric returns a
:class:`MetricResult` that names its backbone, so a number is never reported without saying how it
was measured (PAPER.md: state the LPIPS backbone; CSIM depends on the face-identity network).

- ``ssim``: Wang et al. 2004 with the standard 11x11 Gaussian window (sigma 1.5, K1 0.01, K2 0.03,
  data range 255, border of 5 px excluded), i.e. scikit-image's ``structural_similarity(...,
  gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255)``. ``channel="rgb"``
  (default) averages the three per-channel SSIMs; ``"luminance"`` uses BT.601 Y.
- ``lpips``: the ``lpips`` package's alex/vgg heads where it imports and their torchvision trunk
  weights are present; otherwise ST-LPIPS's shift-tolerant VGG16 with its own linear heads,
  labelled ``"st-lpips-vgg16"`` (its values are not interchangeable with LPIPS-alex numbers).
- ``csim``: cosine similarity of dlib's 128-d face descriptors
  (``dlib_face_recognition_resnet_model_v1.dat`` from ``face-recognition-models``) on faces aligned by
  the 5-point predictor and ``dlib.get_face_chip``; NaN and a flag where no face is found. Papers use
  ArcFace, whose values are lower: compare only numbers with the same backbone.
- ``akd``: mean landmark distance between generated and real frames over the inter-ocular distance
  (outer eye corners 36 and 45 of the real frame); the caller detects landmarks; frames without a
  detection (NaN rows) are counted, not silently dropped.
- ``mouth_region_metrics``: SSIM and LPIPS (same backbone as ``lpips``) of a padded square box around
  the lips, placed by the real frame's landmarks, cut from both frames and resized to 64 px, over
  the frames whose mouth is open (inner-lip gap / mouth width > ``MOUTH_OPEN_THRESHOLD`` = 0.08).
- ``fid_available()`` / ``fid``: FID needs Inception weights; without them it says why instead of
  returning a made-up number.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .errors import DependencyError, InputError, WeightsError

__all__ = ["MetricResult", "ssim", "lpips", "csim", "face_descriptor", "akd", "fid_available", "fid",
           "evaluate_frames", "MOUTH_OPEN_THRESHOLD", "MOUTH_REGION_PAD", "MOUTH_REGION_SIZE", "mouth_open_ratio",
           "mouth_is_open", "mouth_box", "mouth_crops", "mouth_region_metrics", "mouth_opening", "eye_opening",
           "relative_motion_distance", "opening_correlation"]


@dataclass
class MetricResult:
    """A metric value with the backbone that produced it.

    ``value``: the mean over valid items (NaN if none); ``per_item``: one value per image pair or
    frame (NaN where it could not be computed); ``extra``: counts and flags specific to the metric.
    """

    name: str
    value: float
    backbone: str
    per_item: list[float] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def __float__(self) -> float:
        return float(self.value)

    def to_dict(self) -> dict:
        return {"name": self.name, "value": self.value, "backbone": self.backbone,
                "per_item": list(self.per_item), **self.extra}


def _nanmean(values: Sequence[float]) -> float:
    arr = np.asarray(values, dtype=np.float64)
    ok = np.isfinite(arr)
    return float(arr[ok].mean()) if ok.any() else float("nan")


def _to_uint8_stack(x, what: str) -> np.ndarray:
    """numpy uint8 (H,W,3)/(N,H,W,3), a list of those, or torch [-1,1] (3,H,W)/(B,3,H,W) -> float (N,H,W,3) 0-255."""
    if hasattr(x, "detach"):  # torch tensor in [-1, 1]
        t = x.detach().float().cpu()
        if t.ndim == 3:
            t = t[None]
        if t.ndim != 4 or t.shape[1] != 3:
            raise ValueError(f"{what}: torch images must be (B, 3, H, W) in [-1, 1], got {tuple(t.shape)}")
        return ((t.clamp(-1, 1) + 1) * 127.5).permute(0, 2, 3, 1).numpy().astype(np.float64)
    if isinstance(x, (list, tuple)):
        x = np.stack([np.asarray(i) for i in x])
    a = np.asarray(x)
    if a.ndim == 3:
        a = a[None]
    if a.ndim != 4 or a.shape[-1] != 3:
        raise ValueError(f"{what}: numpy images must be uint8 (H, W, 3) RGB, got shape {a.shape}")
    if a.dtype != np.uint8:
        raise ValueError(f"{what}: numpy images must be uint8 RGB, got {a.dtype}")
    return a.astype(np.float64)


def _pair(a, b) -> tuple[np.ndarray, np.ndarray]:
    a, b = _to_uint8_stack(a, "first image"), _to_uint8_stack(b, "second image")
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape[1:]} vs {b.shape[1:]} (N={a.shape[0]}, {b.shape[0]})")
    return a, b


# ---------------------------------------------------------------------------------------------- SSIM

_SSIM_SIGMA, _SSIM_TRUNCATE = 1.5, 3.5  # radius int(3.5 * 1.5 + 0.5) = 5: the 11x11 window
_SSIM_BACKBONE = "gaussian11-sigma1.5-{channel}"


def _ssim_2d(x: np.ndarray, y: np.ndarray, data_range: float = 255.0) -> float:
    from scipy.ndimage import gaussian_filter

    def blur(img):
        return gaussian_filter(img, sigma=_SSIM_SIGMA, truncate=_SSIM_TRUNCATE, mode="reflect")

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    ux, uy = blur(x), blur(y)
    vx, vy, vxy = blur(x * x) - ux * ux, blur(y * y) - uy * uy, blur(x * y) - ux * uy
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    pad = int(_SSIM_TRUNCATE * _SSIM_SIGMA + 0.5)
    return float(s[pad:-pad, pad:-pad].mean())


def ssim(a, b, channel: str = "rgb") -> MetricResult:
    """SSIM of image pairs (1 for identical images). Images: numpy uint8 RGB or torch [-1, 1].

    ``channel``: ``"rgb"`` (mean of per-channel SSIM) or ``"luminance"`` (Y = .299 R + .587 G + .114 B).
    Images must be at least 11x11.
    """
    if channel not in ("rgb", "luminance"):
        raise ValueError(f"channel must be 'rgb' or 'luminance', got {channel!r}")
    a, b = _pair(a, b)
    if min(a.shape[1:3]) < 11:
        raise ValueError(f"SSIM needs images of at least 11x11 pixels, got {a.shape[1:3]}")
    vals = []
    for x, y in zip(a, b):
        if channel == "luminance":
            w = np.array([0.299, 0.587, 0.114])
            vals.append(_ssim_2d(x @ w, y @ w))
        else:
            vals.append(float(np.mean([_ssim_2d(x[..., c], y[..., c]) for c in range(3)])))
    return MetricResult("ssim", _nanmean(vals), _SSIM_BACKBONE.format(channel=channel), vals)


# --------------------------------------------------------------------------------------------- LPIPS

_TV_TRUNK_FILES = {"alex": "alexnet-owt-7be5be79.pth", "vgg": "vgg16-397923af.pth"}


def _lpips_package_ready(net: str) -> tuple[bool, str]:
    """Whether the ``lpips`` package imports and its torchvision trunk weights are local (no download)."""
    try:
        import lpips as _lp  # noqa: F401  (needs a working torchvision)
    except Exception as exc:  # ImportError, or torchvision's operator errors on a mismatched build
        return False, f"the lpips package does not import ({type(exc).__name__}); run `pip install lpips` with a torchvision matching torch"
    from .perceptual import hub_checkpoints_dir

    f = hub_checkpoints_dir() / _TV_TRUNK_FILES[net]
    if not f.is_file():
        return False, f"{f.name} is not in {f.parent}"
    return True, ""


class _STLPIPS:
    """LPIPS distance with ST-LPIPS's VGG16 trunk and linear heads: (B,3,H,W) x2 in [-1,1] -> (B,)."""

    name = "st-lpips-vgg16"

    def __init__(self):
        from .perceptual import stlpips_vgg16

        self.net = stlpips_vgg16()

    def __call__(self, x, y):
        import torch

        self.net.to(device=x.device)
        with torch.no_grad():
            fx, fy = self.net(x), self.net(y)
            total = torch.zeros(x.shape[0], device=x.device)
            for lin, a, b in zip(self.net.lins, fx, fy):
                a = a / (a.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
                b = b / (b.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
                total = total + lin((a - b) ** 2).mean(dim=(1, 2, 3))
        return total


class _PackageLPIPS:
    def __init__(self, net: str):
        try:
            import lpips as lp
        except ImportError:  # _lpips_package_ready checks first; this is the last word
            raise DependencyError("LPIPS-alex/vgg needs the lpips package: run pip install lpips "
                                  "(or use net='st-lpips-vgg16').") from None

        self.name = f"lpips-{net}"
        self.model = lp.LPIPS(net=net, verbose=False).eval()

    def __call__(self, x, y):
        import torch

        self.model.to(device=x.device)
        with torch.no_grad():
            return self.model(x, y).flatten()


def _resolve_lpips_net(net: str) -> str:
    """``"auto"`` -> ``"alex"`` where the lpips package and its trunk are ready, else ``"st-lpips-vgg16"``."""
    if net not in ("auto", "alex", "vgg", "st-lpips-vgg16"):
        raise ValueError(f"net must be 'auto', 'alex', 'vgg' or 'st-lpips-vgg16', got {net!r}")
    if net == "auto":
        return "alex" if _lpips_package_ready("alex")[0] else "st-lpips-vgg16"
    return net


def _lpips_model(net: str):
    return _lpips_model_named(_resolve_lpips_net(net))


@functools.lru_cache(maxsize=4)
def _lpips_model_named(net: str):
    if net == "st-lpips-vgg16":
        return _STLPIPS()
    ok, reason = _lpips_package_ready(net)
    if not ok:
        raise WeightsError(f"LPIPS-{net} is unavailable: {reason}; use net='st-lpips-vgg16' instead.")
    return _PackageLPIPS(net)


def lpips(a, b, net: str = "auto", device=None) -> MetricResult:
    """LPIPS distance (0 for identical images, larger = more different).

    Images: torch ``(B, 3, H, W)`` in [-1, 1] or numpy uint8 RGB ``(H, W, 3)`` / ``(N, H, W, 3)``;
    at least 32x32. ``net``: ``"auto"`` (lpips-alex where possible, else ST-LPIPS VGG16), ``"alex"``,
    ``"vgg"`` or ``"st-lpips-vgg16"``. ``device``: where to compute (default: the tensor's, or CPU).
    """
    import torch

    if net not in ("auto", "alex", "vgg", "st-lpips-vgg16"):
        raise ValueError(f"net must be 'auto', 'alex', 'vgg' or 'st-lpips-vgg16', got {net!r}")

    def to_tensor(x):
        if isinstance(x, torch.Tensor):
            t = x.detach()
            t = t[None] if t.ndim == 3 else t
            if t.ndim != 4 or t.shape[1] != 3:
                raise ValueError(f"torch images must be (B, 3, H, W) in [-1, 1], got {tuple(t.shape)}")
            return t.float()
        from .tensors import to_tensor as from_pixels

        return from_pixels(_to_uint8_stack(x, "image"))

    x, y = to_tensor(a), to_tensor(b)
    if x.shape != y.shape:
        raise ValueError(f"images differ in shape: {tuple(x.shape)} vs {tuple(y.shape)}")
    if min(x.shape[-2:]) < 32:
        raise ValueError(f"LPIPS needs images of at least 32x32 pixels, got {tuple(x.shape[-2:])}")
    dev = torch.device(device) if device is not None else x.device
    model = _lpips_model(net)
    d = model(x.to(dev), y.to(dev)).double().cpu().tolist()
    return MetricResult("lpips", _nanmean(d), model.name, d)


# ---------------------------------------------------------------------------------------------- CSIM

CSIM_BACKBONE = "dlib-resnet-v1-128d"


def _face_models_dir() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError("CSIM needs dlib's face models; run `pip install dlib-bin face-recognition-models`.")
    return Path(list(spec.submodule_search_locations)[0]) / "models"


@functools.lru_cache(maxsize=2)
def _dlib_models(points: int):
    try:
        import dlib
    except ImportError as exc:
        raise WeightsError("CSIM needs dlib; run `pip install dlib-bin face-recognition-models`.") from exc
    folder = _face_models_dir()
    pred = folder / ("shape_predictor_5_face_landmarks.dat" if points == 5 else "shape_predictor_68_face_landmarks.dat")
    rec = folder / "dlib_face_recognition_resnet_model_v1.dat"
    for f in (pred, rec):
        if not f.is_file():
            raise WeightsError(f"{f.name} is missing from {folder}; reinstall face-recognition-models.")
    return (dlib.get_frontal_face_detector(), dlib.shape_predictor(str(pred)),
            dlib.face_recognition_model_v1(str(rec)))


def face_descriptor(image: np.ndarray, points: int = 5) -> np.ndarray | None:
    """dlib's 128-d identity descriptor of the largest face in a uint8 RGB ``(H, W, 3)`` image, or None.

    The face is found by dlib's HOG detector (upsampled once for images under 400 px), aligned with
    the ``points``-point predictor (5 or 68) and ``dlib.get_face_chip`` (150 px, padding 0.25).
    """
    import dlib

    if points not in (5, 68):
        raise ValueError(f"points must be 5 or 68, got {points}")
    img = np.ascontiguousarray(image)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"face_descriptor expects uint8 (H, W, 3) RGB, got {img.dtype} {img.shape}")
    detector, predictor, recognizer = _dlib_models(points)
    rects = detector(img, 1 if max(img.shape[:2]) < 400 else 0)
    if len(rects) == 0:
        return None
    rect = max(rects, key=lambda r: r.width() * r.height())
    chip = dlib.get_face_chip(img, predictor(img, rect), size=150, padding=0.25)
    return np.asarray(recognizer.compute_face_descriptor(chip), dtype=np.float64)


def csim(generated, real, points: int = 5) -> MetricResult:
    """Cosine similarity of face-identity descriptors of generated and real images (1 = same).

    Images: numpy uint8 RGB ``(H, W, 3)``, ``(N, H, W, 3)`` or lists; torch [-1, 1] is accepted too.
    Pairs where either image has no detected face give NaN; ``extra`` counts them
    (``no_face_generated``, ``no_face_real``) and flags each pair (``no_face``).
    """
    g, r = _pair(generated, real)
    vals, no_g, no_r, flags = [], 0, 0, []
    def as_uint8(a):  # torch input arrives as float 0-255
        return np.clip(np.rint(a), 0, 255).astype(np.uint8)

    for gi, ri in zip(as_uint8(g), as_uint8(r)):
        dg, dr = face_descriptor(gi, points), face_descriptor(ri, points)
        no_g += dg is None
        no_r += dr is None
        flags.append(dg is None or dr is None)
        if dg is None or dr is None:
            vals.append(float("nan"))
        else:
            vals.append(float(dg @ dr / (np.linalg.norm(dg) * np.linalg.norm(dr) + 1e-12)))
    return MetricResult("csim", _nanmean(vals), f"{CSIM_BACKBONE}-{points}pt", vals,
                        {"no_face_generated": int(no_g), "no_face_real": int(no_r), "no_face": flags})


# ----------------------------------------------------------------------------------------------- AKD


def akd(landmarks_generated, landmarks_real, detector: str = "unspecified", normalize: bool = True) -> MetricResult:
    """Average keypoint distance between 68-point landmarks of generated and real frames.

    Args:
        landmarks_generated, landmarks_real: ``(T, 68, 2)`` or ``(68, 2)`` float, ``(x, y)`` pixels;
            a frame without a detection is NaN (any NaN marks the frame missing).
        detector: name of the landmark detector used by the caller (reported as the backbone).
        normalize: divide each frame's mean distance by the real frame's inter-ocular distance
            (outer eye corners 36 and 45); False gives pixels.

    Returns a result whose ``value`` averages frames where both sides were detected; ``extra`` has
    ``frames``, ``missing_generated``, ``missing_real`` and ``missing`` (frames left out).
    """
    g = np.asarray(landmarks_generated, dtype=np.float64)
    r = np.asarray(landmarks_real, dtype=np.float64)
    if g.ndim == 2:
        g = g[None]
    if r.ndim == 2:
        r = r[None]
    if g.shape != r.shape or g.ndim != 3 or g.shape[1:] != (68, 2):
        raise ValueError(f"landmarks must be (T, 68, 2) of equal shape, got {g.shape} and {r.shape}")
    miss_g = ~np.isfinite(g).all(axis=(1, 2))
    miss_r = ~np.isfinite(r).all(axis=(1, 2))
    vals = []
    for t in range(g.shape[0]):
        if miss_g[t] or miss_r[t]:
            vals.append(float("nan"))
            continue
        d = float(np.linalg.norm(g[t] - r[t], axis=1).mean())
        if normalize:
            iod = float(np.linalg.norm(r[t, 45] - r[t, 36]))
            d = d / iod if iod > 0 else float("nan")
        vals.append(d)
    missing = miss_g | miss_r
    return MetricResult("akd", _nanmean(vals), detector, vals,
                        {"frames": int(g.shape[0]), "missing_generated": int(miss_g.sum()),
                         "missing_real": int(miss_r.sum()), "missing": int(missing.sum()),
                         "normalized": bool(normalize)})


# ----------------------------------------------------------------------------------------------- FID

FID_WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"


def fid_available() -> tuple[bool, str]:
    """``(True, "")`` where FID can be computed (``pytorch-fid`` imports and its Inception weights
    ``pt_inception-2015-12-05-6726825d.pth`` are in torch hub's ``checkpoints/``), else ``(False, reason)``."""
    from .perceptual import hub_checkpoints_dir

    f = hub_checkpoints_dir() / FID_WEIGHTS_FILE
    if not f.is_file():
        return False, f"FID needs the Inception weights {FID_WEIGHTS_FILE} in {f.parent}"
    try:
        import pytorch_fid.inception  # noqa: F401  (imports torchvision)
    except Exception as exc:
        return False, f"FID needs the pytorch-fid package with a working torchvision ({type(exc).__name__}); run `pip install pytorch-fid`"
    return True, ""


def fid(real, fake, batch_size: int = 32, device="cpu") -> MetricResult:
    """Frechet Inception distance (2048-d pool3) between two image sets (uint8 RGB stacks or lists).

    Raises ``WeightsError`` saying why where :func:`fid_available` is False. Sets of a few hundred
    images or more are needed for a meaningful value.
    """
    ok, reason = fid_available()
    if not ok:
        raise WeightsError(f"{reason}.")
    import torch
    from scipy import linalg

    try:
        from pytorch_fid.inception import InceptionV3
    except ImportError:  # fid_available checks first; this is the last word
        raise DependencyError("FID needs the pytorch-fid package: run pip install pytorch-fid.") from None

    model = InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).to(device).eval()

    def stats(images):
        arr = _to_uint8_stack(images, "image")
        feats = []
        for i in range(0, len(arr), batch_size):
            x = torch.from_numpy(arr[i:i + batch_size]).float().permute(0, 3, 1, 2).div(255).to(device)
            with torch.no_grad():
                feats.append(model(x)[0].flatten(1).double().cpu().numpy())
        f = np.concatenate(feats)
        if len(f) < 2:
            raise InputError("FID needs at least two images per set; pass more frames.")
        return f.mean(0), np.cov(f, rowvar=False)

    (m1, s1), (m2, s2) = stats(real), stats(fake)
    covmean, _ = linalg.sqrtm(s1 @ s2, disp=False)
    if not np.isfinite(covmean).all():  # near-singular product: regularise as is customary
        eps = np.eye(s1.shape[0]) * 1e-6
        covmean = linalg.sqrtm((s1 + eps) @ (s2 + eps))
    value = float(((m1 - m2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean.real))
    return MetricResult("fid", value, "inception-v3-pool3-2048", [], {"n_real": len(real), "n_fake": len(fake)})


# -------------------------------------------------------------------------------------- mouth region

#: A frame's mouth is open when the inner-lip gap (mean of 61-67, 62-66, 63-65) over the mouth width
#: (corners 48-54) exceeds this. Closed lips give 0 to about 0.03 (the inner-lip points of a detector
#: sit on or just apart from each other); from about 0.1 the lips are parted wide enough to show teeth
#: or the mouth's inside, which a warp of a closed-mouth shot cannot produce. 0.08 lies between the two.
MOUTH_OPEN_THRESHOLD = 0.08
#: Padding of the mouth box on each side, as a fraction of the mouth width (48-54).
MOUTH_REGION_PAD = 0.25
#: Side in pixels the mouth box is resized to before SSIM and LPIPS (LPIPS needs at least 32).
MOUTH_REGION_SIZE = 64
_MOUTH = slice(48, 68)  # iBUG 68: outer lips 48-59, inner lips 60-67


def _landmark_stack(landmarks, what: str = "landmarks") -> np.ndarray:
    lm = np.asarray(landmarks, np.float64)
    if lm.ndim == 2:
        lm = lm[None]
    if lm.ndim != 3 or lm.shape[1:] != (68, 2):
        raise ValueError(f"{what} must be (T, 68, 2) or (68, 2) iBUG points, got {lm.shape}")
    return lm


def mouth_open_ratio(landmarks) -> np.ndarray:
    """Inner-lip gap over mouth width: ``(T, 68, 2)`` or ``(68, 2)`` -> ``(T,)``.

    The gap is the mean distance of the upper inner-lip points 61, 62, 63 to the lower ones 67, 66, 65;
    the width is the distance of the mouth corners 48 and 54, so the ratio does not depend on the face's
    size. NaN where a frame has NaN points or a zero width. (:func:`mouth_opening` divides the same gap
    by the face's size instead, for motion following.)
    """
    lm = _landmark_stack(landmarks)
    gap = np.linalg.norm(lm[:, [61, 62, 63]] - lm[:, [67, 66, 65]], axis=-1).mean(-1)
    width = np.linalg.norm(lm[:, 54] - lm[:, 48], axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(width > 0, gap / width, np.nan)


def mouth_is_open(landmarks, threshold: float = MOUTH_OPEN_THRESHOLD) -> np.ndarray:
    """``(T,)`` bool: :func:`mouth_open_ratio` above ``threshold`` (False for NaN frames)."""
    r = mouth_open_ratio(landmarks)
    return np.isfinite(r) & (r > threshold)


def mouth_box(landmarks, shape, pad: float = MOUTH_REGION_PAD) -> tuple[int, int, int, int] | None:
    """The mouth's square box ``(x0, y0, x1, y1)`` (pixels, ``x1``/``y1`` exclusive) in an image of ``shape``.

    ``landmarks``: one face's ``(68, 2)`` points in that image's pixels; ``shape``: ``(H, W)`` (or an
    ``(H, W, C)`` shape, or an int for a square image). The box bounds the lips (48-67), padded on
    each side by ``pad`` times the mouth width (48-54), widened to a square about its centre, moved into
    the image where it fits (as far as the lips stay in it), then clipped to it. None where the points
    are NaN or the box is empty (a mouth outside the image).
    """
    lm = np.asarray(landmarks, np.float64)
    if lm.shape != (68, 2):
        raise ValueError(f"landmarks must be one face's (68, 2) points, got {lm.shape}")
    h, w = (int(shape), int(shape)) if np.isscalar(shape) else (int(shape[0]), int(shape[1]))
    lips = lm[_MOUTH]
    if not np.isfinite(lips).all():
        return None
    margin = pad * float(np.linalg.norm(lm[54] - lm[48]))
    (x0, y0), (x1, y1) = lips.min(0) - margin, lips.max(0) + margin
    half = max(x1 - x0, y1 - y0) / 2
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    los = [int(np.floor(c - half)) for c in (cx, cy)]  # whole pixels holding the square, same side both ways
    side = max(int(np.ceil(c + half)) - lo for c, lo in zip((cx, cy), los))
    box = []
    for lo, limit, a, b in zip(los, (w, h), np.floor(lips.min(0)), np.ceil(lips.max(0))):
        if side <= limit:  # move inside where it fits, as far as the lips stay in the box
            lo = min(max(lo, 0), limit - side)
            lo = min(max(lo, int(b) - side), int(a))
        box.append((min(max(lo, 0), limit), min(max(lo + side, 0), limit)))
    (bx0, bx1), (by0, by1) = box
    if bx1 - bx0 < 2 or by1 - by0 < 2:
        return None
    return bx0, by0, bx1, by1


def mouth_crops(images, boxes: Sequence[tuple[int, int, int, int]], size: int = MOUTH_REGION_SIZE) -> np.ndarray:
    """Each image's box (see :func:`mouth_box`) resized to ``size`` x ``size``: uint8 ``(N, size, size, 3)``."""
    import cv2

    arr = np.clip(np.rint(_to_uint8_stack(images, "image")), 0, 255).astype(np.uint8)
    if len(arr) != len(boxes):
        raise ValueError(f"{len(arr)} images but {len(boxes)} boxes")
    out = np.empty((len(arr), size, size, 3), np.uint8)
    for i, (img, (x0, y0, x1, y1)) in enumerate(zip(arr, boxes)):
        patch = img[y0:y1, x0:x1]
        shrink = min(patch.shape[:2]) >= size
        out[i] = cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)
    return out


def mouth_region_metrics(generated, real, landmarks_real, lpips_net: str = "auto",
                         threshold: float = MOUTH_OPEN_THRESHOLD, size: int = MOUTH_REGION_SIZE,
                         pad: float = MOUTH_REGION_PAD) -> dict[str, MetricResult]:
    """LPIPS and SSIM of the mouth region, over the frames whose mouth is open.

    The region is :func:`mouth_box` of the REAL frame's landmarks ``landmarks_real`` (``(N, 68, 2)``, in
    the frames' pixels); the same box is cut from the generated and the real frame and resized to
    ``size`` px. Only frames where :func:`mouth_is_open` (real landmarks, ``threshold``) count: there a
    model must make teeth and the mouth's inside that a closed-mouth shot does not show. Returns
    ``{"mouth_lpips", "mouth_ssim"}`` with one ``per_item`` per frame (NaN for a closed mouth), ``value``
    the mean over open-mouth frames (NaN when there is none) and ``extra``: ``frames``,
    ``mouth_open_frames``, ``mouth_open`` (per frame), ``open_ratio``, ``threshold``, ``size``, ``pad``.
    LPIPS uses ``lpips_net`` as :func:`lpips` does (pass the main LPIPS's net to report the same backbone).
    """
    g, r = (np.clip(np.rint(x), 0, 255).astype(np.uint8) for x in _pair(generated, real))  # torch input too
    lm = _landmark_stack(landmarks_real, "landmarks_real")
    if len(lm) != len(r):
        raise ValueError(f"{len(r)} frames but {len(lm)} landmark sets")
    ratio = mouth_open_ratio(lm)
    boxes = [mouth_box(p, r.shape[1:3], pad) for p in lm]
    use = [i for i in range(len(r)) if ratio[i] > threshold and boxes[i] is not None]
    lp, ss = [float("nan")] * len(r), [float("nan")] * len(r)
    net = _resolve_lpips_net(lpips_net)
    lp_name, ss_name = _lpips_model(net).name, _SSIM_BACKBONE.format(channel="rgb")
    if use:
        sel = [boxes[i] for i in use]
        cg, cr = mouth_crops(g[use], sel, size), mouth_crops(r[use], sel, size)
        res_l, res_s = lpips(cg, cr, net=net), ssim(cg, cr)
        lp_name, ss_name = res_l.backbone, res_s.backbone
        for k, i in enumerate(use):
            lp[i], ss[i] = res_l.per_item[k], res_s.per_item[k]
    extra = {"frames": len(r), "mouth_open_frames": len(use), "mouth_open": [i in use for i in range(len(r))],
             "open_ratio": [float(x) for x in ratio], "threshold": float(threshold), "size": int(size),
             "pad": float(pad)}
    return {"mouth_lpips": MetricResult("mouth_lpips", _nanmean(lp), lp_name, lp, dict(extra)),
            "mouth_ssim": MetricResult("mouth_ssim", _nanmean(ss), ss_name, ss, dict(extra))}


# ------------------------------------------------------------------------------------------ protocol


def evaluate_frames(generated, real, landmarks_generated=None, landmarks_real=None,
                    detector: str = "unspecified", lpips_net: str = "auto",
                    with_csim: bool = True, mouth_landmarks=None) -> dict[str, MetricResult]:
    """All per-frame metrics for generated frames against the real frames they should reproduce.

    The protocol of the paper is self-reenactment: the model is driven by the landmarks of held-out
    frames of a video and compared with those real frames (say so when reporting). Frames: uint8 RGB
    ``(N, H, W, 3)`` (or lists); landmarks, if given, ``(N, 68, 2)`` detected by the caller on both
    sets with ``detector``. ``mouth_landmarks``: the real frames' ``(N, 68, 2)`` points that place the
    mouth region (the protocol passes those that drove the generation); with them the result has
    ``mouth_lpips`` and ``mouth_ssim`` (:func:`mouth_region_metrics`, LPIPS with the same backbone as
    ``lpips``). Returns ``{"ssim", "lpips", "csim"?, "akd"?, "mouth_lpips"?, "mouth_ssim"?}``; FID is a
    set-level metric, see :func:`fid` / :func:`fid_available`.
    """
    net = _resolve_lpips_net(lpips_net)  # once, so that the mouth's LPIPS cannot get another backbone
    out = {"ssim": ssim(generated, real), "lpips": lpips(generated, real, net=net)}
    if with_csim:
        out["csim"] = csim(generated, real)
    if landmarks_generated is not None and landmarks_real is not None:
        out["akd"] = akd(landmarks_generated, landmarks_real, detector=detector)
    if mouth_landmarks is not None:
        out.update(mouth_region_metrics(generated, real, mouth_landmarks, lpips_net=net))
    return out


# ------------------------------------------------------------------------ motion following (cross-id)


def mouth_opening(landmarks) -> np.ndarray:
    """Inner-lip gap over face size: ``(T, 68, 2)`` or ``(68, 2)`` -> ``(T,)`` (NaN where a frame is NaN).

    Mean of the vertical gaps 61-67, 62-66, 63-65, divided by the stable-point size of
    :func:`talkinghead.motion.face_frame`, so it does not depend on how large the face is.
    """
    from .motion import face_frame

    lm = np.asarray(landmarks, np.float64).reshape(-1, 68, 2)
    gap = np.linalg.norm(lm[:, [61, 62, 63]] - lm[:, [67, 66, 65]], axis=-1).mean(-1)
    return gap / face_frame(lm)[1]


def eye_opening(landmarks) -> np.ndarray:
    """Mean eyelid gap (37-41, 38-40, 43-47, 44-46) over face size: ``(T, 68, 2)`` -> ``(T,)``."""
    from .motion import face_frame

    lm = np.asarray(landmarks, np.float64).reshape(-1, 68, 2)
    gap = np.linalg.norm(lm[:, [37, 38, 43, 44]] - lm[:, [41, 40, 47, 46]], axis=-1).mean(-1)
    return gap / face_frame(lm)[1]


def relative_motion_distance(landmarks_output, landmarks_driver, detector: str = "unspecified",
                             reference: int = 0) -> MetricResult:
    """How closely an output follows a driver of another identity (0 = the same motion).

    Both tracks ``(T, 68, 2)`` are normalised for face position and size
    (:func:`talkinghead.motion.normalise`); each frame's displacement from the ``reference`` frame is
    compared, so the two faces' different shapes do not count, only their different motion. Units: the
    stable-point face size. Frames where either side is NaN are left out and counted in ``missing``.
    """
    from .motion import normalise

    g = np.asarray(landmarks_output, np.float64).reshape(-1, 68, 2)
    d = np.asarray(landmarks_driver, np.float64).reshape(-1, 68, 2)
    if g.shape != d.shape:
        raise ValueError(f"tracks differ in shape: {g.shape} vs {d.shape}")
    ok = np.isfinite(g).all(axis=(1, 2)) & np.isfinite(d).all(axis=(1, 2))
    vals = [float("nan")] * len(g)
    if ok.any():
        ref = reference if ok[reference] else int(np.flatnonzero(ok)[0])
        gn, dn = normalise(g), normalise(d)
        for t in np.flatnonzero(ok):
            vals[t] = float(np.linalg.norm((gn[t] - gn[ref]) - (dn[t] - dn[ref]), axis=-1).mean())
    return MetricResult("relative_motion_distance", _nanmean(vals), detector, vals,
                        {"frames": len(g), "missing": int((~ok).sum())})


def opening_correlation(landmarks_output, landmarks_driver, part: str = "mouth",
                        detector: str = "unspecified") -> MetricResult:
    """Pearson correlation over time of mouth (or eye) opening between output and driver (1 = in step).

    NaN (with ``extra["reason"]``) when fewer than 3 frames have both faces or either side does not move.
    """
    fn = {"mouth": mouth_opening, "eye": eye_opening}.get(part)
    if fn is None:
        raise ValueError(f"part must be 'mouth' or 'eye', got {part!r}")
    a, b = fn(landmarks_output), fn(landmarks_driver)
    ok = np.isfinite(a) & np.isfinite(b)
    extra = {"frames": int(len(a)), "missing": int((~ok).sum())}
    if ok.sum() < 3:
        return MetricResult(f"{part}_opening_correlation", float("nan"), detector, [], {**extra, "reason": "fewer than 3 frames with both faces"})
    a, b = a[ok], b[ok]
    if a.std() < 1e-9 or b.std() < 1e-9:
        return MetricResult(f"{part}_opening_correlation", float("nan"), detector, [], {**extra, "reason": "no motion on one side"})
    return MetricResult(f"{part}_opening_correlation", float(np.corrcoef(a, b)[0, 1]), detector, [], extra)
