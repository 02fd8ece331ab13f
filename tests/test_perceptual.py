"""Perceptual trunks: ST-LPIPS weights load completely, VGG19/VGGFace lookup and offline errors."""
from __future__ import annotations

import pytest
import torch

from talkinghead import perceptual as P
from talkinghead.errors import WeightsError


@pytest.fixture(scope="module")
def stlpips():
    return P.stlpips_vgg16()


@pytest.fixture
def empty_hub(tmp_path, monkeypatch):
    """torch hub pointed at an empty folder, downloads blocked, no package pretrained/ folder."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr(P, "_package_pretrained_dir", lambda: tmp_path / "none")
    calls = []

    def blocked(url, *a, **k):
        calls.append(url)
        raise OSError("network blocked in tests")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", blocked)
    monkeypatch.delenv("TALKINGHEAD_OFFLINE", raising=False)
    return tmp_path / "hub" / "checkpoints", calls


def test_stlpips_file_loads_every_key_without_leftovers():
    sd = P.stlpips_state_dict_to_local(P._load_file(P.stlpips_weights_path()))
    net = P.STLPIPSVGG16()
    result = net.load_state_dict(sd, strict=False)
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert len(sd) == len(net.state_dict())


def test_stlpips_trunk_is_frozen_and_shapes(stlpips):
    assert stlpips.name == "st-lpips-vgg16"
    assert not any(p.requires_grad for p in stlpips.parameters())
    stlpips.train()
    assert not stlpips.training
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        feats = stlpips(x)
    assert [f.shape[1] for f in feats] == [64, 128, 256, 512, 512]
    assert [f.shape[-1] for f in feats] == [64, 33, 17, 9, 5]
    assert all(torch.isfinite(f).all() for f in feats)


def test_blur_filter_matches_file(stlpips):
    a = torch.tensor([1.0, 2.0, 1.0])
    expected = (a[:, None] * a[None, :]) / 16
    assert torch.allclose(stlpips.features[5].filt[0, 0], expected)


def test_default_backbones_offline_are_stlpips(empty_hub):
    bb = P.build_content_backbones("auto")
    assert bb.names == ["st-lpips-vgg16"]
    (name, net, lw), = list(bb)
    assert net.layers == P.STLPIPS_CONTENT_LAYERS and lw == (1.0,) * 5
    assert empty_hub[1] == []  # auto never downloads


@pytest.mark.parametrize("fn, filename", [(P.vgg19, P.VGG19_FILE), (P.vggface, P.VGGFACE_FILE)])
def test_missing_paper_weights_raise_with_file_and_folder(empty_hub, fn, filename):
    folder, calls = empty_hub
    with pytest.raises(WeightsError) as err:
        fn()
    assert filename in str(err.value) and str(folder) in str(err.value)
    assert len(calls) == 1  # tried the download once


@pytest.mark.parametrize("value", ["1", "on", "true", "yes", "ON"])
def test_offline_switch_skips_download(empty_hub, monkeypatch, value):
    monkeypatch.setenv("TALKINGHEAD_OFFLINE", value)
    with pytest.raises(WeightsError, match=P.VGG19_FILE):
        P.build_content_backbones("paper")
    assert empty_hub[1] == []


def test_vgg19_and_vggface_load_from_hub_folder(empty_hub):
    folder, calls = empty_hub
    folder.mkdir(parents=True)
    # torchvision key names for VGG19 up to relu2_1 (features 0, 2, 5)
    torch.save({"features.0.weight": torch.randn(64, 3, 3, 3), "features.0.bias": torch.zeros(64),
                "features.2.weight": torch.randn(64, 64, 3, 3), "features.2.bias": torch.zeros(64),
                "features.5.weight": torch.randn(128, 64, 3, 3), "features.5.bias": torch.zeros(128),
                "classifier.0.weight": torch.zeros(1)}, folder / P.VGG19_FILE)
    net = P.vgg19(layers=(1, 6))
    assert net.name == "vgg19" and net.channels == (64, 128)
    # vgg_face_dag key names
    torch.save({"conv1_1.weight": torch.randn(64, 3, 3, 3), "conv1_1.bias": torch.zeros(64),
                "fc8.weight": torch.zeros(1)}, folder / P.VGGFACE_FILE)
    face = P.vggface(layers=(1,))
    with torch.no_grad():
        assert face(torch.zeros(1, 3, 16, 16))[0].shape == (1, 64, 16, 16)
    assert calls == []
    with pytest.raises(WeightsError, match="lacks"):  # files present but lacking the deeper layers
        P.build_content_backbones("auto")


def test_truncated_vgg19_file_is_a_weights_error(empty_hub):
    folder, _ = empty_hub
    folder.mkdir(parents=True)
    torch.save({"features.0.weight": torch.randn(64, 3, 3, 3)}, folder / P.VGG19_FILE)
    with pytest.raises(WeightsError, match="lacks"):
        P.vgg19()
