"""Model configs: registry, overrides, validation, JSON round trip, FLOP budget."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from talkinghead import config as C
from talkinghead.config import ModelConfig, get_config, list_configs, register_config
from talkinghead.models import create_model, model_summary
from talkinghead.errors import InputError


def test_named_configs_are_registered():
    assert {"paper-256", "cpu-256", "tiny"} <= set(list_configs())


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(InputError) as exc:
        get_config("paper-512")
    msg = str(exc.value)
    assert "paper-512" in msg
    for name in list_configs():
        assert name in msg


def test_overrides_and_unknown_fields():
    cfg = get_config("paper-256", num_videos=1234)
    assert cfg.num_videos == 1234 and get_config("paper-256").num_videos != 1234
    with pytest.raises(ValueError, match="num_video"):
        get_config("tiny", num_video=3)
    assert get_config(cfg) is cfg


@pytest.mark.parametrize("name", list_configs())
def test_json_round_trip(name):
    cfg = get_config(name)
    text = cfg.to_json()
    back = ModelConfig.from_json(text)
    assert back == cfg and back.to_dict() == cfg.to_dict()
    assert isinstance(back.embedder_channels, tuple)
    assert json.loads(text)["image_size"] == cfg.image_size


def test_from_dict_rejects_unknown_keys():
    d = get_config("tiny").to_dict()
    d["colour"] = "red"
    with pytest.raises(ValueError, match="colour"):
        ModelConfig.from_dict(d)


@pytest.mark.parametrize(
    "overrides, words",
    [
        (dict(embedder_channels=(16, 32, 32, 64)), "embed_dim"),
        (dict(attention_down=4), "attention_down"),
        (dict(attention_up=8), "attention_up"),
        (dict(generator_up_channels=(16, 16)), "generator_up_channels"),
        (dict(image_size=60), "divisible"),
        (dict(num_videos=0), "num_videos"),
    ],
)
def test_invalid_plans_raise(overrides, words):
    with pytest.raises(ValueError, match=words):
        get_config("tiny", **overrides)


def test_register_config_decorator_and_direct():
    try:
        @register_config("test-decorated")
        def _cfg():
            return get_config("tiny", num_videos=7)

        register_config("test-direct", get_config("tiny", num_videos=9))
        assert get_config("test-decorated").num_videos == 7
        assert get_config("test-direct").num_videos == 9
        assert create_model("test-direct").discriminator.W.num_embeddings == 9
    finally:
        C._REGISTRY.pop("test-decorated", None)
        C._REGISTRY.pop("test-direct", None)


def test_summary_rows_and_cpu_budget():
    rows = {r["network"]: r for r in model_summary("cpu-256")}
    assert set(rows) == {"embedder", "generator", "discriminator"}
    assert rows["generator"]["gflops"] <= 15.0
    paper = {r["network"]: r for r in model_summary("paper-256")}
    # cpu-256 is the cheaper config, by a wide margin where it matters (the per-frame generator)
    assert paper["generator"]["gflops"] > 3 * rows["generator"]["gflops"]
    tiny = create_model("tiny")
    assert {r["network"]: r["params"] for r in model_summary("tiny")} == {
        n: sum(p.numel() for p in getattr(tiny, n).parameters()) for n in ("embedder", "generator", "discriminator")
    }


def test_config_import_does_not_import_torch():
    code = "import sys, talkinghead.config, talkinghead.cli.models; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_cli_models_json(capsys):
    from talkinghead.cli import main

    assert main(["models", "tiny", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["network"] for r in rows] == ["embedder", "generator", "discriminator"]
    assert all(r["config"] == "tiny" and r["params"] > 0 and r["gflops"] > 0 for r in rows)
    assert main(["models", "nope"]) == 2
    assert "tiny" in capsys.readouterr().err


def test_cli_models_shows_a_pretrained_models_config(capsys):
    from talkinghead.cli import main

    assert main(["models", "default", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["config"] for r in rows] == ["default"] * 3 and rows[0]["image_size"] == 256
