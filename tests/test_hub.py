"""Weights on disk: safetensors round trip, lookup order, and refusing unsafe or broken files."""
from __future__ import annotations

import json
import pickle
import struct

import pytest
import torch

from talkinghead import hub
from talkinghead.errors import WeightsError
from talkinghead.models import TalkingHeadModel, create_model



@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    torch.manual_seed(0)
    model = create_model("tiny")
    with torch.no_grad():  # make every tensor matter for the comparison
        model.discriminator.w0.normal_()
        for m in model.modules():
            if hasattr(m, "gamma"):
                m.gamma.fill_(0.5)
    # a few train-mode calls move spectral norm's u/v away from their initial values
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    model.discriminator(x, x, video_index=torch.tensor([0, 1]))
    folder = tmp_path_factory.mktemp("w") / "tiny-test"
    model.save_pretrained(folder)
    return model.eval(), folder


def outputs(model: TalkingHeadModel):
    g = torch.Generator().manual_seed(1)
    x = torch.rand(2, 2, 3, 64, 64, generator=g) * 2 - 1
    y = torch.rand(2, 2, 3, 64, 64, generator=g) * 2 - 1
    with torch.no_grad():
        e, e_hat = model.embedder(x, y)
        fake = model.generator(y[:, 0], e_hat)
        score, feats = model.discriminator(fake, y[:, 0], video_index=torch.tensor([1, 2]))
    return [e, fake, score, *feats]


def test_round_trip_is_exact(saved):
    model, folder = saved
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]  # no temp files
    meta = json.loads((folder / "config.json").read_text())
    assert meta["format_version"] == hub.FORMAT_VERSION and meta["class_name"] == "TalkingHeadModel"
    assert meta["config"] == model.config.to_dict()
    loaded = TalkingHeadModel.from_pretrained(folder)
    assert not loaded.training and loaded.config == model.config
    for a, b in zip(outputs(model), outputs(loaded)):
        assert torch.equal(a, b)
    # a file path inside the folder works too
    assert TalkingHeadModel.from_pretrained(folder / "model.safetensors").config == model.config


def test_half_precision_storage_loads_as_float32(saved, tmp_path):
    model, _ = saved
    model.save_pretrained(tmp_path / "half", dtype=torch.float16)
    size_half = (tmp_path / "half" / "model.safetensors").stat().st_size
    model.save_pretrained(tmp_path / "full")
    assert size_half < 0.6 * (tmp_path / "full" / "model.safetensors").stat().st_size
    assert json.loads((tmp_path / "half" / "config.json").read_text())["dtype"] == "float16"
    loaded = TalkingHeadModel.from_pretrained(tmp_path / "half")
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    for a, b in zip(outputs(model), outputs(loaded)):
        assert torch.allclose(a, b, rtol=2e-2, atol=2e-2 * float(a.abs().max()))


def test_int8_discriminator_storage(saved, tmp_path):
    model, _ = saved
    model.save_pretrained(tmp_path / "q", dtype=torch.float16, int8_prefixes=("discriminator.",))
    model.save_pretrained(tmp_path / "half", dtype=torch.float16)
    size_q = (tmp_path / "q" / "model.safetensors").stat().st_size
    assert size_q < (tmp_path / "half" / "model.safetensors").stat().st_size
    assert json.loads((tmp_path / "q" / "config.json").read_text())["int8_prefixes"] == ["discriminator."]
    q = TalkingHeadModel.from_pretrained(tmp_path / "q")
    half = TalkingHeadModel.from_pretrained(tmp_path / "half")
    e_q, fake_q, score_q, *feats_q = outputs(q)
    e_h, fake_h, score_h, *_ = outputs(half)
    assert torch.equal(e_q, e_h) and torch.equal(fake_q, fake_h)  # E and G untouched by int8
    e, fake, score, *feats = outputs(model)
    # per-channel int8 keeps D's features within about 1% of their range
    for a, b in zip(feats, feats_q):
        assert float((a - b).abs().max()) <= 0.02 * float(a.abs().max()) + 1e-6


def test_lookup_order(saved, tmp_path, monkeypatch):
    _, folder = saved
    repo, home, prefix = tmp_path / "repo_pretrained", tmp_path / "home", tmp_path / "prefix"
    monkeypatch.setattr(hub, "repo_pretrained_dir", lambda: repo)
    monkeypatch.setattr("sys.prefix", str(prefix))
    monkeypatch.setenv("TALKINGHEAD_HOME", str(home))
    with pytest.raises(WeightsError) as exc:
        hub.resolve_pretrained("tiny-test")
    assert str(home / "tiny-test") in str(exc.value)  # says where to put the files
    import shutil

    shutil.copytree(folder, home / "tiny-test")
    assert hub.resolve_pretrained("tiny-test") == home / "tiny-test"
    installed = prefix / "share" / "talkinghead" / "pretrained" / "tiny-test"
    shutil.copytree(folder, installed)
    assert hub.resolve_pretrained("tiny-test") == installed  # a pip-installed copy wins over the cache
    assert "tiny-test" in hub.available_pretrained()
    shutil.copytree(folder, repo / "tiny-test")
    assert hub.resolve_pretrained("tiny-test") == repo / "tiny-test"  # the repo's pretrained/ wins
    assert hub.resolve_pretrained(folder) == folder  # an explicit path wins over everything
    monkeypatch.delenv("TALKINGHEAD_HOME")
    assert hub.cache_dir().parts[-2:] == (".cache", "talkinghead")


def test_missing_explicit_path(tmp_path):
    with pytest.raises(WeightsError, match="does not exist"):
        TalkingHeadModel.from_pretrained(tmp_path / "nothing" / "here")


@pytest.mark.parametrize("value, offline", [("1", True), ("on", True), ("true", True), ("yes", True),
                                            (" On ", True), ("", False), ("0", False), ("off", False)])
def test_is_offline_rule(monkeypatch, value, offline):
    monkeypatch.setenv("TALKINGHEAD_OFFLINE", value)
    assert hub.is_offline() is offline


def test_is_offline_unset(monkeypatch):
    monkeypatch.delenv("TALKINGHEAD_OFFLINE", raising=False)
    assert not hub.is_offline()


@pytest.mark.parametrize("value", ["1", "on", "true", "yes", "ON"])
def test_download_is_refused_offline(tmp_path, monkeypatch, value):
    monkeypatch.setattr(hub, "repo_pretrained_dir", lambda: tmp_path / "r")
    monkeypatch.setenv("TALKINGHEAD_HOME", str(tmp_path / "h"))
    monkeypatch.setenv("TALKINGHEAD_OFFLINE", value)
    monkeypatch.setitem(hub.PRETRAINED_URLS, "remote", {"model.safetensors": ("https://example.invalid/m", "")})
    with pytest.raises(WeightsError, match="TALKINGHEAD_OFFLINE"):
        hub.resolve_pretrained("remote")


class _Boom:
    """Unpickling this would create a file: proof that nothing is ever unpickled."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


@pytest.mark.parametrize("name", ["model.pt", "weights.pth", "pytorch_model.bin"])
def test_pickles_are_refused(tmp_path, name):
    sentinel = tmp_path / "unpickled"
    path = tmp_path / name
    path.write_bytes(pickle.dumps(_Boom(str(sentinel))))
    with pytest.raises(WeightsError, match="pickle") as exc:
        TalkingHeadModel.from_pretrained(path)
    assert name in str(exc.value)
    # a folder holding only a pickle is refused with the same message
    with pytest.raises(WeightsError, match="never loads"):
        TalkingHeadModel.from_pretrained(tmp_path)
    assert not sentinel.exists()


def test_pickle_disguised_as_safetensors_is_refused(saved, tmp_path):
    import shutil

    _, folder = saved
    shutil.copytree(folder, tmp_path / "m")
    sentinel = tmp_path / "unpickled"
    torch.save({"x": _Boom(str(sentinel))}, tmp_path / "m" / "model.safetensors")  # a torch zip archive
    with pytest.raises(WeightsError, match="model.safetensors is a pickle"):
        TalkingHeadModel.from_pretrained(tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").write_bytes(pickle.dumps(_Boom(str(sentinel)), protocol=4))
    with pytest.raises(WeightsError, match="model.safetensors is a pickle"):
        TalkingHeadModel.from_pretrained(tmp_path / "m")
    assert not sentinel.exists()


@pytest.mark.parametrize("keep", [0, 5, 100, -1000])
def test_truncated_safetensors(saved, tmp_path, keep):
    import shutil

    _, folder = saved
    shutil.copytree(folder, tmp_path / "m")
    w = tmp_path / "m" / "model.safetensors"
    data = w.read_bytes()
    w.write_bytes(data[:keep])
    with pytest.raises(WeightsError, match=r"model\.safetensors is truncated"):
        TalkingHeadModel.from_pretrained(tmp_path / "m")


def test_corrupt_header(saved, tmp_path):
    import shutil

    _, folder = saved
    shutil.copytree(folder, tmp_path / "m")
    w = tmp_path / "m" / "model.safetensors"
    data = bytearray(w.read_bytes())
    (n,) = struct.unpack("<Q", data[:8])
    data[8 : 8 + n] = b"[" + b" " * (n - 1)  # valid length, not a JSON object
    w.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="corrupt safetensors header"):
        TalkingHeadModel.from_pretrained(tmp_path / "m")


@pytest.mark.parametrize(
    "text, words",
    [(None, "config.json is missing"), ("{not json", "not valid JSON"), ('{"format_version": 1}', "no 'config'")],
)
def test_bad_config_json(saved, tmp_path, text, words):
    import shutil

    _, folder = saved
    shutil.copytree(folder, tmp_path / "m")
    cfg = tmp_path / "m" / "config.json"
    if text is None:
        cfg.unlink()
        with pytest.raises(WeightsError, match=words):
            hub.load_pretrained(tmp_path / "m" / "model.safetensors")
    else:
        cfg.write_text(text)
        with pytest.raises(WeightsError, match=words):
            hub.load_pretrained(tmp_path / "m")


@pytest.mark.parametrize("change, words", [
    ({"format_version": 99}, "upgrade talkinghead"),
    ({"class_name": "SomethingElse"}, "SomethingElse"),
    ({"config": {"embed_dim": 7}}, "invalid model config"),
    ({"config": {"teeth_prior": True}}, r"does not know \(teeth_prior\): upgrade talkinghead"),
    ({"training": [1, 2]}, "not an object"),
    ({"training": {"loss_weights": {"sharpness": 1}}}, "invalid loss weights"),
    ({"training": {"videos": ["only-one"]}}, "do not match"),
])
def test_config_json_that_cannot_be_used(saved, tmp_path, change, words):
    import shutil

    _, folder = saved
    shutil.copytree(folder, tmp_path / "m")
    cfg = tmp_path / "m" / "config.json"
    meta = json.loads(cfg.read_text())
    if "config" in change:
        change = {"config": {**meta["config"], **change["config"]}}
    cfg.write_text(json.dumps({**meta, **change}))
    with pytest.raises(WeightsError, match=words):
        hub.load_pretrained(tmp_path / "m")


def test_tensors_that_do_not_match_the_config(saved, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    model, folder = saved
    shutil.copytree(folder, tmp_path / "m")
    cfg = tmp_path / "m" / "config.json"
    meta = json.loads(cfg.read_text())
    meta["config"]["num_videos"] = 6
    cfg.write_text(json.dumps(meta))
    with pytest.raises(WeightsError) as exc:
        hub.load_pretrained(tmp_path / "m")
    assert "model.safetensors does not match its config.json" in str(exc.value)
    assert "discriminator.W.weight (4, 32) vs (6, 32)" in str(exc.value)

    shutil.copy(folder / "config.json", cfg)
    tensors = load_file(str(folder / "model.safetensors"))
    del tensors["discriminator.w0"]
    tensors["extra.weight"] = torch.zeros(3)
    save_file(tensors, str(tmp_path / "m" / "model.safetensors"))
    with pytest.raises(WeightsError) as exc:
        hub.load_pretrained(tmp_path / "m")
    assert "missing discriminator.w0" in str(exc.value) and "unexpected extra.weight" in str(exc.value)


def test_setup_cfg_installs_every_shipped_weight_file():
    """``pip install .`` copies pretrained/ through [options.data_files]: no file may be left out."""
    import configparser

    cfg = configparser.ConfigParser()
    cfg.read(hub.repo_pretrained_dir().parent / "setup.cfg")
    listed = {}
    for dest, files in cfg["options.data_files"].items():
        listed[dest] = sorted(f.strip() for f in files.splitlines() if f.strip())
    for folder in sorted(p for p in hub.repo_pretrained_dir().iterdir() if (p / hub.CONFIG_NAME).is_file()):
        dest = f"share/talkinghead/pretrained/{folder.name}"
        want = sorted(f"pretrained/{folder.name}/{f.name}" for f in folder.iterdir() if f.is_file())
        assert listed.get(dest) == want


def test_training_info_travels_with_the_weights(tmp_path):
    model = create_model("tiny")
    assert model.training_info == {}
    model.training_info = {"loss_weights": {"pixel": 10.0, "content_stlpips": 1.5}, "steps": 7}
    model.save_pretrained(tmp_path / "m")
    assert json.loads((tmp_path / "m" / "config.json").read_text())["training"]["steps"] == 7
    assert TalkingHeadModel.from_pretrained(tmp_path / "m").training_info == model.training_info
    # a folder written without it (older exports) loads with an empty record
    create_model("tiny").save_pretrained(tmp_path / "plain")
    assert "training" not in json.loads((tmp_path / "plain" / "config.json").read_text())
    assert TalkingHeadModel.from_pretrained(tmp_path / "plain").training_info == {}

