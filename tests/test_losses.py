"""Loss terms: hinge values by hand, weights applied, named terms, finite values, gradients to the fake."""
from __future__ import annotations

import json

import numpy as np

import pytest
import torch

from talkinghead.losses import GeneratorLoss, LossWeights, discriminator_loss, feature_matching_loss
from talkinghead.perceptual import build_content_backbones


@pytest.fixture(scope="module")
def backbones():
    return build_content_backbones("stlpips")


def _d_feats(x):
    # stand-in for D's features: two maps that depend on the image
    return [torch.tanh(x * 2), torch.nn.functional.avg_pool2d(x, 4)]


def _batch(seed=0, size=32):
    g = torch.Generator().manual_seed(seed)
    real = torch.rand(2, 3, size, size, generator=g) * 2 - 1
    fake = (torch.rand(2, 3, size, size, generator=g) * 2 - 1).requires_grad_(True)
    return real, fake


def test_hinge_values_by_hand():
    real = torch.tensor([2.0, 0.5, -1.0])
    fake = torch.tensor([-2.0, 0.0, 3.0])
    total, terms = discriminator_loss(real, fake)
    # relu(1 - r): 0, 0.5, 2 -> mean 5/6 ; relu(1 + r_hat): 0, 1, 4 -> mean 5/3
    assert terms["d_real"].item() == pytest.approx(5 / 6)
    assert terms["d_fake"].item() == pytest.approx(5 / 3)
    assert total.item() == pytest.approx(5 / 6 + 5 / 3)
    assert terms["total"].item() == pytest.approx(total.item())


def test_generator_terms_named_finite_and_gradients_flow(backbones):
    real, fake = _batch()
    e_hat = torch.randn(2, 16, requires_grad=True)
    w_i = torch.randn(2, 16, requires_grad=True)
    score = (fake.mean(dim=(1, 2, 3)) * 3)
    loss = GeneratorLoss(LossWeights(), backbones)
    total, terms = loss(real, fake, score, _d_feats(real), _d_feats(fake), e_hat, w_i)
    assert set(terms) == {"content_st-lpips-vgg16", "adversarial", "feature_matching", "embedding_match", "total"}
    assert torch.isfinite(total)
    assert all(torch.isfinite(v) and not v.requires_grad for v in terms.values())
    parts = sum(v for k, v in terms.items() if k != "total")
    assert parts.item() == pytest.approx(total.item(), rel=1e-5)
    total.backward()
    for t in (fake, e_hat, w_i):
        assert t.grad is not None and torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0
    assert all(p.grad is None for _, net, _ in backbones for p in net.parameters())


def test_weights_are_applied(backbones):
    real, fake = _batch(1)
    score = torch.tensor([0.3, -0.1])
    args = (real, fake, score, _d_feats(real), _d_feats(fake), torch.ones(2, 4), torch.zeros(2, 4))
    _, base = GeneratorLoss(LossWeights(), backbones)(*args)
    doubled = LossWeights(content_stlpips=0.3, adversarial=2.0, feature_matching=20.0, embedding_match=160.0)
    _, twice = GeneratorLoss(doubled, backbones)(*args)
    for k in ("content_st-lpips-vgg16", "adversarial", "feature_matching", "embedding_match"):
        assert twice[k].item() == pytest.approx(2 * base[k].item(), rel=1e-5)
    assert base["adversarial"].item() == pytest.approx(-0.1)
    assert base["embedding_match"].item() == pytest.approx(80.0)


def test_pixel_term_is_off_by_default_and_an_l1_distance_when_weighted(backbones):
    real, fake = _batch(3)
    args = (real, fake, torch.zeros(2), _d_feats(real), _d_feats(fake))
    _, paper = GeneratorLoss(LossWeights(), backbones)(*args)
    assert "pixel" not in paper  # not one of the paper's terms
    _, terms = GeneratorLoss(LossWeights(pixel=10.0), backbones)(*args)
    assert terms["pixel"].item() == pytest.approx(10.0 * (real - fake).abs().mean().item(), rel=1e-5)
    assert LossWeights.from_dict(LossWeights(pixel=2.0).to_dict()).pixel == 2.0


def test_identical_images_give_zero_content_and_fm(backbones):
    real, _ = _batch(2)
    _, terms = GeneratorLoss(LossWeights(), backbones)(real, real.clone(), torch.zeros(2),
                                                       _d_feats(real), _d_feats(real))
    assert terms["content_st-lpips-vgg16"].item() == 0 and terms["feature_matching"].item() == 0
    assert "embedding_match" not in terms  # fine-tuning / FF: no W_i


def test_no_backbones_and_argument_checks():
    real, fake = _batch(3, size=8)
    total, terms = GeneratorLoss()(real, fake, torch.zeros(2), _d_feats(real), _d_feats(fake))
    assert set(terms) == {"adversarial", "feature_matching", "total"}
    with pytest.raises(ValueError, match="both"):
        GeneratorLoss()(real, fake, torch.zeros(2), [], [], e_hat=torch.zeros(2, 4))
    with pytest.raises(ValueError):
        GeneratorLoss()(real[:, :1], fake[:, :1], torch.zeros(2), [], [])
    with pytest.raises(ValueError):
        feature_matching_loss([real], [])


def test_loss_weights_json_round_trip():
    w = LossWeights(feature_matching=5.0)
    assert LossWeights.from_json(json.dumps(w.to_dict())) == w
    assert LossWeights().to_dict()["content_vgg19"] == 1e-2 and LossWeights().content_weight("vggface") == 2e-3
    with pytest.raises(ValueError, match="unknown"):
        LossWeights.from_dict({"nope": 1})


def test_loss_weight_option_names_every_weight():
    """--loss-weight's help lists the names LossWeights takes (the warp family's terms included)."""
    import argparse
    import dataclasses

    from talkinghead.cli._common import add_loss_weight_option

    p = argparse.ArgumentParser()
    add_loss_weight_option(p, "x")
    text = " ".join(p.format_help().split())
    assert all(f.name in text for f in dataclasses.fields(LossWeights))


def test_auxiliary_terms_regularise_flow_and_mask():
    """The warp family's regularisers: zero at its start (no flow, mask 1), weighted, left out at weight 0,
    and summed into GeneratorLoss's total when the outputs carry them."""
    from talkinghead.losses import auxiliary_terms

    w = LossWeights()
    still = {"flow": torch.zeros(2, 8, 8, 2), "mask": torch.ones(2, 1, 8, 8)}
    assert all(float(v) == 0 for v in auxiliary_terms(w, still).values())
    flow = torch.zeros(2, 8, 8, 2)
    flow[:, :, 4:] = 0.1  # a step: both its size and its edge cost
    terms = auxiliary_terms(w, {"flow": flow, "mask": torch.full((2, 1, 8, 8), 0.5)})
    assert set(terms) == {"flow_smoothness", "flow_magnitude", "mask"}
    assert float(terms["mask"]) == pytest.approx(w.mask * 0.5)
    assert float(terms["flow_magnitude"]) == pytest.approx(w.flow_magnitude * 0.005)
    assert float(terms["flow_smoothness"]) > 0
    assert set(auxiliary_terms(LossWeights(mask=0, flow_magnitude=0), {"flow": flow, "mask": still["mask"]})) == {"flow_smoothness"}
    assert auxiliary_terms(w, {}) == {}
    real = torch.rand(2, 3, 8, 8) * 2 - 1
    feats = [torch.rand(2, 4, 4, 4)]
    loss = GeneratorLoss(LossWeights(), backbones=None)
    plain, _ = loss(real, real, torch.zeros(2), feats, feats)
    total, logged = loss(real, real, torch.zeros(2), feats, feats, aux={"flow": flow, "mask": still["mask"]})
    assert "flow_smoothness" in logged and float(total - plain) == pytest.approx(
        float(logged["flow_smoothness"] + logged["flow_magnitude"] + logged["mask"]), rel=1e-5)


def test_mouth_pixel_term_looks_inside_the_mouth_box_only(astronaut_face):
    """mouth_pixel: an error inside the lips box costs, the same error elsewhere does not."""
    from talkinghead.losses import auxiliary_terms, mouth_mask

    _, lm = astronaut_face
    points = torch.from_numpy(lm)[None]
    box = mouth_mask(points, 256)
    assert box.shape == (1, 1, 256, 256)
    ys, xs = torch.nonzero(box[0, 0], as_tuple=True)
    assert xs.min() <= lm[48:68, 0].min() and xs.max() >= lm[48:68, 0].max()
    assert ys.min() <= lm[48:68, 1].min() and ys.max() >= lm[48:68, 1].max()
    assert 0.01 < float(box.mean()) < 0.2  # the mouth, not the face
    real = torch.zeros(1, 3, 256, 256)
    w = LossWeights(mouth_pixel=20.0)
    in_mouth = real + box * 0.5
    elsewhere = real.clone()
    elsewhere[..., :40, :40] = 0.5
    assert float(auxiliary_terms(w, {"points": points, "real": real, "fake": in_mouth})["mouth_pixel"]) == pytest.approx(10.0)
    assert float(auxiliary_terms(w, {"points": points, "real": real, "fake": elsewhere})["mouth_pixel"]) == 0.0
    assert "mouth_pixel" not in auxiliary_terms(LossWeights(), {"points": points, "real": real, "fake": in_mouth})


def test_mouth_crops_match_the_evaluation_box_and_carry_gradient():
    from talkinghead.losses import mouth_crops
    from talkinghead.metrics import mouth_box
    from skimage import data
    import cv2
    img = cv2.resize(data.astronaut(), (256, 256), interpolation=cv2.INTER_AREA)
    pts = np.zeros((68, 2))
    pts[48:68] = np.array([[100, 150], [160, 150], [130, 140], [130, 170]]).repeat(5, 0)
    pts[54], pts[48] = [160, 150], [100, 150]
    x0, y0, x1, y1 = mouth_box(pts, 256)
    want = cv2.resize(img[y0:y1, x0:x1], (64, 64), interpolation=cv2.INTER_AREA).astype(np.float32)
    x = torch.tensor(img, dtype=torch.float32).permute(2, 0, 1)[None].requires_grad_(True)
    got = mouth_crops(x, torch.tensor(pts, dtype=torch.float32)[None])
    assert got.shape == (1, 3, 64, 64)
    err = np.abs(got[0].detach().permute(1, 2, 0).numpy() - want).mean()
    assert err < 12, err  # bilinear vs area resampling of the same box
    got.sum().backward()
    grad = x.grad[0].abs().sum(0)
    assert grad[y0 + 2:y1 - 2, x0 + 2:x1 - 2].min() > 0 and grad[:y0 - 2].sum() == 0


def test_mouth_content_term_needs_backbones_and_points():
    from talkinghead.losses import GeneratorLoss, LossWeights
    class Net(torch.nn.Module):
        def forward(self, x):
            return [x.mean(1, keepdim=True)]
    real, fake = torch.rand(2, 3, 32, 32) * 2 - 1, (torch.rand(2, 3, 32, 32) * 2 - 1).requires_grad_(True)
    pts = torch.rand(2, 68, 2) * 10 + 10
    loss = GeneratorLoss(LossWeights(mouth_content=2.0, content_stlpips=0.0), [("st-lpips-vgg16", Net(), None)])
    feats = [torch.zeros(2, 4)]
    total, terms = loss(real, fake, torch.zeros(2), feats, feats, aux={"points": pts})
    assert terms["mouth_content"] > 0
    total.backward()
    assert fake.grad.abs().sum() > 0
    _, terms = loss(real, fake, torch.zeros(2), feats, feats)
    assert "mouth_content" not in terms


def test_mouth_content_without_backbones_is_refused():
    with pytest.raises(ValueError, match="mouth_content"):
        GeneratorLoss(LossWeights(mouth_content=1.0), None)


def test_training_without_backbones_leaves_mouth_content_out_with_a_warning():
    from talkinghead.training import TrainOptions, build_loss
    with pytest.warns(UserWarning, match="mouth_content"):
        loss = build_loss(TrainOptions(content="none", loss_weights={"mouth_content": 2.0, "pixel": 3.0}), torch.device("cpu"))
    assert loss.weights.mouth_content == 0 and loss.weights.pixel == 3.0
