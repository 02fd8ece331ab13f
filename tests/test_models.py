"""The three networks: shapes, gradients, AdaIN, projection head, parameter counts."""
from __future__ import annotations

import pytest
import torch

from talkinghead.config import get_config, list_configs
from talkinghead.models import Embedder, Generator, ProjectionDiscriminator, TalkingHeadModel, create_model
from talkinghead.models.layers import AdaIN, ResBlockDown, ResBlockUp, SelfAttention

SLOW = {"paper-256"}  # cpu-256 takes ~2.5 s on one core, warp-256 ~2 s



@pytest.fixture(scope="module")
def tiny() -> TalkingHeadModel:
    torch.manual_seed(0)
    return create_model("tiny")


def test_create_model_lives_with_the_models():
    import subprocess
    import sys

    import talkinghead as th
    from talkinghead import models

    assert th.create_model is models.create_model and th.model_summary is models.model_summary
    model = create_model("tiny", num_videos=5)
    assert isinstance(model, TalkingHeadModel) and model.config == get_config("tiny", num_videos=5)
    code = "import sys, talkinghead.config; assert 'talkinghead.models' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)  # config needs nothing from models


def images(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(*shape, generator=g) * 2 - 1


def test_adain_matches_given_scale_and_bias():
    torch.manual_seed(0)
    x = torch.randn(3, 5, 16, 16) * 4 + 2
    scale = torch.rand(3, 5) * 2 + 0.5
    bias = torch.randn(3, 5)
    out = AdaIN(5)(x, scale, bias)
    assert torch.allclose(out.mean(dim=(2, 3)), bias, atol=1e-4)
    assert torch.allclose(out.std(dim=(2, 3), unbiased=False), scale, atol=1e-3)
    with pytest.raises(ValueError, match="scale and bias"):
        AdaIN(5)(x, scale[:, :4], bias)


def test_blocks_change_resolution_and_attention_starts_as_identity():
    x = torch.randn(2, 8, 16, 16)
    assert ResBlockDown(8, 12)(x).shape == (2, 12, 8, 8)
    up = ResBlockUp(8, 4, norm="adain")
    assert up(x, torch.zeros(2, up.num_adain_params)).shape == (2, 4, 32, 32)
    with pytest.raises(ValueError, match="AdaIN parameters"):
        up(x, torch.zeros(2, 3))
    attn = SelfAttention(8)
    assert torch.equal(attn(x), x)  # gamma starts at 0
    with torch.no_grad():
        attn.gamma.fill_(1.0)
    assert not torch.allclose(attn(x), x)


def _run_all(model: TalkingHeadModel, b: int, k: int):
    from talkinghead.models.families import example_inputs

    s = model.config.image_size
    x, y = images(b, k, 3, s, s, seed=1), images(b, k, 3, s, s, seed=2)
    yt = images(b, 3, s, s, seed=3)
    e, e_hat = model.embedder(x, y)
    ex = example_inputs(model.config, b, k)  # landmark points for families that warp the shots
    state = model.generator.identity_state(e_hat, x, ex["shot_points"])
    fake = model.generator.generate(yt, ex["points"], state)["fake"]
    score, feats = model.discriminator(fake, yt, video_index=torch.zeros(b, dtype=torch.long))
    return e, e_hat, fake, score, feats


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in list_configs()]
)
def test_every_config_forward_backward(name):
    torch.manual_seed(0)
    model = create_model(name)
    cfg = model.config
    b, k = (2, 3) if name == "tiny" else (1, 1)
    if cfg.generator == "warp":  # two shots, so the blend scorer is in the graph (one shot needs none)
        k = 2
    e, e_hat, fake, score, feats = _run_all(model, b, k)
    s, d = cfg.image_size, cfg.embed_dim
    assert e.shape == (b, k, d) and e_hat.shape == (b, d)
    assert fake.shape == (b, 3, s, s) and score.shape == (b,)
    assert len(feats) == len(cfg.embedder_channels) + cfg.discriminator_extra_blocks
    assert feats[0].shape[-1] == s // 2
    for t in (e, fake, score, *feats):
        assert torch.isfinite(t).all()
    assert fake.abs().max() <= 1.0
    loss = score.mean() + fake.abs().mean() + sum(f.abs().mean() for f in feats)
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    missing = [n for n, g in grads.items() if g is None and not n.startswith("discriminator.W") and "gamma" not in n]
    if cfg.generator == "warp" and cfg.warp_shots == 1:  # one nearest shot (plus region shots): nothing to score
        missing = [n for n in missing if not n.startswith("generator.scorer.")]
    # the learned mouth inside paints nothing until its own stage has trained it (tests/test_inside.py)
    missing = [n for n in missing if not n.startswith("generator.inside.")]
    # W gets gradients only for the rows used; attention gains get them only once they are non-zero
    # downstream -- everything else must have a gradient, and every gradient must be finite.
    assert not missing, missing[:5]
    assert all(torch.isfinite(g).all() for g in grads.values() if g is not None)


def test_embedder_pools_and_averages(tiny):
    x, y = images(2, 4, 3, 64, 64, seed=4), images(2, 4, 3, 64, 64, seed=5)
    tiny.embedder.eval()  # in train mode every call runs a power iteration, changing the weights a little
    e, e_hat = tiny.embedder(x, y)
    assert (e >= 0).all()  # ReLU after sum pooling
    assert torch.allclose(e_hat, e.mean(dim=1), atol=1e-6)
    e1, _ = tiny.embedder(x[:, :1], y[:, :1])
    assert torch.allclose(e1[:, 0], e[:, 0], atol=1e-4)  # frames are embedded independently
    tiny.embedder.train()


def test_generator_psi_paths(tiny):
    g = tiny.generator.eval()
    y = images(2, 3, 64, 64, seed=6)
    e_hat = torch.rand(2, g.config.embed_dim)
    psi = g.psi_from_embedding(e_hat)
    assert psi.shape == (2, g.n_psi)
    assert g.projection.weight.shape == (g.n_psi, g.config.embed_dim)
    layout = g.psi_layout()
    assert layout[-1][0] == "out_norm" and layout[-1][2] + 2 * layout[-1][1] == g.n_psi
    with torch.no_grad():
        assert torch.allclose(g(y, e_hat), g(y, psi=psi), atol=1e-6)
        # one psi shared by the batch
        assert torch.allclose(g(y, psi=psi[0])[1], g(y[1:], psi=psi[:1])[0], atol=1e-4)
        assert not torch.allclose(g(y, psi=psi), g(y, psi=psi + 0.5), atol=1e-3)
    # fine-tuning trains psi directly
    psi_t = psi.detach()[:1].clone().requires_grad_(True)
    g(y, psi=psi_t).square().mean().backward()
    assert psi_t.grad is not None and psi_t.grad.abs().sum() > 0
    g.zero_grad(set_to_none=True)
    g.train()


def test_discriminator_projection(tiny):
    d = tiny.discriminator.eval()
    x, y = images(2, 3, 64, 64, seed=7), images(2, 3, 64, 64, seed=8)
    with torch.no_grad():
        d.w0.copy_(torch.randn_like(d.w0))
        d.b.fill_(0.25)
        s0, feats = d(x, y, video_index=torch.tensor([0, 0]))
        s1, _ = d(x, y, video_index=torch.tensor([1, 1]))
        assert not torch.allclose(s0, s1)
        w = d.W.weight[1].expand(2, -1) + d.w0
        s_w, _ = d(x, y, w=w)
        assert torch.allclose(s_w, s1, atol=1e-5)
        s_w2, _ = d(x, y, w=w * 2)
        assert not torch.allclose(s_w2, s_w)
        # the score is affine in w: r(2w) - b = 2 (r(w) - b)
        assert torch.allclose(s_w2 - 0.25, 2 * (s_w - 0.25), atol=1e-4)
    d.train()


@pytest.mark.parametrize(
    "call, words",
    [
        (lambda m: m.embedder(images(2, 3, 3, 64, 64), images(2, 2, 3, 64, 64)), "differ in"),
        (lambda m: m.embedder(images(2, 3, 64, 64), images(2, 3, 64, 64)), r"\(B, K, 3, 64, 64\)"),
        (lambda m: m.generator(images(2, 3, 32, 32), torch.zeros(2, 32)), r"\(B, 3, 64, 64\)"),
        (lambda m: m.generator(images(2, 3, 64, 64)), "exactly one"),
        (lambda m: m.generator(images(2, 3, 64, 64), torch.zeros(2, 31)), r"e_hat must have shape"),
        (lambda m: m.generator(images(2, 3, 64, 64), psi=torch.zeros(3, m.generator.n_psi)), "psi"),
        (lambda m: m.discriminator(images(2, 3, 64, 64), images(2, 3, 64, 64)), "exactly one"),
        (lambda m: m.discriminator(images(2, 3, 64, 64), images(2, 3, 64, 64), torch.tensor([0, 9])), r"\[0, 4\)"),
        (lambda m: m.discriminator(images(2, 3, 64, 64), images(2, 3, 64, 64), torch.tensor([0.0, 1.0])), "integer"),
        (lambda m: m.discriminator(images(2, 3, 64, 64), images(2, 3, 64, 64), w=torch.zeros(2, 5)), r"\(2, 32\)"),
    ],
)
def test_shape_errors(tiny, call, words):
    with pytest.raises(ValueError, match=words):
        call(tiny)


def test_two_discriminator_calls_then_backward(tiny):
    """The trainer scores real and fake with separate calls in train mode: spectral norm's power
    iteration between them must not break autograd, and no buffer may change shape."""
    d = tiny.discriminator.train()
    shapes = {k: v.shape for k, v in d.state_dict().items()}
    x, y = images(2, 3, 64, 64, seed=9), images(2, 3, 64, 64, seed=10)
    idx = torch.tensor([0, 3])
    real, _ = d(x, y, video_index=idx)
    fake, _ = d(x.flip(0), y, video_index=idx)
    (torch.relu(1 - real).mean() + torch.relu(1 + fake).mean()).backward()
    assert {k: v.shape for k, v in d.state_dict().items()} == shapes
    assert all(torch.isfinite(p.grad).all() for p in d.parameters() if p.grad is not None)
    d.zero_grad(set_to_none=True)


def test_constructors_take_the_config():
    cfg = get_config("tiny")
    assert isinstance(Embedder(cfg), Embedder)
    assert Generator(cfg).n_psi > 0
    assert ProjectionDiscriminator(cfg).W.weight.shape == (cfg.num_videos, cfg.embed_dim)
    assert TalkingHeadModel("tiny").config == cfg


# ---- paper-256 parameter counts, derived from the paper's channel plan without calling the modules ----
def conv(cin, cout, k, bias=True):
    return cin * cout * k * k + (cout if bias else 0)


def down_block(cin, cout, inorm_pre=False, inorm_mid=False):
    n = conv(cin, cout, 3) + conv(cout, cout, 3) + conv(cin, cout, 1)
    return n + (2 * cin if inorm_pre else 0) + (2 * cout if inorm_mid else 0)


def up_block(cin, cout):  # AdaIN norms carry no parameters
    return conv(cin, cout, 3) + conv(cout, cout, 3) + conv(cin, cout, 1)


def res_block(c):
    return 2 * conv(c, c, 3)


def attention(c):  # query/key c -> c/8, value c -> c/2, out c/2 -> c, no biases, plus the gain
    return 2 * c * (c // 8) + 2 * c * (c // 2) + 1


def test_paper_256_parameter_counts():
    cfg = get_config("paper-256")
    D, V = 512, cfg.num_videos
    emb_plan = [64, 128, 256, 512, 512, 512]  # 256 -> 4 px; attention after the 32 px block (256 ch)
    gen_down, gen_up, n_res = [64, 128, 256, 512], [256, 128, 64, 64], 5  # bottleneck 512 ch at 16 px
    assert list(cfg.embedder_channels) == emb_plan and list(cfg.generator_down_channels) == gen_down
    assert list(cfg.generator_up_channels) == gen_up and cfg.bottleneck_blocks == n_res
    assert (cfg.attention_down, cfg.attention_up) == (32, 64)

    trunk = sum(down_block(cin, cout) for cin, cout in zip([6] + emb_plan[:-1], emb_plan)) + attention(256)
    embedder = trunk
    discriminator = trunk + res_block(512) + V * D + D + 1

    g_down = down_block(3, 64, inorm_mid=True) + sum(
        down_block(cin, cout, inorm_pre=True, inorm_mid=True) for cin, cout in zip(gen_down[:-1], gen_down[1:])
    ) + attention(256)
    g_up = sum(up_block(cin, cout) for cin, cout in zip([512] + gen_up[:-1], gen_up)) + attention(128)
    n_psi = 2 * (n_res * 2 * 512 + sum(cin + cout for cin, cout in zip([512] + gen_up[:-1], gen_up)) + 64)
    generator = g_down + n_res * res_block(512) + g_up + conv(64, 3, 3) + n_psi * D

    with torch.device("meta"):  # shapes only; nothing allocated
        from talkinghead.models.layers import without_spectral_norm

        with without_spectral_norm():
            model = TalkingHeadModel(cfg)
    counted = {n: sum(p.numel() for p in getattr(model, n).parameters()) for n in ("embedder", "generator", "discriminator")}
    assert model.generator.n_psi == n_psi
    assert counted == {"embedder": embedder, "generator": generator, "discriminator": discriminator}


def test_spectral_norm_keeps_parameter_shapes():
    """Spectral norm is a parametrization: same parameters as the plain layers, plus u/v buffers."""
    from talkinghead.models.layers import without_spectral_norm

    with without_spectral_norm():
        plain = create_model("tiny")
    sn = create_model("tiny")
    assert sum(p.numel() for p in plain.parameters()) == sum(p.numel() for p in sn.parameters())
    assert any(k.endswith("parametrizations.weight.original") for k in sn.state_dict())
