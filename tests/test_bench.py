"""``talkinghead bench``: the script is found, the reference FLOP/s are sane, --quick writes valid JSON."""
from __future__ import annotations

import json

import pytest

from talkinghead.cli import main as cli_main
from talkinghead.errors import InputError


def test_bench_script_is_found_and_reference_flops_are_positive():
    import importlib.util

    import torch

    from talkinghead.cli.bench import bench_script

    spec = importlib.util.spec_from_file_location("_bench_run_test", bench_script())
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    ref = mod.reference_flops(torch.device("cpu"), quick=True)
    assert set(ref) == {"matmul", "conv3x3"} and all(r["gflop_per_s"] > 0 for r in ref.values())


def test_best_seconds_runs_every_repeat_and_keeps_the_fastest(monkeypatch):
    import importlib.util
    import types

    from talkinghead.cli.bench import bench_script

    spec = importlib.util.spec_from_file_location("_bench_run_best", bench_script())
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    clock = iter([0.0, 3.0, 10.0, 11.5, 20.0, 22.0])  # calls of 3, 1.5 and 2 s on a fake clock
    monkeypatch.setattr(mod, "time", types.SimpleNamespace(perf_counter=lambda: next(clock)))
    calls = []
    assert mod.best_seconds(lambda: calls.append(1), 3) == 1.5 and len(calls) == 3


@pytest.mark.slow
def test_bench_quick_writes_valid_json(tmp_path):
    assert cli_main(["bench", "--quick", "-o", str(tmp_path)]) == 0
    path = tmp_path / "bench-cpu.json"
    if not path.exists():  # a GPU machine names the file after CUDA
        path = tmp_path / "bench-cuda.json"
    data = json.loads(path.read_text())
    assert data["quick"] is True and data["image_size"] == 64 and "random" in data["model"]
    cpu = data["devices"]["cpu"]
    for key in ("crop_only", "paste_512", "paste_1080p"):
        assert cpu["animation"][key]["fps"] > 0
    ft = cpu["finetune"]
    assert [r["photos"] for r in ft["results"]] == [1, 8, 32] and "extrapolated" in ft["note"]
    assert all(r["extrapolated_seconds"] >= r["seconds_per_step"] > 0 for r in ft["results"])
    assert cpu["training"].get("steps_per_s", 0) > 0, cpu["training"]
    fl = cpu["flops"]
    assert fl["generator_gflop_per_frame"] > 0 and 0 < fl["share_of_conv3x3"] and 0 < fl["share_of_matmul"]
    assert cpu["memory"]["peak_rss_mib"] > 0 and data["peak_rss_mib"] >= cpu["memory"]["peak_rss_mib"]
    assert "results" in data["landmarks"] or "error" in data["landmarks"]


def _run_module():
    import importlib.util

    from talkinghead.cli.bench import bench_script

    spec = importlib.util.spec_from_file_location("_bench_run_test2", bench_script())
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_quick_results_do_not_go_to_the_committed_folder_by_default():
    mod = _run_module()
    assert mod.default_out_dir(quick=False) == mod.HERE / "results"
    quick = mod.default_out_dir(quick=True)
    assert mod.REPO not in quick.resolve().parents


def test_bench_refuses_a_file_as_output_before_benchmarking(tmp_path, capsys, monkeypatch):
    afile = tmp_path / "afile"
    afile.write_bytes(b"x")
    mod = _run_module()
    monkeypatch.setattr(mod, "bench_device", lambda *a, **k: pytest.fail("benchmarked first"))
    for out in (afile, afile / "sub"):
        with pytest.raises(InputError, match="afile"):
            mod.run_benchmarks(out, quick=True)
        assert cli_main(["bench", "--quick", "-o", str(out)]) == 2  # before any work: returns at once
        err = capsys.readouterr().err.strip()
        assert err.startswith("talkinghead bench: error:") and len(err.splitlines()) == 1 and "afile" in err


def test_bench_does_not_print_the_temporary_landmarks_file(capsys, monkeypatch):
    import types
    from pathlib import Path

    def fake_main(argv):
        out = Path(argv[argv.index("-o") + 1])
        out.write_text('{"results": []}')
        print("backend  frames")
        print(f"wrote {out}")

    mod = _run_module()
    monkeypatch.setattr(mod, "_script", lambda name: types.SimpleNamespace(main=fake_main))
    assert mod.bench_landmarks(1) == {"results": []}
    out = capsys.readouterr().out
    assert "backend  frames" in out and "wrote" not in out


def _memory_module():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "memory.py"
    spec = importlib.util.spec_from_file_location("_bench_memory_test", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.skipif(not __import__("os").path.isdir("/proc/self"), reason="the memory benchmark reads /proc")
def test_memory_benchmark_counts_the_children_and_measures_growth_within_a_phase():
    import os
    import subprocess
    import sys
    import time

    mem = _memory_module()
    child = subprocess.Popen([sys.executable, "-c", "b = bytearray(200 * 2**20); import time; time.sleep(30)"])
    try:
        for _ in range(100):  # until the child holds its 200 MB
            own, total = mem.tree_rss_mb(os.getpid())
            if total - own > 150:
                break
            time.sleep(0.1)
        assert own > 10 and total - own > 150, (own, total)
    finally:
        child.kill()
        child.wait()
    flat = [{"t": i, "phase": "animate", "rss_mb": 500.0 + (i % 3), "tree_rss_mb": 600.0} for i in range(100)]
    leak = [{"t": i, "phase": "animate", "rss_mb": 500.0 + 2 * i, "tree_rss_mb": 600.0} for i in range(100)]
    assert abs(mem.growth(flat, "animate", "rss_mb")["growth_mb"]) <= 2
    assert mem.growth(leak, "animate", "rss_mb")["growth_mb"] > 100
    assert mem.growth(flat[:5], "animate", "rss_mb") is None  # too few samples to say
