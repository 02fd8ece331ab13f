"""Audio-driven animation (issue 19): decoding, features, the audio-to-motion model, its trainer, the
CLI and API paths, and every bad input as one line before any slow work."""
from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
import torch

from talkinghead import audio as A
from talkinghead import audio2motion as M
from talkinghead import pipeline
from talkinghead.cli import main as cli_main
from talkinghead.errors import InputError, WeightsError

# speech-like: a 150 Hz voice with harmonics, syllables at 4 Hz, a 0.3 s pause every 1.5 s
SPEECH = "0.3*(sin(2*PI*150*t)+0.5*sin(2*PI*300*t)+0.3*sin(2*PI*900*t))*(0.55+0.45*sin(2*PI*4*t))*gt(mod(t\\,1.5)\\,0.3)"


def ffmpeg(*args) -> None:
    from talkinghead.io import _ffmpeg_exe

    subprocess.run([_ffmpeg_exe(), "-v", "error", "-y", *map(str, args)], check=True, capture_output=True)


def make_audio(path, seconds: float = 1.0, expr: str = SPEECH, rate: int = 44100):
    ffmpeg("-f", "lavfi", "-i", f"aevalsrc='{expr}':s={rate}:d={seconds}", path)
    return path


@pytest.fixture(scope="module")
def speech_wav(tmp_path_factory):
    return make_audio(tmp_path_factory.mktemp("audio") / "speech.wav", 1.2)


@pytest.fixture(scope="module")
def speech_mp4(tmp_path_factory):
    """An mp4 with a grey picture and the speech-like tone as AAC."""
    path = tmp_path_factory.mktemp("audio") / "speech.mp4"
    ffmpeg("-f", "lavfi", "-i", "color=c=gray:s=64x64:d=1:r=10", "-f", "lavfi", "-i", f"aevalsrc='{SPEECH}':s=48000:d=1",
           "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", path)
    return path


@pytest.fixture(scope="module")
def silent_wav(tmp_path_factory):
    path = tmp_path_factory.mktemp("audio") / "silence.wav"
    ffmpeg("-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-t", "1", path)
    return path


@pytest.fixture(scope="module")
def video_without_audio(tmp_path_factory, astronaut):
    from talkinghead.io import write_video

    return write_video(tmp_path_factory.mktemp("audio") / "mute.mp4", [astronaut[::4, ::4]] * 3, 25.0)


@pytest.fixture(scope="module")
def tiny_audio_dir(tmp_path_factory):
    torch.manual_seed(0)
    net = M.Audio2Motion(M.get_audio_config("tiny"))
    with torch.no_grad():  # a net that opens the mouth with loudness, so motion is visible
        for p in net.parameters():
            p.normal_(0, 0.3)
    return net.save_pretrained(tmp_path_factory.mktemp("a2m") / "tiny-audio")


# ------------------------------------------------------------------------------------------ decoding
def test_wav_and_mp4_audio_decode_to_16k_mono(speech_wav, speech_mp4):
    wav = A.read_audio(speech_wav)
    assert wav.dtype == np.float32 and wav.ndim == 1 and abs(len(wav) - 1.2 * A.SAMPLE_RATE) < 200
    assert 0.3 < np.abs(wav).max() <= 1.0
    mp4 = A.read_audio(speech_mp4)
    assert abs(len(mp4) - A.SAMPLE_RATE) < 1200  # AAC adds a few ms of priming
    assert A.frame_dbfs(mp4).max() > -20
    assert A.probe_audio(speech_mp4).has_audio and abs(A.probe_audio(speech_wav).duration - 1.2) < 0.05


def test_a_file_without_audio_is_one_sentence_naming_it(video_without_audio):
    with pytest.raises(InputError, match="mute.mp4 has no audio track") as info:
        A.check_audio(video_without_audio)
    assert "\n" not in str(info.value)


def test_silence_only_is_refused(silent_wav):
    assert len(A.read_audio(silent_wav)) == A.SAMPLE_RATE  # reading is fine; animating it is not
    with pytest.raises(InputError, match="silence.wav holds only silence"):
        A.check_audio(silent_wav)


def test_audio_longer_than_the_limit_is_refused_before_decoding(tmp_path):
    from talkinghead.checks import MAX_AUDIO_SECONDS

    long = tmp_path / "long.wav"
    ffmpeg("-f", "lavfi", "-i", "anullsrc=r=8000:cl=mono", "-t", MAX_AUDIO_SECONDS + 1, long)
    with pytest.raises(InputError, match=r"long.wav is 601.0 s long, longer than the 600 s"):
        A.check_audio(long)


def test_not_an_audio_file(tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("hello")
    with pytest.raises(InputError, match="notes.txt is not a readable audio or video file"):
        A.read_audio(bad)
    with pytest.raises(InputError, match="does not exist"):
        A.read_audio(tmp_path / "missing.wav")


# ------------------------------------------------------------------------------------------ features
def test_feature_shapes_and_the_frame_grid():
    x = np.random.default_rng(0).normal(0, 0.1, 16_000).astype(np.float32)
    mel = A.log_mel(x)
    assert mel.shape == (40, 16_000 // A.HOP + 1) and torch.isfinite(mel).all()
    assert A.log_mel(np.stack([x, x]), n_mels=16).shape == (2, 16, 101)
    assert A.log_mel(np.zeros(10, np.float32)).shape == (40, 1)  # shorter than a window: one frame
    assert A.speech_features(x).shape == (40, 101)
    assert A.frame_dbfs(x).shape == (101,)
    fb = A.mel_filterbank(40)
    assert fb.shape == (40, A.N_FFT // 2 + 1) and (fb.sum(1) > 0).all()
    assert A.frame_count(16_000 * 3, 25) == 75 and A.frame_count(8_010, 30) == 15 and A.frame_count(1, 25) == 1


def test_loudness_normalisation_makes_quiet_and_loud_recordings_alike(speech_wav):
    x = A.read_audio(speech_wav)
    a, b = A.speech_features(x), A.speech_features(x * 0.05)
    assert torch.allclose(a, b, atol=1e-2)
    act = M.speech_activity(A.normalise_loudness(x), np.arange(30) / 25)
    assert act[:6].max() == 0 and act[10:30].min() > 0.999  # the first 0.3 s is a pause (see SPEECH)


# ------------------------------------------------------------------------------------------ the model
@pytest.mark.parametrize("name", M.list_audio_configs())
def test_every_registered_config_runs_forward_and_backward(name):
    from talkinghead.audio_training import AudioLossWeights, audio_loss

    cfg = M.get_audio_config(name)
    net = M.Audio2Motion(cfg)
    mel = torch.randn(2, cfg.n_mels, 60)
    coeffs = net(mel)
    assert coeffs.shape == (2, cfg.n_components, 60)
    off = net.offsets(coeffs)
    assert off.shape == (2, 60, len(M.EXPRESSION_POINTS), 2)
    target = torch.randn_like(off) * 0.05
    mask = torch.rand(2, 60) > 0.5
    loss, terms = audio_loss(off, target, mask, AudioLossWeights())
    loss.backward()
    assert set(terms) == {"offsets", "opening", "correlation"} and all(np.isfinite(v) for v in terms.values())
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())
    assert cfg.receptive_field % 2 == 1


def test_config_round_trip_and_bad_configs():
    cfg = M.get_audio_config("default", channels=32)
    assert M.Audio2MotionConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError, match="odd"):
        M.Audio2MotionConfig(kernel=4)
    with pytest.raises(ValueError, match="unknown"):
        M.Audio2MotionConfig.from_dict({"chanels": 3})
    with pytest.raises(InputError, match="Unknown audio-model config"):
        M.get_audio_config("huge")


def test_save_load_round_trip_and_refusals(tiny_audio_dir, tmp_path, model_dir):
    net = M.load_audio_model(tiny_audio_dir)
    again = M.Audio2Motion.from_pretrained(tiny_audio_dir)
    mel = torch.randn(1, 16, 30)
    assert torch.equal(net(mel), again(mel)) and not net.training
    meta = json.loads((tiny_audio_dir / "config.json").read_text())
    assert meta["class_name"] == "Audio2Motion" and meta["config"]["channels"] == 8
    with pytest.raises(WeightsError, match="not an audio-to-motion model"):
        M.load_audio_model(model_dir)  # a generator's folder
    with pytest.raises(WeightsError, match=r"config.json is missing: pass the audio model's folder"):
        M.load_audio_model(tmp_path)  # a folder that holds no model
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text((tiny_audio_dir / "config.json").read_text())
    data = bytearray((tiny_audio_dir / "model.safetensors").read_bytes())
    data[-1] ^= 1
    (bad / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="sha256"):
        M.load_audio_model(bad)


# ------------------------------------------------------------------------------------------ motion
def test_offsets_move_the_source_in_its_own_roll(astronaut_face):
    from talkinghead.metrics import mouth_opening

    _, lm = astronaut_face
    zero = np.zeros((2, len(M.EXPRESSION_POINTS), 2), np.float32)
    assert np.allclose(M.apply_offsets(lm, zero), lm[None], atol=1e-3)
    opening = zero.copy()
    lower = np.isin(M.EXPRESSION_POINTS, [56, 57, 58, 65, 66, 67])
    opening[1, lower, 1] = 0.3  # the lower lip down by 0.3 face sizes
    centre = lm.mean(0)
    for angle in (0.0, 0.4):  # a tilted face opens along its own vertical
        c, s = np.cos(angle), np.sin(angle)
        tilted = (lm - centre) @ np.array([[c, s], [-s, c]]) + centre
        out = M.apply_offsets(tilted, opening)
        assert mouth_opening(out[1])[0] > mouth_opening(out[0])[0] + 0.25
        assert np.allclose(M.upright(out[1])[[61, 67]] - M.upright(out[0])[[61, 67]], [[0, 0], [0, 0.3]], atol=0.02)


def test_audio_motion_matches_the_audio_length_and_closes_in_pauses(tiny_audio_dir, astronaut_face, speech_wav):
    from talkinghead.metrics import mouth_opening

    _, lm = astronaut_face
    for fps in (25.0, 30.0):
        track, info = M.audio_motion(lm, speech_wav, fps=fps, model=tiny_audio_dir, head_motion="none")
        assert track.shape == (round(1.2 * fps), 68, 2) and np.isfinite(track).all()
    rest = mouth_opening(lm)[0]
    pause = slice(0, 6)  # the first 0.3 s of SPEECH is silent
    assert (mouth_opening(track[:7])[pause] <= rest + 1e-3).all()
    moved, _ = M.audio_motion(lm, speech_wav, fps=30.0, model=tiny_audio_dir, head_motion="natural")
    assert np.abs(moved - track).max() > 0.5  # the head moves
    assert np.allclose(mouth_opening(moved), mouth_opening(track), atol=1e-3)  # but not the lips
    with pytest.raises(InputError, match="head_motion"):
        M.audio_motion(lm, speech_wav, head_motion="wild", model=tiny_audio_dir)


# ------------------------------------------------------------------------------------------ training
def test_trainer_writes_a_run_resumes_exactly_and_exports(tmp_path, speech_wav, astronaut_face):
    from talkinghead.audio_training import AudioTrainOptions, build_features, train_audio

    _, lm = astronaut_face
    cache = tmp_path / "cache"
    cache.mkdir()
    rng = np.random.default_rng(0)
    for k, ident in enumerate(("alice", "bob")):
        n = 30  # 1.2 s at 25 fps
        track = np.repeat(lm[None], n, 0) + rng.normal(0, 0.3, (n, 68, 2)).astype(np.float32)
        track[:, 57, 1] += 5 * np.abs(np.sin(np.arange(n) / 2))
        meta = {"video": f"clip{k}", "identity": ident, "source": str(speech_wav), "fps": 25.0}
        np.savez(cache / f"clip{k}.npz", landmarks=track, frame_index=np.arange(n), meta=np.array(json.dumps(meta)))
    feats = build_features(cache, tmp_path / "features.npz", progress=False)
    opts = dict(features=str(feats), config="tiny", batch_size=2, window=60, val_identities=("bob",),
                val_every=2, log_every=1, warmup=1)
    run = tmp_path / "run"
    train_audio(AudioTrainOptions(run_dir=str(run), steps=2, **opts), progress=False)
    net = train_audio(AudioTrainOptions(run_dir=str(run), steps=4, **opts), resume=True, progress=False)
    straight = tmp_path / "straight"
    train_audio(AudioTrainOptions(run_dir=str(straight), steps=4, **opts), progress=False)
    a, b = (torch.load(d / "checkpoint.pt", weights_only=True)["model"] for d in (run, straight))
    assert all(torch.equal(a[k], b[k]) for k in a)
    record = json.loads((run / "training_options.json").read_text())
    assert record["val_clips"] == ["clip1"] and len(record["segments"]) == 2
    assert (run / "log.csv").read_text().count("\n") == 5
    assert isinstance(net, M.Audio2Motion) and net.training_info["val_identities"] == ["bob"]
    with pytest.raises(InputError, match="already holds a run"):
        train_audio(AudioTrainOptions(run_dir=str(run), steps=4, **opts), progress=False)


# ------------------------------------------------------------------------------------------ API and CLI
@pytest.fixture(scope="module")
def ff_avatar(model_dir, astronaut):
    return pipeline.load(model_dir, device="cpu").personalize([astronaut], progress=False)


@pytest.fixture()
def photo(tmp_path, astronaut):
    from talkinghead.io import write_image

    return write_image(tmp_path / "photo.png", astronaut[::2, ::2])


@pytest.fixture()
def no_slow_work(monkeypatch):
    def fail(*a, **k):
        raise AssertionError("the mistake should have been reported before the model was loaded")
    monkeypatch.setattr(pipeline, "load", fail)


def _one_line_error(capsys, code) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


def test_avatar_animate_audio_carries_the_audio(ff_avatar, speech_wav, tiny_audio_dir, tmp_path):
    from talkinghead.io import VideoReader

    video = ff_avatar.animate_audio(speech_wav, fps=10, model=tiny_audio_dir, crop_only=True, progress=False)
    assert len(video) == 12 and video.audio_from == speech_wav and video.info["head_motion"] == "natural"
    out = pipeline.write_video(tmp_path / "a.mp4", video, credentials=False)
    with VideoReader(out) as r:
        assert r.has_audio and len(r.read_all()) == 12
    assert abs(A.probe_audio(out).duration - 1.2) < 0.1


def test_cli_animate_audio_with_source_and_avatar(model_dir, ff_avatar, photo, speech_mp4, tiny_audio_dir, tmp_path,
                                                   capsys):
    from talkinghead.io import VideoReader
    from talkinghead.watermark import verify_file

    out = tmp_path / "out.mp4"
    assert cli_main(["animate", "--source", str(photo), "--audio", str(speech_mp4), "--model", str(model_dir),
                     "--audio-model", str(tiny_audio_dir), "--fps", "20", "--head-motion", "none",
                     "--device", "cpu", "--no-credentials", "-o", str(out)]) == 0
    assert f"audio from {speech_mp4}" in capsys.readouterr().out
    with VideoReader(out) as r:
        assert r.has_audio and r.fps == 20 and len(r.read_all()) == A.frame_count(len(A.read_audio(speech_mp4)), 20)
    marks = verify_file(out)
    assert marks.metadata_found and marks.tag("synthetic") == "true"  # marked as every output is
    av = ff_avatar.save(tmp_path / "av")
    out2 = tmp_path / "out2.mp4"
    assert cli_main(["animate", "--avatar", str(av), "--audio", str(speech_mp4), "--audio-model", str(tiny_audio_dir),
                     "--device", "cpu", "--crop-only", "--no-credentials", "-o", str(out2)]) == 0
    with VideoReader(out2) as r:
        assert r.has_audio and r.fps == 25 and len(r.read_all()) == 25


@pytest.mark.parametrize("case", ["no audio", "silence", "too long", "not audio", "head motion without audio",
                                  "seconds with audio", "missing model", "output is the audio"])
def test_cli_bad_audio_input_is_one_line_before_the_model(case, photo, tmp_path, capsys, no_slow_work, silent_wav,
                                                          video_without_audio, speech_wav, monkeypatch):
    from talkinghead import checks

    out = tmp_path / "out.mp4"
    notes = tmp_path / "notes.txt"
    notes.write_text("not a sound")
    args = ["animate", "--source", str(photo), "-o", str(out)]
    expect = {
        "no audio": ([*args, "--audio", str(video_without_audio)], "mute.mp4 has no audio track"),
        "silence": ([*args, "--audio", str(silent_wav)], "holds only silence"),
        "too long": ([*args, "--audio", str(speech_wav)], "longer than the 1 s"),
        "not audio": ([*args, "--audio", str(notes)], "notes.txt is not a readable audio"),
        "head motion without audio": ([*args, "--motion-preset", "talk", "--head-motion", "none"],
                                      "--head-motion only apply to --audio"),
        "seconds with audio": ([*args, "--audio", str(speech_wav), "--seconds", "2"], "--seconds only applies"),
        "missing model": ([*args, "--audio", str(speech_wav), "--audio-model", str(tmp_path / "nothing")],
                          "does not exist"),
        "output is the audio": (["animate", "--source", str(photo), "--audio", str(speech_wav), "-o", str(speech_wav)],
                                "speech.wav"),
    }[case]
    if case == "too long":
        monkeypatch.setattr(checks, "MAX_AUDIO_SECONDS", 1.0)
    line = _one_line_error(capsys, cli_main(expect[0]))
    assert expect[1] in line, line
    assert not out.exists()


def test_cli_eval_audio_writes_a_report(tmp_path, astronaut, speech_wav, tiny_audio_dir, capsys):
    import cv2

    from talkinghead.io import VideoWriter

    clip = tmp_path / "talking.mp4"
    face = cv2.resize(astronaut, (256, 256), interpolation=cv2.INTER_AREA)
    with VideoWriter(clip, 10, audio_from=speech_wav) as w:
        for i in range(12):  # a still face whose mouth does not move: the clip is only for the plumbing
            w.write(face)
    assert cli_main(["eval", "--audio", "--videos", str(clip), "--audio-model", str(tiny_audio_dir),
                     "-o", str(tmp_path / "report")]) == 0
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    (entry,) = report["clips"]
    assert entry["status"] == "ok" and set(entry["methods"]) == set(report["summary"])
    assert entry["frame_count_check"]["video_frames"] == 12
    assert entry["silence"]["closed_fraction"] == 1.0
    assert (tmp_path / "report" / "opening.png").stat().st_size > 1000
    assert "talk preset" in (tmp_path / "report" / "report.md").read_text()
    assert "loudness" in entry["methods"] and "loudness" in (tmp_path / "report" / "report.md").read_text()


def test_the_loudness_baseline_follows_the_sound_and_is_shut_in_pauses():
    from talkinghead.evaluation.audio import loudness_level

    t = np.arange(A.SAMPLE_RATE * 2) / A.SAMPLE_RATE
    envelope = np.where(t < 1.0, 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t), 0.0)  # 4 Hz syllables, then silence
    samples = (0.3 * envelope * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    times = np.arange(50) / 25.0
    activity = M.speech_activity(samples, times)
    level = loudness_level(samples, times, activity)
    assert level.shape == (50,) and level.min() >= 0 and level.max() <= 1
    assert (level[27:] == 0).all() and level[:25].max() > 0.9  # shut in the silent second
    want = envelope[(times[:25] * A.SAMPLE_RATE).astype(int)]
    assert np.corrcoef(level[:25], want)[0, 1] > 0.8


@pytest.mark.parametrize("argv, words", [
    (["eval", "--audio", "--shots", "8", "--frames", "4"], "--shots, --frames do not apply to eval --audio"),
    (["eval", "--audio", "--model", "other"], "--model does not apply"),
    (["eval", "--audio-model", "x"], "--audio-model only applies to eval --audio"),
])
def test_eval_audio_refuses_options_it_would_ignore(tmp_path, capsys, argv, words):
    from talkinghead.cli import main as cli_main

    assert cli_main([*argv, "--videos", str(tmp_path / "clip.mp4"), "-o", str(tmp_path / "r")]) != 0
    assert words in capsys.readouterr().err and not (tmp_path / "r").exists()


def test_lagged_correlation_finds_the_lag():
    from talkinghead.evaluation.audio import lagged_correlation

    t = np.arange(200)
    real = np.sin(t / 3.0) + 0.1 * np.cos(t / 17.0)
    late = np.r_[np.zeros(3), real[:-3]]  # the prediction comes 3 frames late
    r = lagged_correlation(late, real, 10)
    assert r["lag"] == 3 and r["best_correlation"] > 0.99 and r["correlation"] < 0.9
    assert lagged_correlation(np.ones(50), real[:50])["correlation"] is None


# ------------------------------------------------------------------------------------------ the shipped model
@pytest.mark.data
def test_the_shipped_model_is_small_and_keeps_the_mouth_closed_in_silence(data_dir):
    from talkinghead.hub import repo_pretrained_dir
    from talkinghead.io import read_image
    from talkinghead.landmarks import get_detector
    from talkinghead.metrics import mouth_opening

    folder = repo_pretrained_dir() / M.DEFAULT_AUDIO_MODEL
    assert sum(f.stat().st_size for f in folder.iterdir()) < 1e6
    net = M.load_audio_model()
    assert net.num_parameters() < 1e6 and net.training_info["val_identities"]
    assert net.config == M.get_audio_config("default")
    speech = A.check_audio(data_dir / "eval" / "driving" / "sadtalker__ref_video__WDA_KatieHill_000.mp4")[:48_000]
    audio = np.concatenate([speech, np.zeros(16_000, np.float32), speech])  # a silent second in the middle
    mona = read_image(data_dir / "eval" / "source" / "liveportrait__source__s9.jpg")
    src = get_detector("dlib").detect(mona)[0].landmarks
    track, _ = M.audio_motion(src, audio, fps=25.0, model=net)
    opening, rest = mouth_opening(track), mouth_opening(src)[0]
    assert np.mean(opening[75:100] <= rest + 1e-3) >= 0.95  # the silent second: frames 75 to 99
    assert opening[:75].max() > rest + 0.1  # and the mouth opens while she speaks


def test_an_ffmpeg_that_does_not_finish_is_one_line(tmp_path, monkeypatch):
    import subprocess

    from talkinghead import audio
    from talkinghead.errors import InputError

    f = tmp_path / "speech.wav"
    f.write_bytes(b"RIFF" + b"\0" * 64)

    def hang(*a, **k):
        raise subprocess.TimeoutExpired(a[0], k.get("timeout"))

    monkeypatch.setattr(audio.subprocess, "run", hang)
    with pytest.raises(InputError, match="speech.wav did not finish"):
        audio.probe_audio(f)


def test_the_mouth_distance_leaves_out_frames_without_a_face():
    from talkinghead.evaluation.audio import _scores

    rng = np.random.default_rng(0)
    real = rng.normal(size=(20, 68, 2))
    pred = real + 0.1
    real[3] = np.nan  # a frame where the clip's face was not found
    s = _scores(pred, real, 2)
    assert s["mouth_distance"] == pytest.approx(0.1 * np.sqrt(2))
    assert _scores(pred, np.full_like(real, np.nan), 2)["mouth_distance"] is None
