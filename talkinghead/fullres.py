"""Faces at the source's resolution: the network at its trained size, the source's own pixels moved at 512.

The warp family moves the source's pixels; the network (at ``S``, its trained size) only adds a flow
correction, a mask and painted RGB. So a face much larger than ``S`` in the source need not come out as
an ``S``-pixel patch::

    generator at S  ->  grid (TPS + flow), blend weights, and fake - corrected (the painted residual)
    upsampled to F  ->  the source's F-pixel crop (sharp, from its own pixels) sampled by the F grid
                        + the upsampled residual  ->  the face at F, pasted back with an upsampled mask

At ``F = S`` the result is the generator's ``fake`` itself. Shots other than the source photo (an avatar
of several photos) are kept at ``S`` only and are upsampled (they are blended in where the prior or the
region maps pick them). :class:`FaceRenderer` holds everything that depends only on the avatar (the
crops, the source's face mask, the batched state, the spectral-normalised weights), computed once.

>>> renderer = FaceRenderer(avatar, face_size=512)                      # doctest: +SKIP
>>> faces, masks = renderer.render(crop_landmarks)   # (B, 512, 512, 3) uint8, (B, 512, 512) float32
>>> frame = renderer.paste(faces[0], masks[0])        # the source image with the face pasted back
"""
from __future__ import annotations

import contextlib
import functools
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .errors import InputError

__all__ = ["FACE_SIZES", "FaceRenderer", "auto_face_size", "bf16_pays", "check_face_size", "sharpness", "face_box_sharpness"]

FACE_SIZES = (256, 512)
# a face crop whose side in the source is at least this many times the network's size is rendered at
# 512: below it, 512 px would only interpolate the source's own pixels
AUTO_UPSCALE_MIN = 1.5
# how the source's own pixels are read at the source's resolution: bicubic keeps more of their fine
# detail than bilinear where the field moves them by a fraction of a pixel (measured in benchmarks/realtime.py)
SOURCE_SAMPLING = "bicubic"
# the side of the native paste-back's soft face mask (it is resampled to the face's region anyway)
PASTE_MASK_SIZE = 64


@functools.lru_cache(maxsize=None)
def _cpu_flags() -> frozenset:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def bf16_pays(device) -> bool:
    """Whether bf16 autocast speeds the network up on ``device``: CUDA, or a CPU with AMX tiles or
    AVX512-BF16 (Linux's /proc/cpuinfo; elsewhere bf16 is emulated and slower than float32)."""
    device = torch.device(device)
    if device.type == "cuda":
        return True
    return device.type == "cpu" and bool({"amx_bf16", "avx512_bf16"} & _cpu_flags())


def check_face_size(face_size: Any) -> int | None:
    """``None``/``"auto"`` (the best the source allows) or one of :data:`FACE_SIZES`; else InputError."""
    if face_size is None or face_size == "auto":
        return None
    try:
        value = int(face_size)
    except (TypeError, ValueError):
        value = None
    if value not in FACE_SIZES or isinstance(face_size, bool):
        raise InputError(f"face_size must be auto or one of {', '.join(map(str, FACE_SIZES))}, not {face_size!r}.")
    return value


def auto_face_size(crop, net_size: int) -> int:
    """The face size the source allows: 512 where its face crop spans at least 1.5 x 256 source pixels
    (and the network runs below 512), else the network's own size."""
    if crop.side >= AUTO_UPSCALE_MIN * 256 and net_size < 512:
        return 512
    return net_size


class FaceRenderer:
    """Batched face rendering for one avatar, at ``face_size`` (``None``: :func:`auto_face_size`).

    ``bf16`` (``True``, ``False`` or ``"auto"``: on where :func:`bf16_pays`) runs the network under bf16
    autocast (coordinates and the warp stay float32; pasted faces within 2 levels of float32's, 66 dB
    PSNR on ``s10``) and ``channels_last`` keeps its activations NHWC. bf16 is on where it pays: on
    the idle 2-core AMX machine (``benchmarks/realtime.py``, crop-only 256, three runs) it took the
    network from 17.3-18.0 to 12.4-13.4 ms a frame; channels-last did nothing (off). An earlier
    measurement under load had said the opposite. The spectral-normalised weights are computed once
    per batch instead of once per conv (``parametrize.cached``; about 1% here, within noise).
    """

    def __init__(self, avatar, face_size: int | str | None = None, bf16: bool | str = "auto",
                 channels_last: bool = False):
        from .landmarks import FaceCrop, crop_image, face_mask, transform_landmarks
        from .tensors import to_tensor

        self.avatar = avatar
        self.generator = avatar.generator.eval()
        self.net_size = s = avatar.image_size
        src = avatar.source
        size = check_face_size(face_size)
        needs_shots = getattr(self.generator, "needs_shots", False)
        # auto: a family that draws every pixel gives its own size (an upsampled face is no sharper)
        self.face_size = size if size is not None else (auto_face_size(src.crop, s) if needs_shots else s)
        self.device = avatar.device
        self.bf16 = bf16_pays(self.device) if bf16 == "auto" else bool(bf16)
        self.channels_last = bool(channels_last)
        self.dtype = avatar.psi.dtype
        self.state = {k: v[None] for k, v in avatar.state.items()}  # a batch of one, shared by every frame
        self.crop = FaceCrop(src.crop.center, src.crop.side, self.face_size)  # same square, F pixels
        self.source_mask = face_mask(transform_landmarks(src.landmarks, src.crop), s)
        self._shots_hi = None
        self._native = size is None and needs_shots
        # shots other than the source's own crop (an avatar of several photos)
        self._several_shots = self.state.get("shots") is not None and self.state["shots"].shape[1] > 1
        if self._native:
            self._setup_native()
        if self.face_size != s and needs_shots:
            # shot 0 is the source photo (personalize keeps the first photo as the source): its own
            # F-pixel crop; any other shot is upsampled from S
            hi = to_tensor(crop_image(src.image, self.crop), self.device, torch.float32)[None]
            shots = self.state["shots"][0].float()
            lo0 = to_tensor(crop_image(src.image, src.crop), self.device, torch.float32)
            up = F.interpolate(shots, size=(self.face_size,) * 2, mode="bilinear", align_corners=False)
            if float((shots[0] - lo0).abs().max()) < 2.0 / 255:  # the source's crop: the sharp one replaces it
                up[0] = hi[0]
            self._shots_hi = up

    # ---- the stages (public so that benchmarks/realtime.py can time them one by one) ------------
    def inputs(self, crop_landmarks: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Landmark images ``y (B,3,S,S)`` and points ``(B,68,2)`` for landmarks in the net crop's pixels."""
        from .landmarks import landmark_images

        lm = np.asarray(crop_landmarks, np.float32)
        y = landmark_images(lm, self.net_size).to(self.device, self.dtype)
        return y, torch.as_tensor(lm, device=self.device)

    def _context(self):
        from torch.nn.utils import parametrize

        stack = contextlib.ExitStack()
        # spectral norm's weights are computed once per call, not once per conv per batch
        stack.enter_context(parametrize.cached())
        if self.bf16 and self.device.type in ("cpu", "cuda"):
            stack.enter_context(torch.autocast(self.device.type, dtype=torch.bfloat16))
        return stack

    @torch.no_grad()
    def generate(self, y: torch.Tensor, points: torch.Tensor) -> dict:
        """The generator's outputs at ``S`` (``fake`` and its auxiliaries, float32)."""
        if self.channels_last:
            y = y.contiguous(memory_format=torch.channels_last)
        with self._context():
            out = self.generator.generate(y, points, self.state)
        return {k: (v.float() if torch.is_tensor(v) and v.is_floating_point() else v) for k, v in out.items()}

    @torch.no_grad()
    def upsample(self, out: dict, points: torch.Tensor) -> torch.Tensor:
        """``(B, 3, F, F)`` in [-1, 1]: the source's F-pixel crop moved by the upsampled field, plus the
        network's upsampled residual. ``out["fake"]`` itself where ``F = S`` (or for a family without shots)."""
        from .models.tps import warp_images

        fake = out["fake"]
        if self._shots_hi is None:  # F = S, or a family that draws every pixel: its face, resized
            return fake if self.face_size == self.net_size else F.interpolate(
                fake, size=(self.face_size,) * 2, mode="bilinear", align_corners=False).clamp(-1.0, 1.0)
        s, f = self.net_size, self.face_size
        index = out["shot_index"]  # (B, K'): the shots the generator warped, in its order
        b, k = index.shape
        grid = self._grid(out, points)
        weights = out["weights"]  # (B, K', 1, S, S)
        corrected = out["corrected"] if "corrected" in out else \
            (weights * warp_images(self.state["shots"][0].float()[index], grid)).sum(dim=1)
        residual = fake - corrected  # what the network painted over the warp (mask and rgb)
        grid_hi = F.interpolate(grid.permute(0, 1, 4, 2, 3).reshape(b * k, 2, s, s), size=(f, f), mode="bilinear",
                                align_corners=False).reshape(b, k, 2, f, f).permute(0, 1, 3, 4, 2)
        w_hi = F.interpolate(weights.reshape(b * k, 1, s, s), size=(f, f), mode="bilinear",
                             align_corners=False).reshape(b, k, 1, f, f)
        sharp = (w_hi * warp_images(self._shots_hi[index], grid_hi)).sum(dim=1)
        res_hi = F.interpolate(residual, size=(f, f), mode="bilinear", align_corners=False)
        return (sharp + res_hi).clamp(-1.0, 1.0)

    def _grid(self, out: dict, points: torch.Tensor) -> torch.Tensor:
        """``(B, K', S, S, 2)``: where each output pixel reads in each shot (TPS grid + the flow). The
        generator returns its TPS grids; recomputed (the same) for one that does not."""
        from .models.tps import tps_grid

        grid = out.get("grid")
        if grid is None:
            grid = tps_grid(points.float(), self.state["shot_points"][0][out["shot_index"]], self.net_size,
                            self.generator.border)
        return grid.float() + out["flow"][:, None]

    def masks(self, crop_landmarks: np.ndarray) -> np.ndarray:
        """``(B, F, F)`` float32 paste-back masks: the driven face's region and the source's, so the
        source's own face is covered where the driven one has moved away from it."""
        import cv2

        from .landmarks import face_mask

        out = np.empty((len(crop_landmarks), self.face_size, self.face_size), np.float32)
        for i, lm in enumerate(np.asarray(crop_landmarks, np.float32)):
            m = np.maximum(face_mask(lm, self.net_size), self.source_mask)
            out[i] = m if self.face_size == self.net_size else cv2.resize(
                m, (self.face_size, self.face_size), interpolation=cv2.INTER_LINEAR)
        return out

    def render(self, crop_landmarks: np.ndarray, with_masks: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """Faces uint8 ``(B, F, F, 3)`` and (``with_masks``) paste masks ``(B, F, F)`` for landmarks
        ``(B, 68, 2)`` in the network crop's pixels."""
        from .tensors import to_uint8

        y, points = self.inputs(crop_landmarks)
        faces = to_uint8(self.upsample(self.generate(y, points), points))
        return faces, (self.masks(crop_landmarks) if with_masks else None)

    def paste(self, face: np.ndarray, mask: np.ndarray, frame: np.ndarray | None = None) -> np.ndarray:
        """``face`` (F pixels) pasted into ``frame`` (default: the source image) with ``mask``; a new frame."""
        from .landmarks import paste_back

        return paste_back(self.avatar.source.image if frame is None else frame, face, self.crop, mask=mask)

    # ---- paste-back at the source's own resolution ----------------------------------------------
    @property
    def native(self) -> bool:
        """Whether :meth:`frames` samples the source image itself (one resampling of its pixels, at its
        own resolution) instead of pasting an F-pixel face: with ``face_size=None`` (auto) for a family
        that moves the shots' pixels."""
        return self._native

    def _setup_native(self) -> None:
        """The region of the source the face covers (the crop's square, clipped), its pixels' crop
        coordinates, and the source's pixels around it as a tensor: fixed for the avatar."""
        src = self.avatar.source
        h, w = src.image.shape[:2]
        x0, y0, x1, y1 = src.crop.box
        self.roi = (max(0, int(np.floor(x0))), max(0, int(np.floor(y0))), min(w, int(np.ceil(x1)) + 1),
                    min(h, int(np.ceil(y1)) + 1))
        ax0, ay0, ax1, ay1 = self.roi
        cx, cy = src.crop.center
        half = src.crop.side / 2.0
        dev = self.device
        # ROI pixel centres -> the crop's normalised coordinates (align_corners=False: the square's
        # edges are -1 and 1)
        gx = (torch.arange(ax0, ax1, device=dev, dtype=torch.float32) - cx) / half
        gy = (torch.arange(ay0, ay1, device=dev, dtype=torch.float32) - cy) / half
        yy, xx = torch.meshgrid(gy, gx, indexing="ij")
        self._uv = torch.stack([xx, yy], dim=-1)[None]  # (1, h, w, 2)
        # the source pixels the field may read: the square and a quarter of its side around it
        m = 0.25 * src.crop.side
        self.patch = (max(0, int(np.floor(x0 - m))), max(0, int(np.floor(y0 - m))), min(w, int(np.ceil(x1 + m)) + 1),
                      min(h, int(np.ceil(y1 + m)) + 1))
        px0, py0, px1, py1 = self.patch
        from .tensors import to_tensor

        self._patch = to_tensor(src.image[py0:py1, px0:px1], dev, torch.float32)[None].contiguous()
        pw, ph = px1 - px0, py1 - py0
        # crop-normalised g -> source pixel cx + g * half -> the patch's normalised coordinates
        self._to_patch = (torch.tensor([half * 2.0 / pw, half * 2.0 / ph], device=dev),
                          torch.tensor([(cx - px0 + 0.5) * 2.0 / pw - 1.0, (cy - py0 + 0.5) * 2.0 / ph - 1.0],
                                       device=dev))
        self._roi = to_tensor(src.image[ay0:ay1, ax0:ax1], dev, torch.float32)[None]  # (1, 3, h, w) in [-1, 1]
        # the source's own paste mask, at PASTE_MASK_SIZE (frames() draws the driven one there too)
        from .landmarks import face_mask, transform_landmarks

        self._mask_lo = face_mask(transform_landmarks(src.landmarks, src.crop) * (PASTE_MASK_SIZE / self.net_size),
                                  PASTE_MASK_SIZE)

    @torch.no_grad()
    def frames(self, crop_landmarks: np.ndarray) -> list[np.ndarray]:
        """The source image with the driven face, one uint8 ``(H, W, 3)`` frame per landmark set."""
        if not self._native:
            faces, masks = self.render(crop_landmarks)
            return [self.paste(f, m) for f, m in zip(faces, masks)]
        from .landmarks import face_mask
        from .models.tps import warp_images
        from .tensors import to_uint8

        y, points = self.inputs(crop_landmarks)
        out = self.generate(y, points)
        s = self.net_size
        index = out["shot_index"]
        b, k = index.shape
        shots = self.state["shots"][0].float()
        grid, weights = self._grid(out, points), out["weights"]
        residual = out["fake"] - (out["corrected"] if "corrected" in out else
                                  (weights * warp_images(shots[index], grid)).sum(dim=1))
        # the paste mask is a hull blurred by 4% of the crop: drawn at 64 px it is the same once
        # resampled to the ROI, at a twentieth of the cost of drawing it at S (1.4 ms a frame at 256)
        masks = torch.from_numpy(np.stack([np.maximum(face_mask(lm * (PASTE_MASK_SIZE / s), PASTE_MASK_SIZE),
                                                      self._mask_lo)
                                           for lm in np.asarray(crop_landmarks, np.float32)])).to(self.device)
        ax0, ay0, ax1, ay1 = self.roi
        hh, ww = ay1 - ay0, ax1 - ax0
        scale, shift = self._to_patch
        result = []
        chunk = max(1, (1 << 22) // max(1, hh * ww))  # frames at a time: about 4 M pixels
        for a in range(0, b, chunk):
            n = min(chunk, b - a)
            uv = self._uv.expand(n, -1, -1, -1)

            def at_roi(x):  # (n, C, S, S) -> (n, C, hh, ww), bilinear, 0 outside the square
                return F.grid_sample(x, uv, mode="bilinear", padding_mode="zeros", align_corners=False)

            face = at_roi(residual[a:a + n])
            for j in range(k):
                g = F.grid_sample(grid[a:a + n, j].permute(0, 3, 1, 2), uv, mode="bilinear", padding_mode="border",
                                  align_corners=False).permute(0, 2, 3, 1)  # (n, hh, ww, 2) in crop coordinates
                idx = index[a:a + n, j]
                sharp = F.grid_sample(self._patch.expand(n, -1, -1, -1), g * scale + shift, mode=SOURCE_SAMPLING,
                                      padding_mode="border", align_corners=False)
                if self._several_shots and bool((idx != 0).any()):  # another photo's shot
                    other = F.grid_sample(shots[idx], g, mode="bilinear", padding_mode="border", align_corners=False)
                    sharp = torch.where((idx == 0)[:, None, None, None], sharp, other)
                face = face + at_roi(weights[a:a + n, j]) * sharp
            alpha = at_roi(masks[a:a + n, None]).clamp(0.0, 1.0)
            blended = to_uint8(self._roi + alpha * (face.clamp(-1.0, 1.0) - self._roi))  # (n, hh, ww, 3)
            for i in range(n):
                frame = self.avatar.source.image.copy()
                frame[ay0:ay1, ax0:ax1] = blended[i]
                result.append(frame)
        return result


# ----------------------------------------------------------------------------------- sharpness
def sharpness(image: np.ndarray) -> float:
    """Variance of the Laplacian of an RGB or grey image's luminance (float64)."""
    import cv2

    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
    return float(cv2.Laplacian(grey.astype(np.float64), cv2.CV_64F).var())


def face_box_sharpness(image: np.ndarray, landmarks: np.ndarray, size: int = 128) -> float:
    """:func:`sharpness` of the landmarks' bounding box in ``image``, resized to ``size`` x ``size``
    (area averaging): the issue's measure of how much facial detail survives animation."""
    import cv2

    lm = np.asarray(landmarks, np.float64)
    h, w = image.shape[:2]
    x0, y0 = np.floor(lm.min(axis=0)).astype(int)
    x1, y1 = np.ceil(lm.max(axis=0)).astype(int) + 1
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    if x1 - x0 < 2 or y1 - y0 < 2:
        raise InputError("The face box is empty or outside the image: check the landmarks.")
    box = image[y0:y1, x0:x1]
    interp = cv2.INTER_AREA if min(box.shape[:2]) >= size else cv2.INTER_LINEAR
    return sharpness(cv2.resize(np.ascontiguousarray(box), (size, size), interpolation=interp))
