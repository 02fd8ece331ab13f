"""scripts/fault_table.py, the harness behind docs/faults.md: its case list and a few cheap cases."""
import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ft():
    spec = importlib.util.spec_from_file_location("fault_table", ROOT / "scripts" / "fault_table.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["fault_table"] = mod  # its dataclasses look their module up
    spec.loader.exec_module(mod)
    yield mod
    sys.modules.pop("fault_table", None)


def test_the_case_list_covers_at_least_40_kinds(ft):
    cases = ft.cases()
    assert len(cases) >= 40
    assert len({c.id for c in cases}) == len(cases)
    assert all(c.expect in ("error", "ok", "warn") for c in cases)
    assert all((c.argv is None) != (c.code is None) for c in cases)
    kinds = {c.kind for c in cases}
    assert kinds == {"CLI", "API"}
    ids = " ".join(c.id for c in cases)
    for word in ("disk-full", "read-only", "long-name", "symlink-loop", "fps-1e9", "png-named-mp4", "corrupt-middle",
                 "bit-flips", "api-load-none", "api-animate-int", "api-motion-sideways", "api-preset-fps-nan",
                 "api-landmarks-shape", "api-write-video-fps-negative", "api-write-video-mixed-sizes",
                 "api-avatar-save-onto-file", "api-max-frames-0", "photo-huge", "killed-writer", "photo-no-face",
                 "photo-two-faces", "api-write-video-over-input"):
        assert word in ids, word


def _row(ft, tmp_path, case_id):
    case = next(c for c in ft.cases() if c.id == case_id)
    assets = tmp_path / "assets"
    assets.mkdir(exist_ok=True)
    return ft.judge(ft.run_case(case, tmp_path, assets, memory_gb=2.0))


@pytest.mark.parametrize("case_id, outcome, words", [("unknown-option", "exit 2", "unrecognized arguments"),
                                                     ("verify-text", "exit 2", "notes.txt"),
                                                     ("api-load-int", None, None)])
def test_cheap_cases_run_and_are_judged(ft, tmp_path, case_id, outcome, words):
    row = _row(ft, tmp_path, case_id)
    assert row["id"] == case_id and row["traceback"] in ("yes", "no") and row["files"]
    if outcome:
        assert row["outcome"] == outcome and words in row["message"] and row["passed"], row
    else:
        assert row["outcome"] != "returned" and row["message"], row  # an exception, whatever its kind today


def test_the_verdict_catches_exit_0_tracebacks_and_lost_files(ft):
    case = ft.Case("x", "g", "t", argv=["animate"])
    run = {"rc": 0, "stdout": "wrote out.mp4", "stderr": "", "killed": None, "seconds": 1.0, "peak_gb": 0.1}
    base = {"case": case, "run": run, "rerun": None, "api": None}
    assert ft.judge({**base, "before": {}, "after": {}})["problems"] == ["exit 0"]
    lost = ft.judge({**base, "run": {**run, "rc": 2}, "before": {"clip.mp4": "a"}, "after": {"clip.mp4": "b", ".tmp1": "c"}})
    assert lost["problems"] == ["changed/lost: clip.mp4", "left: .tmp1"]
    tb = ft.judge({**base, "run": {**run, "rc": 1, "stderr": "Traceback (most recent call last):\n  File x\nOSError: boom"},
                   "before": {}, "after": {}})
    assert tb["problems"] == ["traceback"] and tb["message"] == "OSError: boom"
    ok = ft.Case("y", "g", "t", argv=["animate"], expect="warn", outputs=("out.mp4",))
    silent = ft.judge({**base, "case": ok, "before": {"out.mp4": "a"}, "after": {"out.mp4": "b"}})
    assert silent["problems"] == ["silent (no warning)"]


def test_the_table_is_markdown(ft):
    rows = [{"id": "a", "group": "g", "kind": "CLI", "title": "t | pipe", "expect": "error", "note": "", "outcome": "exit 2",
             "message": "talkinghead x: error: no", "traceback": "no", "files": "intact", "passed": True, "problems": []}]
    text = ft.markdown(rows, 1.0)
    assert "| `a` | CLI: t \\| pipe | error | exit 2 |" in text and "1 cases, 1 pass, 0 fail" in text
