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
