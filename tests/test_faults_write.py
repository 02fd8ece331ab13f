"""Faults while writing: a full disk, a read-only folder, a killed writer, flipped bits in weights, names
too long, symbolic link loops, an output that is an input. Nothing is lost, and each is one line.

A full disk and a read-only folder are real: a small tmpfs in a private mount namespace
(``unshare -m``, or ``unshare -rm`` for a user), skipped with the reason where none can be made.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import talkinghead as th
from talkinghead import hub, io, pipeline
from talkinghead.cli import main as cli_main
from talkinghead.errors import InputError, OutputError, TalkingHeadError, WeightsError

# ---- fixtures ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def avatar(model_dir, astronaut):
    return th.load(model_dir, device="cpu").personalize([astronaut], progress=False)


@pytest.fixture()
def photo(tmp_path, astronaut):
    path = tmp_path / "photo.png"
    io.write_image(path, astronaut)
    return path


@pytest.fixture()
def clip(tmp_path, astronaut):
    path = tmp_path / "driving.mp4"
    io.write_video(path, [astronaut] * 3, 25.0)
    return path


@pytest.fixture()
def no_slow_work(monkeypatch):
    """Loading a model means a check came too late."""
    def fail(*a, **k):
        raise AssertionError("the output should have been refused before the model was loaded")
    monkeypatch.setattr(pipeline, "load", fail)


def _one_line_error(capsys, code) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


# ---- a private mount namespace with small or read-only disks ------------------------------------------
def _unshare() -> list[str]:
    return ["unshare", "-m"] if os.geteuid() == 0 else ["unshare", "-rm"]


@pytest.fixture(scope="session")
def namespaces(tmp_path_factory):
    """Skip where no mount namespace with a tmpfs can be made (no unshare, a container without CAP_SYS_ADMIN)."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is not installed, so no small disk can be mounted")
    d = tmp_path_factory.mktemp("probe")
    res = subprocess.run([*_unshare(), "sh", "-c", f"mount -t tmpfs -o size=64k tmpfs '{d}'"],
                         capture_output=True, text=True, timeout=30)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs in a private mount namespace here: {res.stderr.strip()}")


HELPERS = """
import os
from pathlib import Path
def snapshot(folder):
    # {relative path: bytes} of every file under folder but the filler
    out = {}
    for root, _, files in os.walk(folder):
        for f in files:
            rel = os.path.relpath(os.path.join(root, f), folder)
            if rel != "filler":
                out[rel] = open(os.path.join(root, f), "rb").read()
    return out
def fill(folder, leave):
    '''Fill the file system of ``folder`` up to ``leave`` free bytes.'''
    st = os.statvfs(folder)
    with open(os.path.join(folder, "filler"), "wb") as f:
        n = max(0, st.f_bavail * st.f_frsize - leave)
        while n > 0:
            k = f.write(b"\\0" * min(n, 1 << 16))
            n -= k
def temps(folder):
    return sorted(p for p in os.listdir(folder) if ".tmp" in p)
"""


def run_isolated(tmp_path: Path, mounts: dict[str, str], script: str, timeout: float = 180) -> dict:
    """Run ``script`` (Python, after :data:`HELPERS`) with a fresh tmpfs at each ``tmp_path / name`` (mount
    options as given), visible to it alone; it prints one JSON object as its last line, returned here."""
    mount = []
    for name, opts in mounts.items():
        (tmp_path / name).mkdir()
        mount.append(f"mount -t tmpfs -o {opts} tmpfs '{tmp_path / name}'")
    (tmp_path / "script.py").write_text(HELPERS + textwrap.dedent(script))
    cmd = " && ".join([*mount, f"exec '{sys.executable}' '{tmp_path / 'script.py'}'"])
    res = subprocess.run([*_unshare(), "sh", "-c", cmd], capture_output=True, text=True, timeout=timeout,
                         cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": str(tmp_path)})
    assert res.returncode == 0 and res.stdout.strip(), res.stdout + res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1])


# ---- a full disk ----------------------------------------------------------------------------------
def test_full_disk_during_a_video_keeps_the_earlier_video_and_says_so(tmp_path, namespaces):
    out = run_isolated(tmp_path, {"disk": "size=600k"}, f"""
        import json, numpy as np
        from talkinghead import io
        from talkinghead.errors import TalkingHeadError
        d = {str(tmp_path / 'disk')!r}
        out = os.path.join(d, "out.mp4")
        io.write_video(out, [np.full((64, 64, 3), 40 * i, np.uint8) for i in range(5)], 10)
        good = open(out, "rb").read()
        fill(d, 60_000)
        rng = np.random.default_rng(0)
        try:
            io.write_video(out, (rng.integers(0, 255, (256, 256, 3), dtype=np.uint8) for _ in range(30)), 10)
            error = None
        except TalkingHeadError as exc:
            error = type(exc).__name__ + ": " + str(exc)
        print(json.dumps({{"error": error, "kept": open(out, "rb").read() == good, "temps": temps(d)}}))
    """)
    assert out["error"] is not None, "a video that did not fit was reported as written"
    assert out["error"].startswith("OutputError: ") and "\n" not in out["error"]
    assert str(tmp_path / "disk" / "out.mp4") in out["error"] and "disk is full" in out["error"]
    assert out["kept"] and out["temps"] == []


def test_full_disk_during_animate_exits_non_zero_in_one_line(tmp_path, namespaces, model_dir, photo):
    out = run_isolated(tmp_path, {"disk": "size=700k"}, f"""
        import contextlib, io as _io, json, re, numpy as np
        from talkinghead import io
        from talkinghead.cli import main
        d = {str(tmp_path / 'disk')!r}
        out = os.path.join(d, "out.mp4")
        io.write_video(out, [np.zeros((64, 64, 3), np.uint8)] * 3, 25)  # the earlier result
        good = open(out, "rb").read()
        fill(d, 8_000)
        err, std = _io.StringIO(), _io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(std):
            code = main(["animate", "--source", {str(photo)!r}, "--motion-preset", "talk", "--seconds", "2",
                         "--model", {str(model_dir)!r}, "--device", "cpu", "--crop-only", "-o", out])
        lines = [l for l in re.split("[\\r\\n]", err.getvalue()) if "error" in l or "Traceback" in l]
        print(json.dumps({{"code": code, "lines": lines, "stdout": std.getvalue(),
                          "kept": open(out, "rb").read() == good, "temps": temps(d)}}))
    """)
    assert out["code"] == 2 and "wrote" not in out["stdout"], out
    assert len(out["lines"]) == 1 and "Traceback" not in out["lines"][0], out["lines"]
    assert out["lines"][0].startswith("talkinghead animate: error: Cannot write ")
    assert str(tmp_path / "disk" / "out.mp4") in out["lines"][0] and "disk is full" in out["lines"][0]
    assert out["kept"] and out["temps"] == []


def test_full_disk_keeps_avatars_models_checkpoints_images_and_caches(tmp_path, namespaces, model_dir, avatar):
    """Every other writer: one OutputError line, the earlier file or folder intact, nothing half-made."""
    saved = avatar.save(tmp_path / "avatar")
    out = run_isolated(tmp_path, {"disk": "size=6m"}, f"""
        import json, types, numpy as np, torch
        from skimage import data
        import talkinghead as th
        from talkinghead import data as cache, io
        from talkinghead.errors import TalkingHeadError
        from talkinghead.training import Trainer
        d = {str(tmp_path / 'disk')!r}
        model = th.load({str(model_dir)!r}, device="cpu")
        avatar = th.Avatar.load({str(saved)!r}, device="cpu")
        old_av = avatar.save(os.path.join(d, "old_avatar"))
        model.model.save_pretrained(os.path.join(d, "old_model"))
        io.write_image(os.path.join(d, "img.png"), data.astronaut()[:64, :64])
        crops, lms = [np.zeros((32, 32, 3), np.uint8)] * 2, np.zeros((2, 68, 2), np.float32)
        cache.write_entry(os.path.join(d, "clip.npz"), crops, lms)
        run = types.SimpleNamespace(run_dir=Path(d), dist=types.SimpleNamespace(is_main=True), step=1,
                                    state_dict=lambda: {{"w": torch.zeros(10)}})
        Trainer.save_checkpoint(run)
        before = snapshot(d)
        fill(d, 8_000)
        big = torch.randn(300_000)
        writers = {{
            "new avatar": lambda: avatar.save(os.path.join(d, "new_avatar")),
            "avatar over avatar": lambda: avatar.save(old_av),
            "model": lambda: model.model.save_pretrained(os.path.join(d, "old_model")),
            "image": lambda: io.write_image(os.path.join(d, "img.png"), np.random.default_rng(0).integers(
                0, 255, (400, 400, 3), dtype=np.uint8)),
            "cache entry": lambda: cache.write_entry(os.path.join(d, "clip.npz"),
                                                     [np.random.default_rng(1).integers(0, 255, (256, 256, 3),
                                                      dtype=np.uint8)] * 4, np.zeros((4, 68, 2), np.float32)),
            "checkpoint": lambda: Trainer.save_checkpoint(types.SimpleNamespace(
                run_dir=Path(d), dist=run.dist, step=2, state_dict=lambda: {{"w": big}})),
        }}
        results = {{}}
        for name, write in writers.items():
            try:
                write()
                results[name] = "no error"
            except TalkingHeadError as exc:
                results[name] = type(exc).__name__ + ": " + str(exc)
            except Exception as exc:
                results[name] = "raw " + type(exc).__name__ + ": " + str(exc).splitlines()[0]
        after = snapshot(d)
        loads = th.Avatar.load(old_av, device="cpu") is not None and th.load(os.path.join(d, "old_model")) is not None
        print(json.dumps({{"results": results, "same": after == before,
                          "changed": sorted(k for k in set(after) | set(before) if after.get(k) != before.get(k)),
                          "new_avatar_folder": os.path.exists(os.path.join(d, "new_avatar")), "loads": loads}}))
    """)
    for name, line in out["results"].items():
        assert line.startswith("OutputError: Cannot write ") and "disk is full" in line, (name, line)
    assert out["same"], out["changed"]
    assert not out["new_avatar_folder"], "a failed save left an empty avatar folder"
    assert out["loads"]


# ---- a read-only folder ----------------------------------------------------------------------------
READ_ONLY_COMMANDS = {
    "animate": lambda ro, photo, clip: ["animate", "--source", photo, "--driving", clip, "-o", f"{ro}/out.mp4"],
    "demo": lambda ro, photo, clip: ["demo", "-o", f"{ro}/out.mp4"],
    "finetune": lambda ro, photo, clip: ["finetune", "--photos", photo, "-o", f"{ro}/me"],
    "train": lambda ro, photo, clip: ["train", "--data", clip, "-o", f"{ro}/run"],
    "eval": lambda ro, photo, clip: ["eval", "--videos", clip, "--shots", "1", "-o", f"{ro}/report"],
    "landmarks": lambda ro, photo, clip: ["landmarks", clip, "-o", f"{ro}/lm.npz"],
    "preprocess": lambda ro, photo, clip: ["preprocess", clip, "-o", f"{ro}/cache"],
}


def test_read_only_folder_is_one_line_naming_the_users_path_before_any_work(tmp_path, namespaces, photo, clip):
    """Every writing subcommand refuses a read-only -o before the model loads, and the API names the
    user's path, not its hidden temporary file (a real read-only mount: as root, chmod does not stop writes)."""
    out = run_isolated(tmp_path, {"ro": "ro,size=64k"}, f"""
        import contextlib, io as _io, json, numpy as np
        from talkinghead import data, io, landmarks, pipeline, training
        from talkinghead.atomic import atomic_write_text
        from talkinghead.cli import main
        from talkinghead.errors import TalkingHeadError
        def too_late(*a, **k):
            raise AssertionError("too late: slow work started")
        pipeline.load = too_late
        landmarks.get_detector = too_late
        training.train = too_late
        data.expand_videos = too_late
        cli = {{}}
        for name, argv in {json.dumps({k: f(str(tmp_path / 'ro'), str(photo), str(clip))
                                       for k, f in READ_ONLY_COMMANDS.items()})}.items():
            err = _io.StringIO()
            with contextlib.redirect_stderr(err):
                try:
                    code = main(argv)
                except AssertionError as exc:
                    code = str(exc)
            cli[name] = [code, err.getvalue().strip().splitlines()]
        ro, api = {str(tmp_path / 'ro')!r}, {{}}
        for name, write in {{"text": lambda: atomic_write_text(ro + "/a.txt", "x"),
                             "video": lambda: io.write_video(ro + "/a.mp4", [np.zeros((8, 8, 3), np.uint8)], 5),
                             "image": lambda: io.write_image(ro + "/a.png", np.zeros((8, 8, 3), np.uint8))}}.items():
            try:
                write()
                api[name] = "no error"
            except TalkingHeadError as exc:
                api[name] = str(exc)
            except Exception as exc:
                api[name] = "raw " + type(exc).__name__ + ": " + str(exc)
        print(json.dumps({{"cli": cli, "api": api}}))
    """)
    for name, (code, lines) in out["cli"].items():
        assert code == 2 and len(lines) == 1, (name, code, lines)
        assert str(tmp_path / "ro") in lines[0] and "read-only" in lines[0] and ".tmp" not in lines[0], (name, lines)
    for name, line in out["api"].items():
        assert str(tmp_path / "ro" / "a") in line and "read-only" in line and ".tmp" not in line, (name, line)


# ---- a killed writer ---------------------------------------------------------------------------------
def _wait_still(paths_of, seconds: float = 0.5, limit: float = 20.0) -> None:
    """Wait until the files ``paths_of()`` lists stop changing (an orphaned ffmpeg finishing)."""
    deadline, last = time.time() + limit, None
    while time.time() < deadline:
        now = [(p.name, p.stat().st_size) for p in paths_of() if p.exists()]
        if now == last:
            return
        last = now
        time.sleep(seconds)


def test_killed_video_writer_keeps_the_earlier_video_and_the_next_run_leaves_no_temp(tmp_path):
    out = tmp_path / "out.mp4"
    io.write_video(out, [np.full((64, 64, 3), 40 * i, np.uint8) for i in range(5)], 10)
    good = out.read_bytes()
    script = f"""
import time, numpy as np
from talkinghead import io
def slow():
    for i in range(100000):
        time.sleep(0.02)
        yield np.full((64, 64, 3), i % 255, np.uint8)
io.write_video({str(out)!r}, slow(), 25)
"""
    proc = subprocess.Popen([sys.executable, "-c", script], env={**os.environ, "OMP_NUM_THREADS": "1"})
    temps = lambda: sorted(p for p in tmp_path.iterdir() if p.name != "out.mp4")  # noqa: E731
    deadline = time.time() + 60
    while time.time() < deadline and not temps():
        time.sleep(0.1)
    assert temps(), "the writer never opened its temporary file"
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    _wait_still(temps)
    assert out.read_bytes() == good, "a killed writer replaced the earlier video"
    io.write_video(out, [np.zeros((64, 64, 3), np.uint8)] * 3, 10)  # the next run cleans up after the dead one
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]
    assert io.VideoReader(out).read_all().shape[0] == 3


def test_stale_temps_of_live_writers_are_left_alone(tmp_path):
    from talkinghead.atomic import atomic_path, atomic_write_text, remove_stale_temps

    target = tmp_path / "a.json"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".a.json.tmp-{int(dead.stdout)}-0000beef.json"
    stale.write_text("half")
    live = tmp_path / f".a.json.tmp-{os.getppid()}-0000cafe.json"  # the test runner's parent: alive
    live.write_text("being written")
    other = tmp_path / f".ab.json.tmp-{int(dead.stdout)}-00000000.json"  # another file's temp
    other.write_text("not ours")
    with atomic_path(target) as tmp:
        assert tmp.name.startswith(".a.json.tmp-") and tmp.suffix == ".json"
        tmp.write_text("{}")
    assert not stale.exists() and live.exists() and other.exists() and target.read_text() == "{}"
    assert remove_stale_temps(tmp_path / "ab.json") == [other]
    atomic_write_text(target, "x")
    assert live.exists()


# ---- a writer that fails without saying so -------------------------------------------------------------
def test_a_video_missing_frames_is_not_renamed_into_place(tmp_path, monkeypatch):
    out = tmp_path / "out.mp4"
    io.write_video(out, [np.zeros((32, 32, 3), np.uint8)] * 2, 10)
    good = out.read_bytes()
    monkeypatch.setattr(io, "_count_frames", lambda path, backend: 1)  # as a truncated file would decode
    with pytest.raises(OutputError, match="holds 1 of its 4 frames") as info:
        io.write_video(out, [np.ones((32, 32, 3), np.uint8)] * 4, 10)
    assert str(out) in str(info.value) and "the earlier out.mp4 is kept" in str(info.value)
    assert out.read_bytes() == good and sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]


@pytest.mark.parametrize("says, words", [("Error opening output file: Invalid argument",
                                          "ffmpeg stopped with status 1 (Error opening output file"),
                                         ("Error writing trailer: No space left on device", "the disk is full")])
def test_ffmpeg_failing_is_one_line_from_its_log(says, words, tmp_path, monkeypatch):
    """ffmpeg's exit status and log are read: a failure is an OutputError with its reason, not a file."""
    import imageio_ffmpeg

    fake = tmp_path / "bin" / "ffmpeg"
    fake.parent.mkdir()
    fake.write_text(f"#!/bin/sh\necho '{says}' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setattr(imageio_ffmpeg, "get_ffmpeg_exe", lambda: str(fake))
    out = tmp_path / "out.mp4"
    with pytest.raises(OutputError) as info:
        io.write_video(out, [np.zeros((32, 32, 3), np.uint8)] * 2, 10)
    assert str(info.value).startswith(f"Cannot write {out}: ") and words in str(info.value)
    assert "\n" not in str(info.value) and sorted(p.name for p in tmp_path.iterdir()) == ["bin"]


# ---- flipped bits in weights -----------------------------------------------------------------------------
def _flip_inside_a_tensor(path: Path, prefix: str, n: int = 4096) -> str:
    """Invert ``n`` bytes in the middle of the largest tensor whose name starts with ``prefix``."""
    data = bytearray(path.read_bytes())
    (size,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + size])
    name, info = max(((k, v) for k, v in header.items() if k.startswith(prefix)),
                     key=lambda kv: kv[1]["data_offsets"][1] - kv[1]["data_offsets"][0])
    start, end = (8 + size + o for o in info["data_offsets"])
    n = min(n, end - start)
    mid = start + (end - start - n) // 2
    data[mid:mid + n] = bytes(b ^ 0xFF for b in data[mid:mid + n])
    path.write_bytes(bytes(data))
    return name


def test_flipped_bytes_in_the_shipped_model_are_refused_in_one_line(tmp_path):
    folder = hub.repo_pretrained_dir() / "default"
    meta = json.loads((folder / hub.CONFIG_NAME).read_text())
    assert meta["sha256"][hub.WEIGHTS_NAME] == hub.sha256_file(folder / hub.WEIGHTS_NAME)  # the shipped one loads
    t = time.perf_counter()
    hub.check_sha256(folder / hub.WEIGHTS_NAME, meta["sha256"][hub.WEIGHTS_NAME])
    assert time.perf_counter() - t < 1.0
    copy = tmp_path / "default"
    shutil.copytree(folder, copy)
    _flip_inside_a_tensor(copy / hub.WEIGHTS_NAME, "generator.", 4096)
    with pytest.raises(WeightsError) as info:
        th.load(copy, device="cpu")
    assert str(info.value) == (f"{copy / hub.WEIGHTS_NAME} is corrupt or modified (sha256 mismatch): "
                               "re-download or re-save it.")


def test_flipped_bytes_in_a_saved_model_and_avatar_are_refused(tmp_path, model_dir, avatar):
    copy = tmp_path / "m"
    shutil.copytree(model_dir, copy)
    _flip_inside_a_tensor(copy / hub.WEIGHTS_NAME, "generator.")
    with pytest.raises(WeightsError, match=r"model\.safetensors is corrupt or modified \(sha256 mismatch\)"):
        th.load(copy, device="cpu")
    d = avatar.save(tmp_path / "av")
    _flip_inside_a_tensor(d / pipeline.AVATAR_WEIGHTS, "generator.")
    with pytest.raises(WeightsError) as info:
        th.Avatar.load(d, device="cpu")
    assert str(info.value) == (f"{d / pipeline.AVATAR_WEIGHTS} is corrupt or modified (sha256 mismatch): "
                               "re-download or re-save it.")


def test_weights_saved_before_hashes_still_load(tmp_path, model_dir, avatar):
    copy = tmp_path / "m"
    shutil.copytree(model_dir, copy)
    meta = json.loads((copy / hub.CONFIG_NAME).read_text())
    assert set(meta.pop("sha256")) == {hub.WEIGHTS_NAME}
    (copy / hub.CONFIG_NAME).write_text(json.dumps(meta))
    th.load(copy, device="cpu")
    d = avatar.save(tmp_path / "av")
    meta = json.loads((d / pipeline.AVATAR_CONFIG).read_text())
    assert set(meta.pop("sha256")) == {pipeline.AVATAR_WEIGHTS}
    (d / pipeline.AVATAR_CONFIG).write_text(json.dumps(meta))
    th.Avatar.load(d, device="cpu")
    meta["sha256"] = {pipeline.AVATAR_WEIGHTS: "not a hash"}
    (d / pipeline.AVATAR_CONFIG).write_text(json.dumps(meta))
    with pytest.raises(WeightsError, match="invalid sha256 entry"):
        th.Avatar.load(d, device="cpu")


# ---- names too long, symbolic link loops ---------------------------------------------------------------
def test_a_name_over_255_bytes_is_one_line_before_any_work(photo, tmp_path, capsys, no_slow_work):
    long = tmp_path / ("é" * 130 + ".mp4")  # 264 bytes in UTF-8
    code = cli_main(["animate", "--source", str(photo), "--motion-preset", "talk", "-o", str(long)])
    line = _one_line_error(capsys, code)
    assert "264 bytes" in line and "255" in line
    code = cli_main(["finetune", "--photos", str(photo), "-o", str(tmp_path / ("d" * 300) / "me")])
    assert "300 bytes" in _one_line_error(capsys, code)


def test_a_long_name_that_fits_is_written(tmp_path, astronaut):
    """The temporary name is longer than the target's; it is cut to fit, so a 250-byte name still works."""
    path = tmp_path / ("n" * 246 + ".png")
    io.write_image(path, astronaut[:16, :16])
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]
    with pytest.raises(InputError, match="300 bytes long"):
        io.write_image(tmp_path / ("n" * 296 + ".png"), astronaut[:16, :16])


def test_symbolic_link_loops_are_one_line(photo, tmp_path, capsys, no_slow_work):
    loop = tmp_path / "loop.jpg"
    loop.symlink_to(loop.name)
    code = cli_main(["animate", "--source", str(loop), "--motion-preset", "talk", "-o", str(tmp_path / "o.mp4")])
    line = _one_line_error(capsys, code)
    assert str(loop) in line and "symbolic link loop" in line
    out = tmp_path / "out.mp4"
    out.symlink_to(out.name)
    code = cli_main(["animate", "--source", str(photo), "--motion-preset", "talk", "-o", str(out)])
    line = _one_line_error(capsys, code)
    assert str(out) in line and "symbolic link loop" in line
    folder = tmp_path / "dir"
    folder.symlink_to(folder.name)
    for argv in (["animate", "--source", str(photo), "--motion-preset", "talk", "-o", str(folder / "o.mp4")],
                 ["finetune", "--photos", str(photo), "-o", str(folder / "me")]):
        line = _one_line_error(capsys, cli_main(argv))
        assert str(folder) in line and "symbolic link loop" in line


# ---- the API overwriting its own input; saving onto a file -----------------------------------------------------
def test_the_api_refuses_to_write_over_the_driving_clip(avatar, clip, tmp_path):
    before = clip.read_bytes()
    with pytest.raises(TalkingHeadError, match="is one of the inputs"):
        th.write_video(clip, avatar.animate(clip, max_frames=2, progress=False))
    assert clip.read_bytes() == before
    with pytest.raises(TalkingHeadError, match="is one of the inputs"):  # the low-level writer: its audio source
        io.write_video(clip, [np.zeros((8, 8, 3), np.uint8)], 5, audio_from=clip)
    assert clip.read_bytes() == before


def test_an_animation_knows_its_inputs(avatar, photo, clip):
    import copy

    assert avatar.animate(clip, max_frames=1, progress=False).inputs == [str(clip)]  # photo 0: an array
    av = copy.copy(avatar)
    av.info = {**avatar.info, "photos": [str(photo)]}  # as personalize records photos given as paths
    assert av.animate_preset("talk", seconds=0.2, progress=False).inputs == [str(photo)]


def test_avatar_save_onto_a_file_is_a_plain_error(avatar, tmp_path):
    f = tmp_path / "me"
    f.write_text("my notes")
    with pytest.raises(InputError, match="is a file, not a folder") as info:
        avatar.save(f)
    assert "\n" not in str(info.value) and f.read_text() == "my notes"
    with pytest.raises(InputError, match="is a file, not a folder"):
        avatar.save(f / "inside")
