"""Every package the code imports installs with it, and a missing one is one line before any work."""
import ast
import configparser
import importlib.util
import re
import sys
from pathlib import Path

import pytest

from talkinghead import deps
from talkinghead.cli import COMMANDS, main
from talkinghead.errors import DependencyError

ROOT = Path(__file__).resolve().parents[1]


def _third_party_modules() -> set[str]:
    """Top-level modules imported (or looked up with find_spec) anywhere in talkinghead/."""
    found = set()
    for path in (ROOT / "talkinghead").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
            elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "find_spec"
                  and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
                found.add(node.args[0].value.split(".")[0])
    return {m for m in found if m not in sys.stdlib_module_names and m not in ("talkinghead", "__future__")}


def _install_requires() -> set[str]:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    reqs = [line.strip() for line in cfg["options"]["install_requires"].splitlines() if line.strip()]
    return {re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].lower().replace("_", "-") for r in reqs}


def test_every_import_is_a_listed_dependency():
    unlisted = _third_party_modules() - set(deps.REQUIRED) - set(deps.OPTIONAL)
    assert not unlisted, f"talkinghead/ imports {sorted(unlisted)}: add them to deps.REQUIRED and setup.cfg, or deps.OPTIONAL"


def test_every_required_package_installs_with_the_package():
    # matplotlib (eval's plots) was only in the test extras: a plain install lost a whole evaluation
    missing = {d.package for d in deps.REQUIRED.values()} - _install_requires()
    assert not missing, f"in deps.REQUIRED but not in setup.cfg install_requires: {sorted(missing)}"
    assert "matplotlib" in _install_requires()


def test_every_command_says_what_it_needs():
    assert set(deps.COMMAND_NEEDS) == set(COMMANDS)
    listed = set(deps.REQUIRED) | set(deps.OPTIONAL)
    for needs in list(deps.COMMAND_NEEDS.values()) + list(deps.COMMAND_IMPORTS.values()):
        assert {m.split(".")[0] for m in needs} <= listed


def test_this_environment_has_every_required_package():
    assert [m for m in deps.REQUIRED if not deps.is_installed(m)] == []


@pytest.fixture
def without(monkeypatch):
    """``without("matplotlib", ...)``: those packages look uninstalled (find_spec and import)."""
    def hide(*names):
        real = importlib.util.find_spec

        def find_spec(name, *a, **k):
            return None if name.split(".")[0] in names else real(name, *a, **k)
        monkeypatch.setattr(importlib.util, "find_spec", find_spec)
        for mod in list(sys.modules):
            if mod.split(".")[0] in names:
                monkeypatch.setitem(sys.modules, mod, None)  # import raises ImportError
    return hide


def _refuses_before_work(monkeypatch, capsys, argv, package, pip):
    from talkinghead.cli import build_parser

    ran = []
    real_build = build_parser

    def build():
        parser = real_build()
        for action in parser._subparsers._group_actions[0].choices.values():
            action.set_defaults(func=lambda args: ran.append(args) or 0)
        return parser
    monkeypatch.setattr(sys.modules["talkinghead.cli"], "build_parser", build)
    assert main(argv) == 2
    assert ran == []  # the command itself never started
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert package in err and pip in err
    return err


def test_eval_without_matplotlib_is_refused_before_the_work(without, monkeypatch, capsys, tmp_path):
    without("matplotlib")
    err = _refuses_before_work(monkeypatch, capsys, ["eval", "--videos", "clip.mp4", "-o", str(tmp_path / "rep")],
                               "matplotlib", "pip install matplotlib")
    assert err.startswith("talkinghead eval: error: This command needs the matplotlib package")


@pytest.mark.parametrize("argv", [
    ["landmarks", "clip.mp4", "-o", "x.npz", "--backend", "mediapipe"],
    ["animate", "--source", "a.jpg", "--motion-preset", "talk", "-o", "x.mp4", "--backend", "mediapipe"],
    ["preprocess", "videos/", "-o", "cache/", "--backend", "mediapipe"],
])
def test_an_option_needing_an_optional_package_is_refused_before_the_work(without, monkeypatch, capsys, argv):
    without("mediapipe")
    err = _refuses_before_work(monkeypatch, capsys, argv, "mediapipe", "pip install --no-deps mediapipe==0.10.21")
    assert "--backend mediapipe needs the mediapipe package" in err


def test_web_without_gradio_is_refused_before_the_work(without, monkeypatch, capsys):
    without("gradio")  # the web extra is optional: pip install 'talkinghead[web]'
    err = _refuses_before_work(monkeypatch, capsys, ["web"], "gradio", "pip install 'talkinghead[web]'")
    assert err.startswith("talkinghead web: error: This command needs the gradio package, which is not installed")


def test_a_package_that_does_not_import_is_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(DependencyError, match=r"^Plotting needs the matplotlib package, which does not import \(\w*Error"):
        deps.require("matplotlib.figure", "Plotting", import_it=True)


def test_the_api_checks_before_evaluating_and_plotting(without, tmp_path):
    from talkinghead.evaluation import evaluate
    from talkinghead.evaluation.report import plots

    without("matplotlib")
    with pytest.raises(DependencyError, match="pip install matplotlib"):
        evaluate(object(), ["clip.mp4"])  # before the model or any clip is touched
    with pytest.raises(DependencyError, match="pip install matplotlib"):
        plots({"results": []}, tmp_path)


def test_c2pa_installs_with_the_package_but_never_stops_a_command():
    # every output is signed (talkinghead.credentials), so c2pa-python is in install_requires; where it does
    # not import, outputs are still written with one warning (tests/test_credentials.py), never refused
    assert deps.REQUIRED["c2pa"].package == "c2pa-python" and "cryptography" in deps.REQUIRED
    assert all("c2pa" not in needs for needs in deps.COMMAND_NEEDS.values())
