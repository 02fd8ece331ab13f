"""Preprocessing cache, episode sampler and K-shot episodes."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from talkinghead.data import (IBUG_FLIP, CacheEntry, EpisodeDataset, EpisodeSampler, flip_landmarks, preprocess,
                              write_entry)

# ---- a tiny real-face cache (also used by test_training.py): the astronaut with synthetic head motion


def astronaut_landmarks(image: np.ndarray) -> np.ndarray:
    from talkinghead.landmarks import detect_landmarks

    return detect_landmarks(image, backend="dlib")


def moving_frames(image: np.ndarray, lm: np.ndarray, n: int, seed: int):
    """``n`` frames of the photo under small random rotations/shifts, with the landmarks moved alike."""
    import cv2

    rng = np.random.default_rng(seed)
    h, w = image.shape[:2]
    centre = lm.mean(axis=0)
    for _ in range(n):
        M = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), rng.uniform(-8, 8), rng.uniform(0.95, 1.05))
        M[:, 2] += rng.uniform(-6, 6, size=2)
        yield cv2.warpAffine(image, M, (w, h), borderMode=cv2.BORDER_REFLECT101), lm @ M[:, :2].T + M[:, 2]


def square_crop(frame: np.ndarray, lm: np.ndarray, size: int):
    """A square crop around the landmarks (test helper, independent of the library's crop code)."""
    import cv2

    lo, hi = lm.min(axis=0), lm.max(axis=0)
    c, side = (lo + hi) / 2, (hi - lo).max() * 1.8
    s = size / side
    M = np.array([[s, 0, size / 2 - s * c[0]], [0, s, size / 2 - s * c[1]]])
    return cv2.warpAffine(frame, M, (size, size), flags=cv2.INTER_AREA), (lm @ M[:, :2].T + M[:, 2]).astype(np.float32)


def build_tiny_cache(root: Path, image: np.ndarray, videos: int = 3, frames: int = 10, size: int = 64) -> Path:
    from talkinghead.data import write_entry

    lm = astronaut_landmarks(image)
    for v in range(videos):
        crops, lms = zip(*(square_crop(f, l, size) for f, l in moving_frames(image, lm, frames, seed=v)))
        write_entry(root / f"astronaut{v}.npz", list(crops), np.stack(lms), meta={"video": f"astronaut{v}", "identity": "collins"})
    return root



@pytest.fixture(scope="module")
def tiny_cache(tmp_path_factory, astronaut):
    return build_tiny_cache(tmp_path_factory.mktemp("cache"), astronaut)


def test_flip_permutation_is_an_involution():
    assert sorted(IBUG_FLIP) == list(range(68))
    assert (IBUG_FLIP[IBUG_FLIP] == np.arange(68)).all()
    for centre in (8, 27, 28, 29, 30, 33, 51, 57, 62, 66):
        assert IBUG_FLIP[centre] == centre


def test_flipped_landmarks_match_detection_on_the_mirrored_photo(astronaut):
    lm = astronaut_landmarks(astronaut)
    mirrored = np.ascontiguousarray(astronaut[:, ::-1])
    detected = astronaut_landmarks(mirrored)
    err = np.linalg.norm(flip_landmarks(lm, astronaut.shape[1]) - detected, axis=1)
    eye_dist = np.linalg.norm(lm[36] - lm[45])
    assert err.mean() < 0.05 * eye_dist  # a wrong permutation gives errors of ~1 eye distance


def test_entry_round_trip(tmp_path, astronaut):
    crops = [astronaut[:64, :64], astronaut[64:128, 64:128]]
    lms = np.random.default_rng(0).uniform(0, 64, (2, 68, 2)).astype(np.float32)
    path = write_entry(tmp_path / "v.npz", crops, lms, [3, 7], {"identity": "x"})
    e = CacheEntry.load(path)
    assert len(e) == 2 and e.meta["identity"] == "x" and e.meta["size"] == 64
    np.testing.assert_array_equal(e.landmarks, lms)
    np.testing.assert_array_equal(e.frame_index, [3, 7])
    assert np.abs(e.frame(1).astype(int) - crops[1]).mean() < 4  # JPEG q95
    assert not list(tmp_path.glob(".*"))  # no temp files left


def test_sampler_is_resumable_and_splits_ranks():
    s = EpisodeSampler(7, seed=3)
    it = iter(s)
    first = [next(it) for _ in range(20)]
    it2 = iter(EpisodeSampler(7, seed=3, start=12))
    assert [next(it2) for _ in range(8)] == first[12:]
    assert sorted(v for v, _ in first[:7]) == list(range(7))  # one epoch visits every video once
    r0, r1 = (EpisodeSampler(7, seed=3, rank=r, world_size=2).order(0) for r in (0, 1))
    assert len(r0) == len(r1) == 4 and set(r0) | set(r1) == set(range(7))


def test_episode_shapes_and_determinism(tiny_cache):
    ds = EpisodeDataset(tiny_cache, k=4)
    assert len(ds) == 3 and ds.identities == ["collins"] * 3
    a, b = ds[(1, (0, 0, 5))], ds[(1, (0, 0, 5))]
    assert a["frames"].shape == a["landmarks"].shape == (5, 3, 64, 64)
    assert a["frames"].min() >= -1 and a["frames"].max() <= 1
    assert a["landmarks"].min() >= -1 and a["landmarks"].max() <= 1
    assert int(a["video_index"]) == 1
    assert (a["frames"] == b["frames"]).all() and (a["landmarks"] == b["landmarks"]).all()
    assert not (ds[(1, (0, 0, 6))]["frames"] == a["frames"]).all()


def test_augmentation_keeps_frames_and_landmarks_together(tmp_path, astronaut):
    """Frames that *are* landmark drawings must still coincide with the landmark images after a flip/shift."""
    from talkinghead.landmarks.draw import draw_landmarks

    lm = astronaut_landmarks(astronaut)
    crops, lms = zip(*(square_crop(f, l, 64) for f, l in moving_frames(astronaut, lm, 4, seed=0)))
    drawn = [draw_landmarks(l, 64) for l in lms]
    write_entry(tmp_path / "d.npz", drawn, np.stack(lms), jpeg_quality=100)
    ds = EpisodeDataset(tmp_path, k=3, augment=True, flip_p=1.0, scale=0.1, shift=0.05)
    ep = ds[(0, (1,))]
    plain = EpisodeDataset(tmp_path, k=3, augment=False)[(0, (1,))]
    frames, lmi = ep["frames"], ep["landmarks"]
    consistent = (frames - lmi).abs().mean()
    off_by_2px = (frames - lmi.roll(2, dims=-1)).abs().mean()
    not_augmented = (frames - plain["landmarks"]).abs().mean()
    assert consistent < 0.6 * min(off_by_2px, not_augmented)


def _write_clip(path, frames, fps=25):
    from talkinghead.io import write_video

    write_video(path, frames, fps)


def _moving_clip(path: Path, astronaut, frames: int, seed: int) -> Path:
    """A clip of the astronaut (256 px) under small random head motion."""
    import cv2

    small = cv2.resize(astronaut, (256, 256), interpolation=cv2.INTER_AREA)
    lm = astronaut_landmarks(astronaut) / 2
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_clip(path, [f for f, _ in moving_frames(small, lm, frames, seed=seed)])
    return path


def test_preprocess_resumable_with_report(tmp_path, astronaut):
    clips = tmp_path / "clips"
    _moving_clip(clips / "moving.mp4", astronaut, 12, seed=1)
    _write_clip(clips / "noface.mp4", [np.full((128, 128, 3), 90, np.uint8)] * 12)
    _moving_clip(clips / "short.mp4", astronaut, 3, seed=2)
    (clips / "broken.mp4").write_bytes(b"not a video at all")
    out = tmp_path / "cache"
    report = preprocess([clips], out, size=64, max_frames=8, min_frames=5, progress=False)
    status = {r.source.split("/")[-1]: (r.status, r.reason) for r in report.results}
    assert status["moving.mp4"][0] == "done"
    assert status["noface.mp4"] == ("skipped", "no face in 8 sampled frames")
    assert status["short.mp4"][0] == "skipped" and "too short" in status["short.mp4"][1]
    assert status["broken.mp4"][0] == "skipped" and "unreadable" in status["broken.mp4"][1]
    entry = CacheEntry.load(next(out.glob("moving-*.npz")))
    assert len(entry) == 8 and entry.landmarks.shape == (8, 68, 2) and entry.frame(0).shape == (64, 64, 3)
    assert np.isfinite(entry.landmarks).all() and (entry.landmarks > 0).all() and (entry.landmarks < 64).all()
    again = preprocess([clips], out, size=64, max_frames=8, min_frames=5, progress=False)
    assert again.count("done") == 0 and again.count("exists") == 1 and again.count("skipped") == 3
    index = json.loads((out / "index.json").read_text())
    assert len(index["entries"]) == 1 and len(index["skipped"]) == 3


def test_changed_settings_are_reported_and_overwrite_replaces_stale_files(tmp_path, astronaut):
    clip, out = _moving_clip(tmp_path / "moving.mp4", astronaut, 12, seed=1), tmp_path / "cache"
    first = preprocess([clip], out, size=64, max_frames=8, min_frames=8, progress=False)
    assert first.results[0].status == "done"
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,identity\nother.mp4,x\n")
    with pytest.warns(UserWarning) as caught:  # the clip is given twice (folder and file): counted once
        again = preprocess([tmp_path, clip], out, size=96, max_frames=8, min_frames=8,
                           manifest=manifest, progress=False)
    messages = [str(w.message) for w in caught]
    assert any("1 of 1 clips" in m and "relative to the CSV's folder" in m for m in messages)
    assert any("1 of 1 clips in" in m and "--size" in m and "--overwrite" in m for m in messages)
    assert len(again.results) == 1 and again.results[0].status == "exists"
    assert len(json.loads((out / "index.json").read_text())["entries"]) == 1
    # the clip now holds no face: --overwrite must drop the old entry, not leave it to be trained on
    _write_clip(clip, [np.full((128, 128, 3), 90, np.uint8)] * 12)
    redone = preprocess([clip], out, size=64, max_frames=8, min_frames=8, overwrite=True, progress=False)
    assert redone.results[0].status == "skipped"
    assert not list(out.glob("*.npz")) and len(list(out.glob("*.skip.json"))) == 1


def test_truncated_cache_entry_is_refused_at_load(tmp_path, astronaut):
    from talkinghead.errors import InputError

    lms = np.random.default_rng(0).uniform(0, 64, (2, 68, 2)).astype(np.float32)
    path = write_entry(tmp_path / "v.npz", [astronaut[:64, :64]] * 2, lms)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(InputError, match="v.npz is not a readable cache entry.*delete it"):
        EpisodeDataset(tmp_path, k=1)


def test_job_returns_its_warnings_instead_of_printing_them(tmp_path, monkeypatch):
    import warnings

    import talkinghead.data as data

    def warns(**kwargs):
        warnings.warn("Video x.mp4 seems truncated")
        return data.PreprocessResult(str(kwargs["path"]), "x", "done")

    monkeypatch.setattr(data, "preprocess_video", warns)
    with warnings.catch_warnings(record=True) as leaked:
        warnings.simplefilter("always")
        result = data._preprocess_job({"path": tmp_path / "x.mp4"})
    assert result.warnings == ["Video x.mp4 seems truncated"] and not leaked


def test_clip_id_follows_the_content_not_the_folder(tmp_path):
    from talkinghead.data import video_id_for

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    data = np.random.default_rng(0).bytes(3 << 20)  # longer than the hashed head and tail together
    (tmp_path / "a" / "clip.mp4").write_bytes(data)
    (tmp_path / "b" / "clip.mp4").write_bytes(data)
    assert video_id_for(tmp_path / "a" / "clip.mp4") == video_id_for(tmp_path / "b" / "clip.mp4")
    assert video_id_for(tmp_path / "a" / "clip.mp4").startswith("clip-")
    (tmp_path / "b" / "clip.mp4").write_bytes(data[:-1] + b"x")  # another last byte: another clip
    assert video_id_for(tmp_path / "a" / "clip.mp4") != video_id_for(tmp_path / "b" / "clip.mp4")


def test_an_older_cache_named_by_path_is_renamed_not_duplicated(tmp_path, astronaut):
    from talkinghead.data import legacy_video_id, video_id_for

    clip, out = _moving_clip(tmp_path / "moving.mp4", astronaut, 10, seed=1), tmp_path / "cache"
    preprocess([clip], out, size=64, max_frames=8, min_frames=5, progress=False)
    new, old = video_id_for(clip), legacy_video_id(clip)
    assert new != old
    (out / f"{new}.npz").rename(out / f"{old}.npz")  # the cache as an older version named it
    again = preprocess([clip], out, size=64, max_frames=8, min_frames=5, progress=False)
    assert again.results[0].status == "exists" and again.results[0].video_id == new
    assert [p.name for p in out.glob("*.npz")] == [f"{new}.npz"]
    assert EpisodeDataset(out, k=2).videos == [new]


def test_copies_of_a_clip_are_cached_once(tmp_path, astronaut):
    _moving_clip(tmp_path / "a" / "moving.mp4", astronaut, 10, seed=1)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "moving.mp4").write_bytes((tmp_path / "a" / "moving.mp4").read_bytes())
    with pytest.warns(UserWarning, match="b/moving.mp4 is a copy of .*a/moving.mp4 and is cached once"):
        report = preprocess([tmp_path / "a", tmp_path / "b"], tmp_path / "cache", size=64, max_frames=8,
                            min_frames=5, progress=False)
    assert [r.status for r in report.results] == ["done"]
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1


def test_a_clip_whose_file_changed_is_cropped_again_and_its_old_crops_dropped(tmp_path, astronaut):
    clip, out = _moving_clip(tmp_path / "moving.mp4", astronaut, 10, seed=1), tmp_path / "cache"
    first = preprocess([clip], out, size=64, max_frames=8, min_frames=5, progress=False)
    _moving_clip(clip, astronaut, 10, seed=2)  # the user re-exported it
    second = preprocess([clip], out, size=64, max_frames=8, min_frames=5, progress=False)
    assert second.results[0].status == "done" and second.results[0].video_id != first.results[0].video_id
    assert [p.stem for p in out.glob("*.npz")] == [second.results[0].video_id]


def test_manifest_rows_without_an_identity_are_not_clips(tmp_path):
    from talkinghead.data import read_manifest

    (tmp_path / "m.csv").write_text("path,identity,licence\nclips/a.mp4,alice,MIT\nsource/portrait.jpg,,MIT\n")
    assert read_manifest(tmp_path / "m.csv") == {str((tmp_path / "clips" / "a.mp4").resolve()): "alice"}


def test_the_shared_manifest_names_every_training_clip(data_dir):
    from talkinghead.data import expand_videos, read_manifest

    identities = read_manifest(data_dir / "MANIFEST.csv")  # it also lists the eval portraits, without identity
    clips = expand_videos([data_dir / "train"])
    assert clips and all(str(p.resolve()) in identities for p in clips)


def test_focus_draws_targets_from_wide_open_mouths_and_blinks(tmp_path, astronaut):
    from talkinghead.data import WIDE_OPEN, write_entry
    from talkinghead.metrics import mouth_open_ratio

    lm = astronaut_landmarks(astronaut)
    crops, lms = zip(*(square_crop(f, l, 64) for f, l in moving_frames(astronaut, lm, 12, seed=0)))
    lms = np.stack(lms)
    lms[:, [65, 66, 67]] = lms[:, [63, 62, 61]]  # lips closed in every frame...
    width = np.linalg.norm(lms[:, 54] - lms[:, 48], axis=-1)
    lms[4, [65, 66, 67], 1] += 0.5 * width[4]  # ...but wide open in frame 4
    lms[9, [40, 41, 46, 47]] = lms[9, [38, 37, 44, 43]]  # and a blink in frame 9
    assert mouth_open_ratio(lms[4]) >= WIDE_OPEN > mouth_open_ratio(lms[5])
    write_entry(tmp_path / "c.npz", list(crops), lms, meta={"video": "c", "identity": "collins"})
    focused = EpisodeDataset(tmp_path, k=3, augment=False, focus=1.0)
    assert focused.hard_frames(0).tolist() == [4, 9]
    targets = [focused[(0, (s, 1, 2))]["points"][-1] for s in range(12)]
    assert all(any(np.allclose(t.numpy(), lms[i]) for i in (4, 9)) for t in targets)
    uniform = EpisodeDataset(tmp_path, k=3, augment=False)
    drawn = [uniform[(0, (s, 1, 2))]["points"][-1].numpy() for s in range(30)]
    assert sum(not any(np.allclose(t, lms[i]) for i in (4, 9)) for t in drawn) > 15
    with pytest.raises(ValueError, match="focus"):
        EpisodeDataset(tmp_path, k=3, focus=1.5)
