"""The paper's losses as named, weighted terms summed in one place.

Generator side (embedder + generator, or G' during fine-tuning)::

    total = sum_n w_content[n] * sum_l |phi_n,l(x) - phi_n,l(x_hat)|_1     content, per backbone n
          + w_adv * (-mean r_hat)                                          adversarial
          + w_fm  * sum_l |D_l(x, y) - D_l(x_hat, y)|_1                    feature matching
          + w_mch * |e_hat - W_i|_1                                        embedding match (optional)
          + w_pix * |x - x_hat|_1                                          pixel (not in the paper; 0)
          + auxiliary terms of the generator family's outputs (warp family, not in the paper):
            w_fs * (|d flow/dx|_1 + |d flow/dy|_1)                         flow_smoothness
            w_fm2 * mean(flow^2)                                           flow_magnitude
            w_mask * mean(1 - mask)                                        mask (keep the warp unless
                                                                           the network has a reason)
          + w_mp * |x - x_hat|_1 inside the target's mouth box             mouth_pixel (not in the paper; 0)
          + w_mc * content loss of the mouth boxes at 64 px                mouth_content (not in the paper; 0)

Discriminator side: hinge, ``mean(relu(1 + r_hat)) + mean(relu(1 - r))``.

Every ``|.|_1`` is a mean over elements (as ``F.l1_loss``), so the weights do not depend on image size.
Each call returns ``(total, terms)`` where ``terms`` maps names to the *weighted* detached values that
sum to ``total`` (plus ``"total"``), ready for logging without a GPU sync until the caller reads them.

Weights (``LossWeights``) follow Zakharov et al. 2019: content 1e-2 (VGG19) and 2e-3 (VGGFace),
adversarial 1, feature matching 10, embedding match 80. For the offline ST-LPIPS VGG16 backbone the
content weight is 0.15 (our choice, not the paper's): that trunk takes ImageNet-normalised input like
VGG19, while VGGFace takes 0-255 input, whose features came out 73x larger on the same trunk for a face
and its blurred copy; 1e-2 + 73 * 2e-3 ~= 0.157 keeps the content term at the paper's magnitude.

``pixel`` (an L1 distance between the frames, in [-1, 1] units) is *not* one of the paper's terms and
is 0 by default, which leaves it out. Short CPU runs may set it: it hands the generator each video's
colours (skin, hair, clothes, background) directly, where the perceptual and adversarial terms only
get there after many thousands of steps (see scripts/train_default.py and the model card).
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn
import torch.nn.functional as F

__all__ = ["LossWeights", "GeneratorLoss", "content_loss", "feature_matching_loss", "discriminator_loss",
           "auxiliary_terms", "mouth_mask", "mouth_crops"]


@dataclass
class LossWeights:
    """Weights of every loss term; JSON round trip with ``to_dict``/``from_dict`` (saved with a run)."""

    content_vgg19: float = 1e-2
    content_vggface: float = 2e-3
    content_stlpips: float = 0.15
    adversarial: float = 1.0
    feature_matching: float = 10.0
    embedding_match: float = 80.0
    pixel: float = 0.0
    # regularisers of the warp family's auxiliaries (ignored for a family without them)
    flow_smoothness: float = 10.0
    flow_magnitude: float = 10.0
    mask: float = 0.1
    # L1 inside the target's mouth box (not in the paper; 0 = off): where a warp has nothing to copy
    mouth_pixel: float = 0.0
    # the content backbones on the real and fake mouth boxes at 64 px (not in the paper; 0 = off): L1
    # alone learns an average, blurred mouth inside; a perceptual term asks for teeth and lip edges
    mouth_content: float = 0.0
    # L1 inside the learned mouth inside's polygon, over its area (the inside stage: aux "inside_alpha")
    inside_pixel: float = 0.0

    def __post_init__(self):
        # a NaN, infinite or negative weight trains towards nonsense without any error
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            try:
                ok = math.isfinite(value) and value >= 0
            except TypeError:
                ok = False
            if not ok:
                raise ValueError(f"loss weight {f.name} must be a finite number >= 0, not {value!r}")

    def content_weight(self, backbone: str) -> float:
        """Weight of the content term for a backbone name (``vgg19``, ``vggface``, ``st-lpips-vgg16``)."""
        key = {"vgg19": "content_vgg19", "vggface": "content_vggface",
               "st-lpips-vgg16": "content_stlpips"}.get(backbone)
        if key is None:
            raise KeyError(f"no content weight for backbone {backbone!r}")
        return float(getattr(self, key))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "LossWeights":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown loss weights {unknown}; known: {sorted(names)}")
        return cls(**{k: _number(k, v) for k, v in d.items()})

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "LossWeights":
        return cls.from_dict(json.loads(text))


def _number(name: str, value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"loss weight {name} must be a number, not {value!r}") from None


def _check_image(name: str, x: torch.Tensor) -> None:
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"{name} must be (B, 3, H, W) in [-1, 1], got {tuple(x.shape)}")


def content_loss(backbone: nn.Module, real: torch.Tensor, fake: torch.Tensor,
                 layer_weights: Sequence[float] | None = None) -> torch.Tensor:
    """Unweighted ``sum_l lw_l * mean|phi_l(real) - phi_l(fake)|`` for one backbone; gradient flows to ``fake``.

    ``real``, ``fake``: ``(B, 3, H, W)`` in [-1, 1]. Real features are computed without a graph.
    """
    with torch.no_grad():
        feats_real = backbone(real)
    feats_fake = backbone(fake)
    lw = layer_weights if layer_weights is not None else (1.0,) * len(feats_fake)
    if len(lw) != len(feats_fake):
        raise ValueError(f"{len(lw)} layer weights for {len(feats_fake)} layers")
    return sum(w * F.l1_loss(f, r) for w, f, r in zip(lw, feats_fake, feats_real))


def feature_matching_loss(feats_real: Sequence[torch.Tensor], feats_fake: Sequence[torch.Tensor]) -> torch.Tensor:
    """Unweighted ``sum_l mean|D_l(real) - D_l(fake)|``; the real features are treated as constants."""
    if len(feats_real) != len(feats_fake):
        raise ValueError(f"feature lists differ in length: {len(feats_real)} real vs {len(feats_fake)} fake")
    return sum(F.l1_loss(f, r.detach()) for r, f in zip(feats_real, feats_fake))


def discriminator_loss(score_real: torch.Tensor, score_fake: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """Hinge loss of D: ``mean(relu(1 + r_fake)) + mean(relu(1 - r_real))``; scores ``(B,)``.

    Returns ``(total, {"d_real", "d_fake", "total", "score_real", "score_fake"})`` (detached values;
    the two scores are means, for logging only).
    """
    d_real = F.relu(1.0 - score_real).mean()
    d_fake = F.relu(1.0 + score_fake).mean()
    total = d_real + d_fake
    terms = {"d_real": d_real.detach(), "d_fake": d_fake.detach(), "total": total.detach(),
             "score_real": score_real.detach().mean(), "score_fake": score_fake.detach().mean()}
    return total, terms


def auxiliary_terms(weights: LossWeights, aux: dict) -> dict[str, torch.Tensor]:
    """Weighted regularisers of a generator family's auxiliaries (terms with weight 0 are left out):
    ``flow`` ``(B,S,S,2)`` in grid units -> ``flow_smoothness`` (total variation) and ``flow_magnitude``;
    ``mask`` ``(B,1,S,S)`` in [0, 1] (1 = the warped shots) -> ``mask``; ``points`` ``(B,68,2)`` (the
    target's landmarks) with ``real`` and ``fake`` -> ``mouth_pixel`` (mean L1 over :func:`mouth_mask`);
    ``inside_alpha`` ``(B,1,M,M)`` with them -> ``inside_pixel`` (mean L1 over the alpha)."""
    terms: dict[str, torch.Tensor] = {}
    flow, mask = aux.get("flow"), aux.get("mask")
    points, real, fake = aux.get("points"), aux.get("real"), aux.get("fake")
    if weights.mouth_pixel and points is not None and real is not None and fake is not None:
        box = mouth_mask(points, real.shape[-1]).to(fake.dtype)
        err = (box * (fake - real).abs()).sum(dim=(1, 2, 3)) / (3 * box.sum(dim=(1, 2, 3))).clamp_min(1.0)
        terms["mouth_pixel"] = weights.mouth_pixel * err.mean()
    alpha = aux.get("inside_alpha")
    if weights.inside_pixel and alpha is not None and real is not None and fake is not None:
        a = alpha.to(fake.dtype)
        err = (a * (fake - real).abs()).sum(dim=(1, 2, 3)) / (3 * a.sum(dim=(1, 2, 3))).clamp_min(1.0)
        terms["inside_pixel"] = weights.inside_pixel * err.mean()
    if flow is not None:
        if weights.flow_smoothness:
            tv = (flow[:, 1:] - flow[:, :-1]).abs().mean() + (flow[:, :, 1:] - flow[:, :, :-1]).abs().mean()
            terms["flow_smoothness"] = weights.flow_smoothness * tv
        if weights.flow_magnitude:
            terms["flow_magnitude"] = weights.flow_magnitude * flow.square().mean()
    if mask is not None and weights.mask:
        terms["mask"] = weights.mask * (1.0 - mask).mean()
    return terms


def mouth_mask(points: torch.Tensor, size: int, pad: float = 0.25) -> torch.Tensor:
    """``(B, 1, S, S)``: 1 inside each target's lips box (points 48-67, padded by ``pad`` times the mouth
    width 48-54 on every side, as the evaluation's mouth region), else 0. No gradient."""
    with torch.no_grad():
        lips = points[:, 48:68].float()
        margin = pad * (points[:, 54] - points[:, 48]).float().norm(dim=-1)  # (B,)
        lo = lips.amin(dim=1) - margin[:, None]
        hi = lips.amax(dim=1) + margin[:, None]
        t = torch.arange(size, device=points.device, dtype=torch.float32)
        inside_x = (t[None] >= lo[:, :1]) & (t[None] <= hi[:, :1])  # (B, S)
        inside_y = (t[None] >= lo[:, 1:]) & (t[None] <= hi[:, 1:])
        return (inside_y[:, :, None] & inside_x[:, None, :]).float()[:, None]


def mouth_crops(images: torch.Tensor, points: torch.Tensor, size: int = 64, pad: float = 0.25) -> torch.Tensor:
    """``(B, C, S, S)`` images -> ``(B, C, size, size)``: each image's square mouth box, differentiably
    resampled (bilinear). The box bounds the lips (48-67) of ``points`` ``(B, 68, 2)`` (pixels) padded by
    ``pad`` times the mouth width on each side and widened to a square, as the evaluation's
    :func:`talkinghead.metrics.mouth_box` (there also moved inside the image; here the border repeats)."""
    from .models.mouth import crop_box, mouth_theta

    return crop_box(images, mouth_theta(points, tuple(images.shape[-2:]), pad), size)


class GeneratorLoss(nn.Module):
    """Loss of the embedder and generator (or of G' in fine-tuning).

    ``backbones``: a :class:`talkinghead.perceptual.ContentBackbones` (or any iterable of
    ``(name, module, layer_weights)``); ``None`` or empty leaves the content term out.
    """

    def __init__(self, weights: LossWeights | None = None, backbones=None):
        super().__init__()
        self.weights = weights if weights is not None else LossWeights()
        self.backbones = backbones
        if backbones is not None:
            for name, _, _ in backbones:  # fail at construction, not at the first step
                self.weights.content_weight(name)
        if self.weights.mouth_content and not backbones:
            raise ValueError("the mouth_content loss weight needs content backbones (content 'none' gives none): "
                             "set it to 0 or choose content backbones")

    def forward(self, real: torch.Tensor, fake: torch.Tensor, score_fake: torch.Tensor,
                feats_real: Sequence[torch.Tensor], feats_fake: Sequence[torch.Tensor],
                e_hat: torch.Tensor | None = None, w_i: torch.Tensor | None = None,
                aux: dict | None = None) -> tuple[torch.Tensor, dict]:
        """Weighted sum of the terms.

        Args:
            real, fake: ``(B, 3, H, W)`` in [-1, 1]; gradients flow to ``fake``.
            score_fake: ``(B,)`` realism scores of D for ``fake``.
            feats_real, feats_fake: D's intermediate features for real and fake (same shapes per layer).
            e_hat, w_i: ``(B, D)`` embedder output and D's video embedding ``W_i``; both or neither
                (neither for fine-tuning and the feed-forward variant).
            aux: the generator family's outputs; ``flow`` ``(B,S,S,2)`` and ``mask`` ``(B,1,S,S)`` get
                their regularisers (:func:`auxiliary_terms`) when present.

        Returns:
            ``(total, terms)``: ``terms`` has ``content_<backbone>`` per backbone, ``pixel`` (when its
            weight is not 0), ``adversarial``, ``feature_matching``, ``embedding_match`` (when given) and
            ``total``, each weighted and detached.
        """
        _check_image("real", real)
        _check_image("fake", fake)
        if real.shape != fake.shape:
            raise ValueError(f"real {tuple(real.shape)} and fake {tuple(fake.shape)} differ in shape")
        if (e_hat is None) != (w_i is None):
            raise ValueError("give both e_hat and w_i for the embedding-match term, or neither")
        w = self.weights
        terms: dict[str, torch.Tensor] = {}
        if self.backbones is not None:
            for name, net, layer_weights in self.backbones:
                terms[f"content_{name}"] = w.content_weight(name) * content_loss(net, real, fake, layer_weights)
        if w.pixel:
            terms["pixel"] = w.pixel * F.l1_loss(fake, real)
        points = aux.get("points") if aux else None
        if w.mouth_content and self.backbones is not None and points is not None:
            crops_real, crops_fake = mouth_crops(real, points), mouth_crops(fake, points)
            terms["mouth_content"] = w.mouth_content * sum(
                content_loss(net, crops_real, crops_fake, layer_weights) for _, net, layer_weights in self.backbones)
        terms["adversarial"] = w.adversarial * (-score_fake.mean())
        terms["feature_matching"] = w.feature_matching * feature_matching_loss(feats_real, feats_fake)
        if e_hat is not None:
            if e_hat.shape != w_i.shape:
                raise ValueError(f"e_hat {tuple(e_hat.shape)} and w_i {tuple(w_i.shape)} differ in shape")
            terms["embedding_match"] = w.embedding_match * F.l1_loss(e_hat, w_i)
        if aux:
            terms.update(auxiliary_terms(w, aux))
        total = sum(terms.values())
        logged = {k: v.detach() for k, v in terms.items()}
        logged["total"] = total.detach()
        return total, logged
