"""Evaluation: frame split, baselines (nearest frame, piecewise affine warp), motion-following metrics,
the report's shape on the tiny config, and the eval CLI's exit status on a bad video."""
from __future__ import annotations

import json

import numpy as np
import pytest

from talkinghead import metrics as M
from talkinghead.cli import main as cli_main
from talkinghead.errors import InputError
from talkinghead.pipeline import FINE_TUNE_LR
from talkinghead.evaluation import (EvalOptions, edge_points, evaluate, nearest_shot, piecewise_affine_warp,
                                    split_frames, write_report)


def _face_points(seed: int = 0, size: int = 64) -> np.ndarray:
    """68 distinct points inside a ``size`` crop (not a face, but enough for geometry tests)."""
    rng = np.random.default_rng(seed)
    return rng.uniform(0.25 * size, 0.75 * size, (68, 2))


# ------------------------------------------------------------------------------------------- split
@pytest.mark.parametrize("n, shots, num_test", [(78, (1, 8, 32), 5), (40, (1, 2), 100), (10, (4,), 1)])
def test_split_never_tests_on_few_shot_frames(n, shots, num_test):
    s = split_frames(n, shots, num_test)
    assert set(s.shots) == set(shots) and all(s.shots[t] == list(range(t)) for t in shots)
    every_shot = set().union(*map(set, s.shots.values()))
    assert not every_shot & set(s.test)
    assert min(s.test) >= max(shots) and max(s.test) < n
    assert len(s.test) == min(num_test, n - max(shots)) and s.test == sorted(set(s.test))
    if num_test > 1 and len(s.test) == num_test:  # evenly spaced, from the first free frame to the last
        assert s.test[0] == max(shots) and s.test[-1] == n - 1
        assert np.ptp(np.diff(s.test)) <= 1


def test_test_from_moves_the_test_frames_and_keeps_them_apart_from_the_shots():
    # an FT run at 8 shots with test_from=32 scores the frames a 1/8/32 run scores
    assert split_frames(78, (8,), 8, test_from=32).test == split_frames(78, (1, 8, 32), 8).test
    assert split_frames(78, (8,), 8).test[0] == 8
    with pytest.raises(InputError, match="--test-from"):
        EvalOptions(shots=(1, 8, 32), test_from=8)
    with pytest.raises(InputError, match="short.mp4 has 20 frames"):
        split_frames(20, (1,), 4, "short.mp4", test_from=32)


def test_split_of_a_too_short_clip_names_it():
    with pytest.raises(InputError, match="short.mp4 has 8 frames"):
        split_frames(8, (1, 8), 4, "short.mp4")


# --------------------------------------------------------------------------------------- baselines
def test_nearest_shot_ignores_position_and_size():
    a, b = _face_points(0), _face_points(1)
    target = b * 1.7 + np.array([13.0, -5.0])  # b, moved and scaled
    assert nearest_shot(np.stack([a, b]), target) == 1
    assert nearest_shot(np.stack([a, b]), a + 3.0) == 0


def _coordinate_image(size: int = 64) -> np.ndarray:
    """R = 4 x, G = 4 y: a pixel's value says where it was taken from."""
    ys, xs = np.mgrid[0:size, 0:size]
    return np.stack([4 * xs, 4 * ys, np.full_like(xs, 128)], -1).astype(np.uint8)


def test_warp_moves_source_landmarks_onto_target_landmarks():
    img = _coordinate_image()
    rng = np.random.default_rng(3)
    # distinct integer target positions (sampled exactly there), two pixels apart at least
    cells = rng.choice(16 * 16, 68, replace=False)
    dst = np.stack([16 + 2 * (cells % 16), 16 + 2 * (cells // 16)], 1).astype(np.float64)
    src = dst + rng.uniform(-0.9, 0.9, dst.shape)  # small motion: no folded triangles
    out = piecewise_affine_warp(img, src, dst)
    assert out.shape == img.shape and out.dtype == np.uint8
    xy = dst.astype(int)
    got = out[xy[:, 1], xy[:, 0], :2].astype(np.float64) / 4  # where each target pixel was sampled
    np.testing.assert_allclose(got, src, atol=0.3)
    # the crop's border points stay put, and no motion is no change
    for x, y in edge_points(64).astype(int):
        assert np.array_equal(out[y, x], img[y, x])
    assert np.array_equal(piecewise_affine_warp(img, dst, dst), img)


def test_warp_checks_shapes():
    with pytest.raises(ValueError, match="68, 2"):
        piecewise_affine_warp(_coordinate_image(), np.zeros((5, 2)), np.zeros((5, 2)))


# ------------------------------------------------------------------------- motion-following metrics
def test_motion_following_is_perfect_for_the_same_motion_on_another_face():
    from talkinghead.motion import preset_motion

    rng = np.random.default_rng(0)
    base = _face_points(4, 200)
    driver = preset_motion(base, "talk", seconds=2.0, fps=25, seed=1)
    output = driver * 0.5 + np.array([40.0, 7.0])  # same motion, another place and size
    assert M.relative_motion_distance(output, driver).value < 1e-5
    assert M.opening_correlation(output, driver, "mouth").value == pytest.approx(1.0, abs=1e-6)
    # a still output does not follow the driver's mouth
    still = np.repeat(output[:1], len(output), 0)
    assert np.isnan(M.opening_correlation(still, driver, "mouth").value)
    assert M.relative_motion_distance(still, driver).value > 0.01
    noisy = output + rng.normal(0, 3, output.shape)
    assert M.relative_motion_distance(noisy, driver).value > M.relative_motion_distance(output, driver).value


# ---------------------------------------------------------------------------------- whole protocol
@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    import torch

    import talkinghead as th
    from talkinghead.config import get_config
    from talkinghead.models import TalkingHeadModel

    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("model") / "tiny-eval"
    TalkingHeadModel(get_config("tiny", num_videos=3)).save_pretrained(d)
    return th.load(d)


@pytest.fixture(scope="module")
def short_clip(tmp_path_factory, astronaut):
    """A 6-frame 256 px clip of the astronaut moving a little (H.264)."""
    import cv2

    from talkinghead.io import write_video

    img = cv2.resize(astronaut, (256, 256), interpolation=cv2.INTER_AREA)
    frames = []
    for i in range(6):
        m = cv2.getRotationMatrix2D((128.0, 100.0), 2.0 * (i - 3), 1.0 + 0.01 * i)
        frames.append(cv2.warpAffine(img, m, (256, 256), borderMode=cv2.BORDER_REFLECT101))
    return write_video(tmp_path_factory.mktemp("clip") / "astronaut.mp4", frames, fps=25)


@pytest.fixture(scope="module")
def closed_mouth_clip(tmp_path_factory, grace_hopper):
    """A 4-frame 256 px clip of Grace Hopper, whose lips stay closed (H.264)."""
    import cv2

    from talkinghead.io import write_video

    img = cv2.resize(grace_hopper[:512], (256, 256), interpolation=cv2.INTER_AREA)
    frames = [cv2.warpAffine(img, cv2.getRotationMatrix2D((128.0, 110.0), 1.5 * i, 1.0), (256, 256),
                             borderMode=cv2.BORDER_REFLECT101) for i in range(4)]
    return write_video(tmp_path_factory.mktemp("clip") / "grace.mp4", frames, fps=25)


def test_mouth_columns_for_every_method_and_none_for_a_clip_without_an_open_mouth(
        tiny_model, short_clip, closed_mouth_clip):
    """The astronaut smiles with her teeth shown; Grace Hopper's lips are closed: her
    clip's mouth values are None, and the pooled means are the astronaut's."""
    from talkinghead.evaluation import markdown

    opts = EvalOptions(shots=(1,), modes=("ff",), frames=1, backend="dlib", samples=1)
    report = evaluate(tiny_model, [short_clip, closed_mouth_clip], opts, log=None).report
    assert report["mouth_region"]["threshold"] == M.MOUTH_OPEN_THRESHOLD
    assert report["mouth_region"]["lpips_backbone"] == report["backbones"]["lpips"]
    assert {r["method"] for r in report["results"]} == {"ff", "nearest-frame", "warp"}
    for r in report["results"]:
        astro, grace = r["per_clip"]
        assert astro["mouth_open_frames"] == 1 and grace["mouth_open_frames"] == 0
        assert astro["mouth_lpips"] >= 0 and -1 <= astro["mouth_ssim"] <= 1
        assert grace["mouth_lpips"] is None and grace["mouth_ssim"] is None
        assert grace["lpips"] is not None  # the whole frame is scored as before
        assert r["mouth_open_frames"] == 1 and r["test_frames"] == grace["frames"] + astro["frames"] == 2
        assert r["mouth_lpips"] == pytest.approx(astro["mouth_lpips"])
        assert r["mouth_ssim"] == pytest.approx(astro["mouth_ssim"])
    # a real few-shot frame of the same smiling face: its mouth is the nearest to the truth
    near = next(r for r in report["results"] if r["method"] == "nearest-frame")
    ff = next(r for r in report["results"] if r["method"] == "ff")
    assert near["mouth_lpips"] < ff["mouth_lpips"] and near["mouth_ssim"] > ff["mouth_ssim"]
    md = markdown(report)
    header = next(line for line in md.splitlines() if line.startswith("| method |"))
    assert header.endswith("| mouth LPIPS ↓ | mouth SSIM ↑ | mouth-open frames |")
    rows = [line for line in md.splitlines() if line.startswith(("| ours", "| nearest", "| piecewise"))]
    assert len(rows) == 3 and all(line.endswith(" | 1 |") for line in rows)
    assert all(line.count("|") == header.count("|") for line in rows)
    clip_header = next(line for line in md.splitlines() if line.startswith("| clip |"))
    per_clip = [line for line in md.splitlines() if line.startswith("| grace.mp4 |")]
    assert len(per_clip) == 3 and all(line.endswith("| n/a | n/a | 0 |") for line in per_clip)
    assert all(line.count("|") == clip_header.count("|") for line in per_clip)
    assert "mouth is open" in md


@pytest.mark.slow
def test_report_shape_on_the_tiny_config(tiny_model, short_clip, grace_hopper_path, tmp_path):
    opts = EvalOptions(shots=(1, 2), modes=("ff", "ft"), frames=2, ft_steps=1, content="none", backend="dlib")
    result = evaluate(tiny_model, [short_clip], opts, sources=[grace_hopper_path], log=None)
    report = write_report(result, tmp_path)
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["protocol"] == "self-reenactment"
    assert {"protocol_text", "model", "options", "backbones", "clips", "results", "cross_identity", "files"} <= set(data)
    assert set(data["backbones"]) == {"ssim", "lpips", "csim", "akd", "fid"}
    assert data["backbones"]["akd"] == "dlib"
    clip = data["clips"][0]
    assert clip["test_frames"] == [2, 5] and clip["shot_frames"] == {"1": [0], "2": [0, 1]}
    rows = {(r["method"], r["shots"]) for r in data["results"]}
    assert rows == {(m, t) for m in ("ff", "ft", "nearest-frame", "warp") for t in (1, 2)}
    for r in data["results"]:
        assert r["test_frames"] == 2 and len(r["per_clip"]) == 1
        assert r["ssim"] is not None and -1 <= r["ssim"] <= 1 and r["lpips"] >= 0
        assert 0 <= r["akd_no_face_share"] <= 1
        assert {"mouth_lpips", "mouth_ssim", "mouth_open_frames"} <= set(r) & set(r["per_clip"][0])
        assert r["mouth_open_frames"] == 2 and r["mouth_lpips"] >= 0  # the astronaut smiles: teeth shown
    # the baselines are real face crops: faces are found and they resemble the test frames
    near = next(r for r in data["results"] if r["method"] == "nearest-frame" and r["shots"] == 2)
    assert near["akd_no_face_share"] == 0 and near["ssim"] > 0.5 and near["csim"] > 0.8
    assert len(data["cross_identity"]["rows"]) == 2  # one source x one clip x two modes
    md = (tmp_path / "report.md").read_text()
    assert "self-reenactment" in md and "| method | shots | SSIM ↑ | LPIPS ↓ | CSIM ↑ | AKD ↓ | FID ↓" in md
    assert f"FT: 1 steps on the shots, all run (no early stop), lr {FINE_TUNE_LR:g}" in md
    table = [line for line in md.splitlines() if line.startswith("| ours") or line.startswith("| nearest")
             or line.startswith("| piecewise")]
    assert len(table) == 8
    if data["backbones"]["fid"].startswith("not available"):
        assert all(r["fid"] is None for r in data["results"])
    for rel in report["files"]["plots"] + report["files"]["samples"]:
        assert (tmp_path / rel).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(report["files"]["samples"]) == 8 + 2


def test_an_interrupted_evaluation_resumes_from_the_frames_it_kept(tiny_model, short_clip, tmp_path, monkeypatch):
    """Frames are kept per (clip, T, mode) as they are made; a rerun reuses them only when the model,
    options and clip are the same, and gives the same numbers."""
    from talkinghead.pipeline import TalkingHead

    opts = EvalOptions(shots=(1,), modes=("ff", "ft"), frames=2, ft_steps=1, content="none", backend="dlib",
                       baselines=False)
    work = tmp_path / ".partial"
    real = TalkingHead.personalize
    calls = []
    monkeypatch.setattr(TalkingHead, "personalize", lambda self, *a, **k: calls.append(1) or real(self, *a, **k))

    def run(o):
        calls.clear()
        rows = evaluate(tiny_model, [short_clip], o, log=None, work_dir=work).report["results"]
        return {(r["method"], r["shots"]): (r["ssim"], r["lpips"]) for r in rows}, len(calls)

    first, n1 = run(opts)
    assert n1 == 2 and sorted(p.name for p in work.iterdir()) == ["astronaut_ff_T1.npz", "astronaut_ft_T1.npz"]
    (work / "astronaut_ft_T1.npz").unlink()  # as if stopped during fine-tuning
    again, n2 = run(opts)
    assert n2 == 1 and again == first
    _, n3 = run(EvalOptions(**{**opts.__dict__, "seed": 1}))  # another seed: FT again, FF reused
    assert n3 == 1


def test_eval_cli_exits_2_on_a_bad_video(tmp_path, capsys):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all" * 100)
    assert cli_main(["eval", "--videos", str(bad), "-o", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "bad.mp4" in err and len(err.strip().splitlines()) == 1
    assert cli_main(["eval", "--videos", str(tmp_path / "missing.mp4"), "-o", str(tmp_path / "r")]) == 2
    assert not (tmp_path / "r").exists()


# ------------------------------------------------------------------------- checks before slow work
def _no_model_load(monkeypatch):
    """Make loading the model a test failure: these errors must come before it."""
    import talkinghead.pipeline

    def fail(*a, **k):
        raise AssertionError("the model was loaded before the error")

    monkeypatch.setattr(talkinghead.pipeline, "load", fail)


def _one_line_error(capsys, *words):
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("talkinghead eval: error:"), err
    assert all(w in err for w in words), err


def test_eval_refuses_a_file_as_report_folder_before_loading_the_model(short_clip, tmp_path, capsys, monkeypatch):
    _no_model_load(monkeypatch)
    afile = tmp_path / "afile"
    afile.write_bytes(b"x")
    for out in (afile, afile / "sub"):
        assert cli_main(["eval", "--videos", str(short_clip), "-o", str(out), "--modes", "ff"]) == 2
        _one_line_error(capsys, "afile", "file")


@pytest.mark.parametrize("option, value", [("--seed", "-1"), ("--seed", str(2**40)), ("--shots", "100000000"),
                                           ("--frames", "1000000000"), ("--test-from", "0")])
def test_eval_refuses_impossible_numbers(short_clip, tmp_path, capsys, monkeypatch, option, value):
    _no_model_load(monkeypatch)
    assert cli_main(["eval", "--videos", str(short_clip), "-o", str(tmp_path / "r"), option, value]) == 2
    assert option in capsys.readouterr().err
    with pytest.raises(InputError, match="--seed"):
        EvalOptions(seed=-1)


def test_eval_refuses_test_frames_among_the_shots(short_clip, tmp_path, capsys, monkeypatch):
    _no_model_load(monkeypatch)
    assert cli_main(["eval", "--videos", str(short_clip), "-o", str(tmp_path / "r"), "--shots", "8",
                     "--test-from", "4"]) == 2
    _one_line_error(capsys, "--test-from", "at least 8")


def test_a_clip_far_too_short_for_the_shots_fails_before_decoding(short_clip, tmp_path, capsys, monkeypatch):
    import talkinghead.evaluation.protocol as P

    _no_model_load(monkeypatch)
    monkeypatch.setattr(P, "_decode", lambda *a: pytest.fail("decoded"))
    assert cli_main(["eval", "--videos", str(short_clip), "-o", str(tmp_path / "r"), "--shots", "900"]) == 2
    _one_line_error(capsys, "astronaut.mp4 has 6 frames", "--shots")
    with pytest.raises(InputError, match="has 6 frames"):
        P.load_clip(short_clip, (900,), 4, detector=None)
    # many test frames asked of a short clip: each free frame once, nothing huge allocated
    assert split_frames(10, (1,), 10**9).test == list(range(1, 10))


def test_a_source_without_a_face_fails_before_any_clip(tiny_model, short_clip, tmp_path, monkeypatch):
    import cv2

    import talkinghead.evaluation.protocol as P
    from talkinghead.errors import NoFaceError

    noise = tmp_path / "noise.png"
    cv2.imwrite(str(noise), np.random.default_rng(0).integers(0, 255, (128, 128, 3), dtype=np.uint8))
    monkeypatch.setattr(P, "load_clip", lambda *a, **k: pytest.fail("a clip was processed first"))
    with pytest.raises(NoFaceError, match="noise.png"):
        evaluate(tiny_model, [short_clip], EvalOptions(shots=(1,), modes=("ff",), frames=1, backend="dlib"),
                 sources=[noise], log=None)


def test_clips_with_the_same_name_get_their_own_rows_strips_and_kept_frames(tiny_model, short_clip, tmp_path):
    import shutil

    from talkinghead.evaluation.protocol import clip_labels

    a, b = tmp_path / "id1" / "clip.mp4", tmp_path / "id2" / "clip.mp4"
    for p in (a, b):
        p.parent.mkdir()
        shutil.copy(short_clip, p)
    assert clip_labels([a, b, short_clip]) == ["id1/clip.mp4", "id2/clip.mp4", "astronaut.mp4"]
    with pytest.raises(InputError, match="given twice"):
        clip_labels([a, tmp_path / "id2" / ".." / "id1" / "clip.mp4"])
    work = tmp_path / ".partial"
    opts = EvalOptions(shots=(1,), modes=("ff",), frames=1, backend="dlib", baselines=False, samples=1)
    result = evaluate(tiny_model, [a, b], opts, log=None, work_dir=work)
    assert [r["video"] for r in result.report["results"][0]["per_clip"]] == ["id1/clip.mp4", "id2/clip.mp4"]
    assert sorted(result.samples) == ["id1__clip_ff_T1", "id2__clip_ff_T1"]
    assert sorted(p.name for p in work.iterdir()) == ["id1__clip_ff_T1.npz", "id2__clip_ff_T1.npz"]


def test_fine_tuning_is_announced_with_a_progress_bar(tiny_model, short_clip, monkeypatch):
    from talkinghead.pipeline import TalkingHead

    real, bars = TalkingHead.personalize, []
    monkeypatch.setattr(TalkingHead, "personalize",
                        lambda self, *a, **k: bars.append(k["progress"]) or real(self, *a, **k))
    lines = []
    opts = EvalOptions(shots=(1,), modes=("ff", "ft"), frames=1, ft_steps=1, content="none", backend="dlib",
                       baselines=False)
    evaluate(tiny_model, [short_clip], opts, log=lines.append)
    assert bars == [False, True] and any("FT T=1: fine-tuning 1 steps" in s for s in lines)
    bars.clear()
    evaluate(tiny_model, [short_clip], opts, log=None)  # a silent caller gets no bar either
    assert bars == [False, False]


def test_portraits_with_the_same_file_name_keep_their_own_strips(tiny_model, short_clip, grace_hopper_path, tmp_path):
    import shutil

    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        shutil.copy(grace_hopper_path, tmp_path / d / "portrait.jpg")
    opts = EvalOptions(shots=(1,), modes=("ff",), frames=2, baselines=False, backend="dlib")
    result = evaluate(tiny_model, [short_clip], opts, sources=[tmp_path / "a" / "portrait.jpg",
                                                               tmp_path / "b" / "portrait.jpg"], log=None)
    assert sorted(k for k in result.samples if k.startswith("cross_")) == \
        ["cross_a__portrait_astronaut_ff", "cross_b__portrait_astronaut_ff"]


def test_the_eval_cache_key_holds_the_config_not_only_the_weights(warp_model_dir):
    """The same weights under another warp_motion are another model: their cached results must not mix."""
    import talkinghead as th
    from talkinghead.evaluation.protocol import _model_fingerprint

    tps = th.load(warp_model_dir)
    pa = th.load(warp_model_dir)
    pa.model.config = pa.model.config.replace(warp_motion="pa")
    assert _model_fingerprint(tps) != _model_fingerprint(pa)
    assert _model_fingerprint(tps) == _model_fingerprint(th.load(warp_model_dir))
