"""The package as a user meets it: import without side effects, the public names, the command's help."""
import subprocess
import sys

import pytest

import talkinghead as th
from talkinghead.cli import COMMANDS, build_parser, main


def test_import_is_light_and_has_no_side_effects(tmp_path):
    code = ("import sys, os; import talkinghead; assert 'torch' not in sys.modules, 'torch imported'; "
            "assert os.listdir('.') == [], os.listdir('.')")
    subprocess.run([sys.executable, "-c", code], cwd=tmp_path, check=True)


@pytest.mark.parametrize("name", sorted(th._LAZY))
def test_public_names_resolve(name):
    assert getattr(th, name) is not None


def test_every_name_in_dir_resolves():
    # in a fresh interpreter, so names are resolved lazily as a user meets them, not from this session's imports
    code = ("import talkinghead as th; names = dir(th); "
            "bad = [n for n in names if getattr(th, n, KeyError) is KeyError]; "
            "assert not bad, f'dir(talkinghead) names that do not resolve: {bad}'; print(len(names))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) > len(th._LAZY)


def test_the_networks_and_submodules_are_reachable():
    from talkinghead import models

    assert th.Embedder is models.Embedder and th.ProjectionDiscriminator is models.ProjectionDiscriminator
    assert th.Generator is models.Generator and th.WarpGenerator is models.WarpGenerator
    assert th.io.to_uint8_rgb is not None and th.metrics.ssim is not None
    assert {"io", "models", "landmarks", "evaluation", "cli"} <= set(dir(th))
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        th.nonexistent  # noqa: B018


def test_every_error_class_is_exported():
    import inspect

    from talkinghead import errors

    classes = {n for n, c in inspect.getmembers(errors, inspect.isclass) if issubclass(c, th.TalkingHeadError)}
    assert classes <= set(th._LAZY), sorted(classes - set(th._LAZY))


def test_every_name_the_docs_use_exists():
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    text = "\n".join(p.read_text(encoding="utf-8") for p in [root / "README.md", *root.glob("docs/*.md")])
    used = set(re.findall(r"\bth\.([A-Za-z_]\w*)", text))
    assert used and not [n for n in sorted(used) if not hasattr(th, n)]


def test_every_subcommand_is_registered_and_has_help(capsys):
    parser = build_parser()
    registered = set(parser._subparsers._group_actions[0].choices)
    assert registered == set(COMMANDS)
    for name in COMMANDS:
        with pytest.raises(SystemExit) as exc:
            main([name, "--help"])
        assert exc.value.code == 0
        text = capsys.readouterr().out
        assert "usage: talkinghead " + name in text
        assert "default: None" not in text  # options resolved later say their real default in words


def test_version(capsys):
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"talkinghead {th.__version__}"


def test_console_script_runs():
    out = subprocess.run([sys.executable, "-m", "talkinghead", "--help"], capture_output=True, text=True, check=True)
    assert "animate" in out.stdout
