#!/usr/bin/env python
"""Every fault and bad input we know of, tried on the CLI and the API, as one table.

    .venv/bin/python scripts/fault_table.py -o docs/faults.md     # every case (a few minutes on a CPU)
    .venv/bin/python scripts/fault_table.py -k fps -k model        # only the cases whose id has a word
    .venv/bin/python scripts/fault_table.py --list                 # the cases, not run

Each case runs in its own process and its own folder of tiny inputs (a 256 px portrait, an 8-frame
clip, the shipped model, an avatar), offline, under a time and a memory limit. It records the CLI's
exit status or the API's exception, the first line of the message, whether a traceback appeared,
whether a file that was there before was changed or lost, and what the case left behind (a
temporary file, a partial output). A case passes when:

- ``expect="error"``: the CLI exits non-zero, or the API raises a ``TalkingHeadError``; no traceback,
  no file changed or lost, nothing left behind;
- ``expect="ok"`` (an odd but valid input): exit 0 or no exception, no traceback, no input changed,
  no temporary file left;
- ``expect="warn"``: as ``ok``, and a warning says what was wrong (never silent).

The full disk and the read-only folder are made in a private mount namespace (``unshare -m``: a small
tmpfs, a read-only bind mount); where that is not possible those cases are reported as skipped.
The process exits 1 when a case fails, so it can gate a release; the table is written either way.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
MEMORY_LIMIT_GB = 3.0  # a case over this is killed and recorded (fps 1e9 once grew to 22.5 GB)
TIMEOUT_S = 150.0


@dataclass
class Case:
    id: str
    group: str
    title: str  # what is tried, for the table
    argv: list[str] | None = None  # CLI: ``talkinghead ARGV`` run in the case folder
    code: str | None = None  # API: Python run in the case folder (see _API_PRELUDE for the names it has)
    prepare: Callable[[Path, Path], None] | None = None  # prepare(case_dir, assets_dir): the bad input
    expect: str = "error"  # "error", "ok" or "warn" (see the module docstring)
    mount: str | None = None  # "ro:DIR" (read-only bind mount) or "tmpfs:SIZE:DIR" (a small disk, seeded with DIR's files)
    kill_when: str | None = None  # "tempfile:DIR": SIGKILL once a hidden file appears in DIR, then rerun ``argv`` once
    rerun: list[str] | None = None  # the rerun after the kill
    outputs: tuple[str, ...] = ()  # files an "ok" case is expected to write or replace
    timeout: float = TIMEOUT_S
    alone: bool = False  # may take a lot of memory: run by itself, after the others
    unreadable: str | None = None  # a file made unreadable (chmod 000; as root the command runs as nobody)
    note: str = ""

    @property
    def kind(self) -> str:
        return "CLI" if self.argv is not None else "API"


# --------------------------------------------------------------------------------------------- inputs
def make_assets(root: Path) -> Path:
    """The tiny good inputs every case starts from, made once: ``photo.png`` (256 px astronaut),
    ``clip.mp4`` (8 frames of it moving), ``long.mp4`` (25 frames), ``noface.png``, ``noface.mp4``,
    ``two.png`` (two faces), ``huge.png`` (12000 x 12000), ``model/`` (the shipped model), ``avatar/``,
    ``good.mp4`` (a generated output, to be protected)."""
    import cv2
    import numpy as np
    from skimage import data

    import talkinghead as th
    from talkinghead.hub import resolve_pretrained
    from talkinghead.io import write_image, write_video

    a = root / "assets"
    a.mkdir(parents=True, exist_ok=True)
    img = cv2.resize(data.astronaut(), (256, 256), interpolation=cv2.INTER_AREA)
    write_image(a / "photo.png", img)

    def moving(n):
        return [cv2.warpAffine(img, cv2.getRotationMatrix2D((128.0, 100.0), 1.5 * np.sin(i / 2), 1.0 + 0.01 * (i % 4)),
                               (256, 256), borderMode=cv2.BORDER_REFLECT101) for i in range(n)]
    write_video(a / "clip.mp4", moving(8), 25.0)
    write_video(a / "long.mp4", moving(25), 25.0)
    rng = np.random.default_rng(0)
    gray = np.clip(128 + rng.normal(0, 6, (256, 256, 3)), 0, 255).astype(np.uint8)
    write_image(a / "noface.png", gray)
    write_video(a / "noface.mp4", [gray] * 8, 25.0)
    write_image(a / "two.png", np.concatenate([img, img], axis=1))
    write_video(a / "two.mp4", [np.concatenate([f, f], axis=1) for f in moving(8)], 25.0)
    from PIL import Image

    Image.new("RGB", (12000, 12000), (120, 110, 100)).save(a / "huge.png", compress_level=1)
    src = Path(resolve_pretrained("default"))
    src = src if src.is_dir() else src.parent
    shutil.copytree(src, a / "model")
    avatar = th.load(a / "model", device="cpu").personalize([a / "photo.png"], progress=False, backend="dlib")
    avatar.save(a / "avatar")
    th.write_video(a / "good.mp4", avatar.animate_preset("talk", seconds=0.2, crop_only=True, progress=False))
    return a


_LINKED = {"model", "avatar", "huge.png"}  # large assets a case only reads: linked, not copied, unless real=True


def _copy(names: str, real: bool = False, **renamed: str) -> Callable[[Path, Path], None]:
    """prepare(): copy assets (``"photo.png clip.mp4"``) and renamed ones (``target="asset"``); the large
    read-only ones are symbolic links unless ``real`` (a case that damages its copy)."""
    def prepare(d: Path, a: Path) -> None:
        pairs = [(n, n) for n in names.split()] + [(t.replace("__", "."), s) for t, s in renamed.items()]
        for target, source in pairs:
            s, t = a / source, d / target
            t.parent.mkdir(parents=True, exist_ok=True)
            if source in _LINKED and not real:
                os.symlink(s, t)
            else:
                (shutil.copytree if s.is_dir() else shutil.copy2)(s, t)
    return prepare


def _then(*steps: Callable[[Path, Path], None]) -> Callable[[Path, Path], None]:
    def prepare(d: Path, a: Path) -> None:
        for step in steps:
            step(d, a)
    return prepare


def _write(name: str, content: bytes | str) -> Callable[[Path, Path], None]:
    def prepare(d: Path, a: Path) -> None:
        p = d / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content.encode() if isinstance(content, str) else content)
    return prepare


def _mkdir(name: str) -> Callable[[Path, Path], None]:
    return lambda d, a: (d / name).mkdir(parents=True, exist_ok=True)


def _symlink_loop(name: str) -> Callable[[Path, Path], None]:
    def prepare(d: Path, a: Path) -> None:
        (d / name).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(name.split("/")[-1], d / name)  # a link to itself: ELOOP
    return prepare


def _truncate(name: str, fraction: float) -> Callable[[Path, Path], None]:
    def prepare(d: Path, a: Path) -> None:
        p = d / name
        p.write_bytes(p.read_bytes()[:int(p.stat().st_size * fraction)])
    return prepare


def _corrupt_middle(name: str, nbytes: int = 2048) -> Callable[[Path, Path], None]:
    def prepare(d: Path, a: Path) -> None:
        p = d / name
        b = bytearray(p.read_bytes())
        mid = len(b) // 2
        b[mid:mid + nbytes] = os.urandom(min(nbytes, len(b) - mid))
        p.write_bytes(bytes(b))
    return prepare


def _flip_tensor_bytes(name: str, prefix: str, nbytes: int = 4096) -> Callable[[Path, Path], None]:
    """Flip every bit of ``nbytes`` bytes in the middle of the largest tensor whose name starts with
    ``prefix`` (a safetensors file: 8-byte header length, JSON header, data)."""
    def prepare(d: Path, a: Path) -> None:
        p = d / name
        b = bytearray(p.read_bytes())
        n = int.from_bytes(b[:8], "little")
        header = json.loads(b[8:8 + n])
        tensors = [(v["data_offsets"], k) for k, v in header.items() if k != "__metadata__" and k.startswith(prefix)]
        (start, end), _ = max(tensors, key=lambda t: t[0][1] - t[0][0])
        at = 8 + n + (start + end) // 2 - nbytes // 2
        for i in range(at, at + min(nbytes, end - start)):
            b[i] ^= 0xFF
        p.write_bytes(bytes(b))
    return prepare


def _image(name: str, kind: str) -> Callable[[Path, Path], None]:
    """The portrait in another form: gray, 16-bit, RGBA, CMYK JPEG, odd size, tiny, WebP, palette."""
    def prepare(d: Path, a: Path) -> None:
        import numpy as np
        from PIL import Image

        im = Image.open(a / "photo.png").convert("RGB")
        p = d / name
        if kind == "jpeg":
            im.save(p, "JPEG")
        elif kind == "gray":
            im.convert("L").save(p)
        elif kind == "16bit":
            import cv2

            cv2.imwrite(str(p), (np.asarray(im)[:, :, ::-1].astype(np.uint16) * 257))
        elif kind == "rgba":
            rgba = im.convert("RGBA")
            rgba.putalpha(200)
            rgba.save(p)
        elif kind == "cmyk":
            im.convert("CMYK").save(p, "JPEG")
        elif kind == "odd":
            im.resize((301, 517)).save(p)
        elif kind == "tiny":
            im.resize((16, 16)).save(p)
        elif kind == "webp":
            im.save(p, "WEBP")
        elif kind == "palette":
            im.convert("P", palette=Image.ADAPTIVE).save(p)
        else:
            raise ValueError(kind)
    return prepare


def _png_named_mp4(name: str) -> Callable[[Path, Path], None]:
    return lambda d, a: shutil.copy2(a / "photo.png", d / name)


# the preset run every valid-photo case makes: short, crop only
_PRESET = ["--motion-preset", "talk", "--seconds", "0.2", "--crop-only", "--backend", "dlib", "--model", "./model"]
_DRIVE = ["--source", "photo.png", "--crop-only", "--backend", "dlib", "--model", "./model"]

_API_PRELUDE = '''
import math, numpy as np, talkinghead as th
def model():
    return th.load("./model", device="cpu")
def avatar():
    return th.Avatar.load("avatar", device="cpu")
'''


def cases() -> list[Case]:
    P = "photo.png"
    c = []

    def cli(id, group, title, argv, prepare=None, **kw):
        c.append(Case(id, group, title, argv=argv, prepare=prepare, **kw))

    def api(id, group, title, code, prepare=None, **kw):
        c.append(Case(id, group, title, code=code, prepare=prepare, **kw))

    # ---- the photo (animate --source)
    g = "photo"
    cli("photo-missing", g, "`--source` does not exist", ["animate", "--source", "nope.jpg", *_PRESET[:-4], "-o", "out.mp4"])
    cli("photo-empty", g, "`--source` is an empty file", ["animate", "--source", "empty.jpg", *_PRESET, "-o", "out.mp4"],
        _then(_copy("model"), _write("empty.jpg", b"")))
    cli("photo-truncated", g, "`--source` is a JPEG cut in half",
        ["animate", "--source", "half.jpg", *_PRESET, "-o", "out.mp4"],
        _then(_copy("model"), _image("half.jpg", "jpeg"), _truncate("half.jpg", 0.5)))
    cli("photo-text", g, "`--source` is a text file named .jpg", ["animate", "--source", "notes.jpg", *_PRESET, "-o", "out.mp4"],
        _then(_copy("model"), _write("notes.jpg", "not an image\n")))
    cli("photo-folder", g, "`--source` is a folder", ["animate", "--source", "pics", *_PRESET, "-o", "out.mp4"],
        _then(_copy("model"), _mkdir("pics")))
    cli("photo-symlink-loop", g, "`--source` is a symlink loop", ["animate", "--source", "loop.jpg", *_PRESET, "-o", "out.mp4"],
        _then(_copy("model"), _symlink_loop("loop.jpg")))
    cli("photo-unreadable", g, "`--source` is unreadable (permissions)", ["animate", "--source", P, *_PRESET, "-o", "out.mp4"],
        _copy("model photo.png"), unreadable=P)
    cli("photo-no-face", g, "a photo without a face", ["animate", "--source", "noface.png", *_PRESET, "-o", "out.mp4"],
        _copy("model noface.png"))
    cli("photo-tiny", g, "a 16 x 16 photo", ["animate", "--source", "tiny.png", *_PRESET, "-o", "out.mp4"],
        _then(_copy("model"), _image("tiny.png", "tiny")))
    cli("photo-two-faces", g, "a photo with two faces (the larger is used)", ["animate", "--source", "two.png", *_PRESET, "-o", "out.mp4"],
        _copy("model two.png"), expect="ok", outputs=("out.mp4",))
    for kind, name, title in [("odd", "odd.png", "an odd size (301 x 517)"), ("gray", "gray.png", "a grayscale PNG"),
                              ("16bit", "deep.png", "a 16-bit PNG"), ("rgba", "alpha.png", "a PNG with transparency"),
                              ("cmyk", "cmyk.jpg", "a CMYK JPEG"), ("webp", "photo.webp", "a WebP"),
                              ("palette", "palette.png", "a palette PNG")]:
        cli(f"photo-{kind}", g, title, ["animate", "--source", name, *_PRESET, "-o", "out.mp4"],
            _then(_copy("model"), _image(name, kind)), expect="ok", outputs=("out.mp4",))
    cli("photo-huge", g, "a 12000 x 12000 PNG (above the documented pixel limit)",
        ["animate", "--source", "huge.png", *_PRESET, "-o", "out.mp4"], _copy("model huge.png"), alone=True)

    # ---- the driving clip
    g = "driving clip"
    cli("clip-missing", g, "`--driving` does not exist", ["animate", *_DRIVE, "--driving", "nope.mp4", "-o", "out.mp4"],
        _copy("model photo.png"))
    cli("clip-empty", g, "an empty .mp4", ["animate", *_DRIVE, "--driving", "empty.mp4", "-o", "out.mp4"],
        _then(_copy("model photo.png"), _write("empty.mp4", b"")))
    cli("clip-random-bytes", g, "random bytes named .mp4", ["animate", *_DRIVE, "--driving", "junk.mp4", "-o", "out.mp4"],
        _then(_copy("model photo.png"), lambda d, a: (d / "junk.mp4").write_bytes(os.urandom(50_000))))
    cli("clip-truncated", g, "a clip cut in half", ["animate", *_DRIVE, "--driving", "half.mp4", "-o", "out.mp4"],
        _then(_copy("model photo.png", half__mp4="long.mp4"), _truncate("half.mp4", 0.5)), expect="warn",
        outputs=("out.mp4",), note="the frames before the cut are usable; a warning must say the clip ends early")
    cli("clip-corrupt-middle", g, "2 KB of random bytes in the middle of a clip",
        ["animate", *_DRIVE, "--driving", "bad.mp4", "-o", "out.mp4"],
        _then(_copy("model photo.png", bad__mp4="long.mp4"), _corrupt_middle("bad.mp4")), expect="warn",
        outputs=("out.mp4",), note="never silently duplicate frames: a warning counts the unreadable ones")
    cli("clip-png-named-mp4", g, "a PNG named .mp4", ["animate", *_DRIVE, "--driving", "still.mp4", "-o", "out.mp4"],
        _then(_copy("model photo.png"), _png_named_mp4("still.mp4")))
    cli("clip-text", g, "a text file named .mp4", ["animate", *_DRIVE, "--driving", "notes.mp4", "-o", "out.mp4"],
        _then(_copy("model photo.png"), _write("notes.mp4", "hello\n")))
    cli("clip-folder", g, "`--driving` is a folder", ["animate", *_DRIVE, "--driving", "clips", "-o", "out.mp4"],
        _then(_copy("model photo.png"), _mkdir("clips")))
    cli("clip-symlink-loop", g, "`--driving` is a symlink loop", ["animate", *_DRIVE, "--driving", "loop.mp4", "-o", "out.mp4"],
        _then(_copy("model photo.png"), _symlink_loop("loop.mp4")))
    cli("clip-unreadable", g, "`--driving` is unreadable (permissions)", ["animate", *_DRIVE, "--driving", "clip.mp4", "-o", "out.mp4"],
        _copy("model photo.png clip.mp4"), unreadable="clip.mp4")
    cli("clip-no-face", g, "a clip without a face", ["animate", *_DRIVE, "--driving", "noface.mp4", "-o", "out.mp4"],
        _copy("model photo.png noface.mp4"))
    cli("clip-two-faces", g, "a clip with two faces (the larger is followed)",
        ["animate", *_DRIVE, "--driving", "two.mp4", "--max-frames", "3", "-o", "out.mp4"],
        _copy("model photo.png two.mp4"), expect="ok", outputs=("out.mp4",))

    # ---- where the output goes
    g = "output path"
    cli("out-read-only", g, "`-o` in a read-only folder", ["animate", "--source", P, *_PRESET, "-o", "ro/out.mp4"],
        _then(_copy("model photo.png"), _mkdir("ro")), mount="ro:ro")
    cli("out-long-name", g, "`-o` with a 300-byte file name", ["animate", "--source", P, *_PRESET, "-o", "x" * 296 + ".mp4"],
        _copy("model photo.png"))
    cli("out-symlink-loop", g, "`-o` is a symlink loop", ["animate", "--source", P, *_PRESET, "-o", "loop.mp4"],
        _then(_copy("model photo.png"), _symlink_loop("loop.mp4")))
    cli("out-folder", g, "`-o` is an existing folder", ["animate", "--source", P, *_PRESET, "-o", "out.mp4"],
        _then(_copy("model photo.png"), _mkdir("out.mp4")))
    cli("out-under-a-file", g, "`-o` under a file (notes.txt/out.mp4)",
        ["animate", "--source", P, *_PRESET, "-o", "notes.txt/out.mp4"], _then(_copy("model photo.png"), _write("notes.txt", "x")))
    cli("out-gif", g, "`-o` with a non-video extension (.gif)", ["animate", "--source", P, *_PRESET, "-o", "out.gif"],
        _copy("model photo.png"))
    cli("out-is-the-driving-clip", g, "`-o` names the driving clip", ["animate", *_DRIVE, "--driving", "clip.mp4", "-o", "clip.mp4"],
        _copy("model photo.png clip.mp4"))
    cli("out-is-the-photo", g, "`-o` names the photo", ["animate", "--source", P, *_PRESET, "-o", P], _copy("model photo.png"))
    cli("finetune-onto-a-file", g, "`finetune -o` names a file", ["finetune", "--photos", P, "--steps", "1", "--model", "./model",
                                                                 "--backend", "dlib", "-o", "notes.txt"],
        _then(_copy("model photo.png"), _write("notes.txt", "keep me\n")))
    cli("disk-full-animate", g, "a full disk while `animate` writes over a good earlier output",
        ["animate", "--source", P, "--motion-preset", "talk", "--seconds", "2", "--backend", "dlib", "--model", "./model",
         "-o", "disk/out.mp4"], _then(_copy("model photo.png"), _mkdir("disk"), _copy("", **{"seed/out.mp4": "good.mp4"})),
        mount="tmpfs:FIT+4k:disk", note="the disk holds the earlier output and 4 KB more")
    cli("disk-full-finetune", g, "a full disk while `finetune` writes the avatar",
        ["finetune", "--photos", P, "--steps", "1", "--model", "./model", "--backend", "dlib", "-o", "disk/me"],
        _then(_copy("model photo.png"), _mkdir("disk"), _mkdir("seed")), mount="tmpfs:256k:disk")
    cli("killed-writer", g, "SIGKILL while `demo` writes over a good output, then the same command again",
        ["demo", "--seconds", "20", "--crop-only", "--model", "./model", "-o", "out/out.mp4"],
        _then(_copy("model", **{"out/out.mp4": "good.mp4"})), kill_when="tempfile:out",
        rerun=["demo", "--seconds", "0.2", "--crop-only", "--model", "./model", "-o", "out/out.mp4"], expect="ok",
        outputs=("out/out.mp4",), note="the kill must leave the old output whole; the rerun must leave no temporary file")

    # ---- numbers that size memory or time
    g = "numbers"
    for id, opts, title in [("fps-1e9", ["--fps", "1e9", "--seconds", "1"], "`--fps 1e9 --seconds 1`"),
                            ("fps-nan", ["--fps", "nan"], "`--fps nan`"), ("fps-0", ["--fps", "0"], "`--fps 0`"),
                            ("fps-negative", ["--fps", "-3"], "`--fps -3`"),
                            ("seconds-1e9", ["--seconds", "1e9"], "`--seconds 1e9`"),
                            ("seconds-nan", ["--seconds", "nan"], "`--seconds nan`")]:
        cli(id, g, title, ["animate", "--source", P, "--motion-preset", "talk", "--crop-only", "--backend", "dlib",
                           "--model", "./model", *opts, "-o", "out.mp4"], _copy("model photo.png"), alone=id == "fps-1e9")
    for id, opts in [("batch-size-0", ["--batch-size", "0"]), ("steps-negative", ["--steps", "-5"]),
                     ("max-frames-0", ["--max-frames", "0"]), ("lr-inf", ["--lr", "inf"]),
                     ("face-index-negative", ["--face-index", "-1"]), ("patience-negative", ["--patience", "-1"])]:
        cli(id, g, f"`animate {' '.join(opts)}`", ["animate", *_DRIVE, "--driving", "clip.mp4", *opts, "-o", "out.mp4"],
            _copy("model photo.png clip.mp4"))
    cli("train-batch-huge", g, "`train --batch 100000`", ["train", "--config", "tiny", "--data", "cache", "--batch", "100000",
                                                          "-o", "run"], _mkdir("cache"))
    cli("eval-shots-0", g, "`eval --shots 0`", ["eval", "--videos", "clip.mp4", "--shots", "0", "-o", "rep"], _copy("clip.mp4"))
    cli("preprocess-size-5", g, "`preprocess --size 5`", ["preprocess", "clip.mp4", "--size", "5", "-o", "cache"], _copy("clip.mp4"))
    cli("verify-max-frames-0", g, "`verify --max-frames 0`", ["verify", "--max-frames", "0", "good.mp4"], _copy("good.mp4"))

    # ---- weights and avatars
    g = "weights"
    cli("model-unknown", g, "`--model` names no model", ["animate", "--source", P, *_PRESET[:-2], "--model", "nosuch", "-o", "out.mp4"],
        _copy("photo.png"))
    cli("model-truncated", g, "model.safetensors cut in half", ["animate", "--source", P, *_PRESET, "-o", "out.mp4"],
        _then(_copy("model photo.png", real=True), _truncate("model/model.safetensors", 0.5)))
    cli("model-bit-flips", g, "4 KB of flipped bytes inside a generator tensor", ["animate", "--source", P, *_PRESET, "-o", "out.mp4"],
        _then(_copy("model photo.png", real=True), _flip_tensor_bytes("model/model.safetensors", "generator.")),
        note="a checksum must catch it: 'corrupt or modified'")
    cli("model-config-garbage", g, "config.json is not JSON", ["animate", "--source", P, *_PRESET, "-o", "out.mp4"],
        _then(_copy("model photo.png", real=True), _write("model/config.json", "{not json")))
    cli("model-pickle", g, "a pickle (model.pt) as `--model`", ["animate", "--source", P, *_PRESET[:-2], "--model", "model.pt", "-o", "out.mp4"],
        _then(_copy("photo.png"), lambda d, a: __import__("pickle").dump({"x": 1}, open(d / "model.pt", "wb"))))
    cli("avatar-missing", g, "`--avatar` does not exist", ["animate", "--avatar", "nope", "--motion-preset", "talk", "--seconds", "0.2",
                                                          "-o", "out.mp4"])
    cli("avatar-truncated", g, "avatar.safetensors cut in half", ["animate", "--avatar", "avatar", "--motion-preset", "talk",
                                                                  "--seconds", "0.2", "-o", "out.mp4"],
        _then(_copy("avatar", real=True), _truncate("avatar/avatar.safetensors", 0.5)))
    cli("avatar-bit-flips", g, "4 KB of flipped bytes inside an avatar's generator", [
        "animate", "--avatar", "avatar", "--motion-preset", "talk", "--seconds", "0.2", "--crop-only", "-o", "out.mp4"],
        _then(_copy("avatar", real=True), _flip_tensor_bytes("avatar/avatar.safetensors", "generator.")))

    # ---- the other commands
    g = "other commands"
    cli("verify-text", g, "`verify` a text file", ["verify", "notes.txt"], _write("notes.txt", "hello\n"))
    cli("verify-unreadable", g, "`verify` an unreadable file", ["verify", "good.mp4"], _copy("good.mp4"), unreadable="good.mp4")
    cli("verify-missing", g, "`verify` a missing file", ["verify", "nope.mp4"])
    cli("landmarks-no-face", g, "`landmarks` on a photo without a face", ["landmarks", "noface.png", "--backend", "dlib", "-o", "lm.npz"],
        _copy("noface.png"))
    cli("landmarks-corrupt", g, "`landmarks` on random bytes", ["landmarks", "junk.mp4", "--backend", "dlib", "-o", "lm.npz"],
        lambda d, a: (d / "junk.mp4").write_bytes(os.urandom(20_000)))
    cli("preprocess-empty", g, "`preprocess` an empty folder", ["preprocess", "videos", "-o", "cache", "--workers", "1"], _mkdir("videos"))
    cli("train-no-cache", g, "`train --data` a missing cache", ["train", "--config", "tiny", "--data", "nope", "-o", "run"])
    cli("train-junk-cache", g, "`train --data` a folder of junk .npz", ["train", "--config", "tiny", "--data", "cache", "-o", "run",
                                                                        "--steps", "1"],
        _then(_mkdir("cache"), _write("cache/a.npz", os.urandom(1000))))
    cli("eval-corrupt-clip", g, "`eval` on random bytes", ["eval", "--videos", "junk.mp4", "--shots", "1", "-o", "rep"],
        lambda d, a: (d / "junk.mp4").write_bytes(os.urandom(20_000)))
    cli("unknown-option", g, "an unknown option", ["models", "--sauce"])
    cli("no-command", g, "no subcommand", [])

    # ---- the API
    g = "API"
    api("api-load-none", g, "`th.load(None)`", "th.load(None)")
    api("api-load-int", g, "`th.load(42)`", "th.load(42)")
    api("api-load-unknown", g, "`th.load('nosuch')`", "th.load('nosuch')")
    api("api-animate-int", g, "`avatar.animate(123)`", "avatar().animate(123)", _copy("avatar"))
    api("api-motion-sideways", g, "`animate(clip, motion='sideways')`", "avatar().animate('clip.mp4', motion='sideways')",
        _copy("avatar clip.mp4"))
    api("api-reference-bad", g, "`animate(clip, reference='middle')`", "avatar().animate('clip.mp4', reference='middle')",
        _copy("avatar clip.mp4"))
    api("api-max-frames-0", g, "`animate(clip, max_frames=0)`", "avatar().animate('clip.mp4', max_frames=0)",
        _copy("avatar clip.mp4"), note="a good clip must not be called undecodable")
    api("api-preset-fps-nan", g, "`animate_preset(fps=nan)`", "avatar().animate_preset('talk', seconds=1, fps=float('nan'))",
        _copy("avatar"))
    api("api-preset-fps-1e9", g, "`animate_preset(fps=1e9)`", "list(avatar().animate_preset('talk', seconds=1, fps=1e9))",
        _copy("avatar"), alone=True)
    api("api-preset-unknown", g, "`animate_preset('dance')`", "avatar().animate_preset('dance')", _copy("avatar"))
    api("api-landmarks-shape", g, "`animate_landmarks` with landmarks of shape (2, 5)",
        "list(avatar().animate_landmarks(np.zeros((2, 5), np.float32), fps=25))", _copy("avatar"))
    api("api-write-video-fps-negative", g, "`th.write_video(..., fps=-3)`",
        "th.write_video('out.mp4', [np.zeros((64, 64, 3), np.uint8)] * 2, fps=-3)")
    api("api-write-video-mixed-sizes", g, "`th.write_video` with frames of two sizes",
        "th.write_video('out.mp4', [np.zeros((64, 64, 3), np.uint8), np.zeros((80, 96, 3), np.uint8)], fps=25)")
    api("api-write-video-no-frames", g, "`th.write_video` with no frames", "th.write_video('out.mp4', [], fps=25)")
    api("api-write-video-over-input", g, "`th.write_video('clip.mp4', avatar.animate('clip.mp4'))`",
        "th.write_video('clip.mp4', avatar().animate('clip.mp4', max_frames=2, crop_only=True, progress=False))",
        _copy("avatar clip.mp4"), note="the API must refuse to overwrite its input, as the CLI does")
    api("api-avatar-save-onto-file", g, "`Avatar.save` onto a file", "avatar().save('notes.txt')",
        _then(_copy("avatar"), _write("notes.txt", "keep me\n")))
    api("api-avatar-load-missing", g, "`th.Avatar.load('nope')`", "th.Avatar.load('nope')")
    api("api-read-image-huge", g, "`th.read_image` of a 12000 x 12000 PNG", "th.read_image('huge.png')", _copy("huge.png"), alone=True)
    api("api-read-image-none", g, "`th.read_image(None)`", "th.read_image(None)")
    api("api-personalize-empty", g, "`personalize([])`", "model().personalize([])", _copy("model"))
    api("api-personalize-no-face", g, "`personalize` a photo without a face", "model().personalize(['noface.png'], progress=False)",
        _copy("model noface.png"))
    api("api-personalize-steps-negative", g, "`personalize(fine_tune_steps=-1)`",
        "model().personalize(['photo.png'], fine_tune_steps=-1)", _copy("model photo.png"))
    api("api-transfer-motion-shape", g, "`th.transfer_motion` with driving landmarks of shape (5, 3)",
        "th.transfer_motion(np.zeros((68, 2), np.float32), np.zeros((5, 3), np.float32))")
    api("api-verify-missing", g, "`th.verify_file('nope.mp4')`", "th.verify_file('nope.mp4')")
    api("api-video-reader-png", g, "`th.VideoReader` on a PNG named .mp4", "list(th.VideoReader('still.mp4'))",
        _png_named_mp4("still.mp4"))
    return c


# --------------------------------------------------------------------------------------------- running
def snapshot(folder: Path) -> dict[str, str]:
    """``{relative path: content digest}`` of everything under ``folder`` (folders and links too)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(folder))
            try:
                if p.is_symlink():
                    out[rel] = "link:" + os.readlink(p)
                elif p.is_dir():
                    out[rel] = "dir"
                else:
                    h = hashlib.sha256()
                    with open(p, "rb") as f:
                        for chunk in iter(lambda: f.read(1 << 20), b""):
                            h.update(chunk)
                    out[rel] = h.hexdigest()
            except OSError as exc:
                out[rel] = f"unreadable:{exc.errno}"
    return out


def _tree_rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` and its descendants (Linux /proc)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(entry))
            rss[int(entry)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            continue
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        total += rss.get(p, 0)
        todo += children.get(p, [])
    return total


def _run_limited(cmd: list[str], cwd: Path, env: dict, timeout: float, memory_gb: float,
                 kill_when: Callable[[], bool] | None = None) -> dict:
    """Run ``cmd``; kill its process group past ``timeout`` s or ``memory_gb`` GB, or when ``kill_when()``."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    killed = None
    out, err = [], []
    readers = [threading.Thread(target=lambda s=s, b=b: b.append(s.read()), daemon=True)
               for s, b in ((proc.stdout, out), (proc.stderr, err))]
    for r in readers:
        r.start()
    peak = 0
    while proc.poll() is None:
        time.sleep(0.2)
        rss = _tree_rss_bytes(proc.pid)
        peak = max(peak, rss)
        why = (f"killed: over {memory_gb:g} GB of memory" if rss > memory_gb * 2 ** 30 else
               f"killed: over {timeout:g} s" if time.perf_counter() - t0 > timeout else
               "killed by the harness (SIGKILL)" if kill_when is not None and kill_when() else None)
        if why:
            killed = why
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
            break
    for r in readers:
        r.join(timeout=10)
    return {"rc": proc.returncode, "stdout": b"".join(out).decode(errors="replace"),
            "stderr": b"".join(err).decode(errors="replace"), "killed": killed,
            "seconds": round(time.perf_counter() - t0, 1), "peak_gb": round(peak / 2 ** 30, 2)}


_API_RUNNER = r'''
import json, sys, traceback, warnings
code, prelude, result_path = sys.argv[1], sys.argv[2], sys.argv[3]
res = {"exception": None, "message": "", "talkinghead_error": False, "warnings": []}
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    try:
        exec(compile(prelude + "\n" + code, "<case>", "exec"), {})
    except BaseException as exc:
        from talkinghead.errors import TalkingHeadError
        res.update(exception=type(exc).__name__, message=(str(exc).strip().splitlines() or [""])[0],
                   talkinghead_error=isinstance(exc, TalkingHeadError))
        if not res["talkinghead_error"]:
            traceback.print_exc()
    res["warnings"] = [str(w.message).splitlines()[0] for w in caught
                       if not issubclass(w.category, (DeprecationWarning, PendingDeprecationWarning))][:3]
with open(result_path, "w") as f:
    json.dump(res, f)
'''


def _mount_wrapper(case: Case, d: Path, cmd: list[str]) -> tuple[list[str], str | None]:
    """The command inside a private mount namespace where ``case.mount`` needs one, or why it cannot be."""
    if case.mount is None:
        return cmd, None
    if shutil.which("unshare") is None:
        return cmd, "unshare is not available"
    ns = ["unshare", "-m", "--propagation", "private"] + ([] if os.geteuid() == 0 else ["-r"])  # -r: a user namespace
    kind, _, rest = case.mount.partition(":")
    if kind == "ro":
        folder = d / rest
        script = 'mount --bind "$1" "$1" && mount -o remount,ro,bind "$1" && shift && exec "$@"'
        wrapped = [*ns, "sh", "-c", script, "sh", str(folder), *cmd]
    else:
        size, _, folder = rest.partition(":")
        seed = d / "seed"
        if size.startswith("FIT+"):  # the seed's size plus a margin: the old output fits, a new one does not
            pages = sum(-(-p.stat().st_size // 4096) + 1 for p in seed.rglob("*"))  # tmpfs counts 4 KB pages
            size = str(4096 * (pages + 1) + _bytes(size[4:]))
        # mount, seed, snapshot before, run, snapshot after: the tmpfs is only visible in the namespace
        me = [sys.executable, str(Path(__file__).resolve())]
        script = ('mount -t tmpfs -o size="$1" tmpfs "$2" && cp -a "$3"/. "$2"/ && "$4" "$5" --_snapshot "$2" "$6.before" '
                  '&& shift 6 && "$@"; rc=$?; "$PY" "$ME" --_snapshot "$DISK" "$RES.after"; exit $rc')
        env_prefix = ["env", f"PY={me[0]}", f"ME={me[1]}", f"DISK={d / folder}", f"RES={d}.disk"]
        wrapped = [*ns, *env_prefix, "sh", "-c", script, "sh", size,
                   str(d / folder), str(seed), me[0], me[1], f"{d}.disk", *cmd]
    probe = subprocess.run([*ns, "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        return cmd, f"no private mount namespace here ({probe.stderr.strip() or probe.returncode})"
    return wrapped, None


def _bytes(s: str) -> int:
    s = s.lower()
    mult = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}.get(s[-1:], 1)
    return int(float(s.rstrip("kmg")) * mult)


def run_case(case: Case, root: Path, assets: Path, memory_gb: float) -> dict:
    d = root / "cases" / case.id
    d.mkdir(parents=True)
    if case.prepare:
        case.prepare(d, assets)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env.update(TALKINGHEAD_OFFLINE="1", TALKINGHEAD_HOME=str(root / "home"), PYTHONPATH=str(REPO),
               OMP_NUM_THREADS=env.get("OMP_NUM_THREADS", "2"), PYTHONWARNINGS="ignore::DeprecationWarning")
    result_path = root / "results" / f"{case.id}.json"
    result_path.parent.mkdir(exist_ok=True)
    if case.argv is not None:
        cmd = [sys.executable, "-m", "talkinghead", *case.argv]
    else:
        cmd = [sys.executable, "-c", _API_RUNNER, case.code, _API_PRELUDE, str(result_path)]
    cmd, skipped = _mount_wrapper(case, d, cmd)
    if case.unreadable:
        os.chmod(d / case.unreadable, 0)
        if os.geteuid() == 0:  # root reads anything: run as nobody, who may enter the case folder but not read the file
            if shutil.which("setpriv") is None:
                return {"case": case, "skipped": "running as root without setpriv to drop to an ordinary user"}
            for folder in [root, root / "cases"]:
                os.chmod(folder, 0o755)
            for folder in [d, *[p for p in d.rglob("*") if p.is_dir() and not p.is_symlink()]]:
                os.chmod(folder, 0o777)  # the outputs go here
            cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *cmd]
            env["HOME"] = str(d)
    if skipped:
        return {"case": case, "skipped": skipped}
    disk = case.mount is not None and case.mount.startswith("tmpfs")
    before = snapshot(d)
    kill_when = None
    if case.kill_when:
        watch = d / case.kill_when.split(":", 1)[1]
        names = {p.name for p in watch.iterdir()}

        def kill_when() -> bool:  # a new hidden (temporary) file with some bytes in it: the writer is writing
            try:
                return any(p.name.startswith(".") and p.name not in names and p.stat().st_size > 0 for p in watch.iterdir())
            except OSError:
                return False
    r = _run_limited(cmd, d, env, case.timeout, memory_gb, kill_when)
    after = snapshot(d)
    if disk:  # what the tmpfs held, before and after (seen from inside the namespace)
        folder = case.mount.rsplit(":", 1)[1]
        try:
            for snap, suffix in ((before, "before"), (after, "after")):
                snap.update({f"{folder}/{k}": v for k, v in json.loads(Path(f"{d}.disk.{suffix}").read_text()).items()})
        except (OSError, ValueError) as exc:
            r["stderr"] += f"\n(harness: no snapshot of the small disk: {exc})"
    rerun = None
    if case.kill_when and case.rerun:
        mid = after
        rerun = _run_limited([sys.executable, "-m", "talkinghead", *case.rerun], d, env, case.timeout, memory_gb)
        after = snapshot(d)
        r["killed_changed"] = sorted(k for k in before if mid.get(k) != before[k])
    api = json.loads(result_path.read_text()) if case.code is not None and result_path.is_file() else None
    return {"case": case, "run": r, "rerun": rerun, "before": before, "after": after, "api": api}


_PROGRESS = re.compile(r"\d+%\|")  # a tqdm progress bar


def _first_line(stderr: str, stdout: str = "", succeeded: bool = True) -> str:
    """The line that says what happened: the error, else the traceback's last line, else a warning,
    else the last line the command printed (the first, where it failed: ``usage: ...``)."""
    def lines_of(text):
        return [line.strip() for line in re.split(r"[\r\n]+", text) if line.strip() and not _PROGRESS.search(line)]
    err, out = lines_of(stderr), lines_of(stdout)
    for words in (": error:", "Traceback"):
        hits = [line for line in err + out if words in line]
        if hits and words == ": error:":
            return hits[0]
        if hits:
            tb = [line for line in err if not line.startswith(("File ", "^", "~", "Traceback"))]
            return tb[-1] if tb else hits[0]
    warned = [line for line in err if "warning" in line.lower()]
    return (warned or (out[-1:] if succeeded else out[:1]) or err[-1:] or [""])[0]


def judge(res: dict) -> dict:
    """The table row of one result, with ``passed`` and the reasons it failed."""
    case: Case = res["case"]
    row = {"id": case.id, "group": case.group, "kind": case.kind, "title": case.title, "expect": case.expect,
           "note": case.note}
    if "skipped" in res:
        return {**row, "outcome": "skipped", "message": res["skipped"], "traceback": "", "files": "", "passed": None,
                "problems": []}
    r, api = res["run"], res["api"]
    problems = []
    text = r["stderr"] + r["stdout"]
    traceback = "Traceback (most recent call last)" in text
    warned = any("warning" in line.lower() for line in text.splitlines())
    if case.kind == "CLI":
        outcome = r["killed"] or f"exit {r['rc']}"
        message = _first_line(r["stderr"], r["stdout"], succeeded=r["rc"] == 0)
        failed = r["rc"] != 0
    else:
        if api is None:
            outcome, message, failed = r["killed"] or f"process died (exit {r['rc']})", _first_line(r["stderr"]), True
        else:
            outcome = api["exception"] or "returned"
            message = api["message"] or "; ".join(api["warnings"])
            failed = api["exception"] is not None
            warned = warned or bool(api["warnings"])
            if failed and not api["talkinghead_error"]:
                traceback = True  # a raw exception: the user gets a traceback
    if r["killed"]:
        problems.append(r["killed"].replace("killed: ", "") if "harness" not in r["killed"] else "")
    if case.expect == "error" and not failed:
        problems.append("exit 0" if case.kind == "CLI" else "no error")
    if case.expect in ("ok", "warn") and failed and not case.kill_when:
        problems.append("failed on a valid input")
    if case.expect == "warn" and not failed and not warned:
        problems.append("silent (no warning)")
    if case.expect != "error" and not failed and [o for o in case.outputs if o not in res["after"]]:
        problems.append("no output written")
    if traceback:
        problems.append("traceback")
    before, after = res["before"], res["after"]
    allowed = set(case.outputs) if case.expect != "error" else set()
    changed = sorted(k for k in before if k not in allowed and after.get(k) != before[k]
                     and not before[k] == "dir" == after.get(k))
    new = sorted(k for k in after if k not in before and k not in allowed)
    hidden_new = [k for k in new if any(part.startswith(".") for part in Path(k).parts)]
    if case.kill_when:
        if not r["killed"]:
            problems.append("the writer ended before it could be killed")
        r_killed_changed = [k for k in r.get("killed_changed", []) if k in before]
        if r_killed_changed:
            problems.append("the kill changed " + ", ".join(r_killed_changed))
        rerun = res["rerun"]
        if rerun and rerun["rc"] != 0:
            problems.append(f"the rerun exited {rerun['rc']}")
        if rerun and "Traceback (most recent" in rerun["stderr"]:
            problems.append("traceback in the rerun")
        outcome = f"{outcome}; rerun exit {rerun['rc'] if rerun else '?'}"
        message = message or (_first_line(rerun["stderr"], rerun["stdout"], rerun["rc"] == 0) if rerun else "")
    if changed:
        problems.append("changed/lost: " + ", ".join(changed))
    left = new if case.expect == "error" else hidden_new
    if left:
        problems.append("left: " + ", ".join(left[:3]) + (" ..." if len(left) > 3 else ""))
    files = "; ".join(p for p in problems if p.startswith(("changed", "left", "the kill"))) or "intact"
    problems = [p for p in problems if p]
    return {**row, "outcome": outcome, "message": message, "traceback": "yes" if traceback else "no", "files": files,
            "passed": not problems, "problems": problems, "seconds": r["seconds"], "peak_gb": r["peak_gb"]}


def _cell(s: str, limit: int = 160) -> str:
    s = " ".join(str(s).split()).replace("|", "\\|")
    return s if len(s) <= limit else s[:limit - 3] + "..."


def markdown(rows: list[dict], seconds: float) -> str:
    failed = [r for r in rows if r["passed"] is False]
    skipped = [r for r in rows if r["passed"] is None]
    lines = [
        "# Faults and bad inputs",
        "",
        "Every fault and misuse we know of, tried on the CLI and the API by `scripts/fault_table.py` (rerun it with",
        "`.venv/bin/python scripts/fault_table.py -o docs/faults.md`). Each case runs in its own process and folder",
        "of tiny inputs, offline, under a time and memory limit. **Result**: the CLI's exit status or the API's",
        "exception; **message**: its first line; **traceback**: whether one appeared (for the API: whether the",
        "exception is a raw one rather than a `TalkingHeadError`); **files**: whether a file that was there before",
        "was changed or lost, or the case left a temporary or partial file. Expected: *error* (a clean refusal),",
        "*ok* (an odd but valid input, which must work) or *warn* (works, and a warning says what was wrong).",
        "",
        f"{len(rows)} cases, {len(rows) - len(failed) - len(skipped)} pass, {len(failed)} fail, {len(skipped)} skipped; "
        f"{seconds:.0f} s.",
        "",
    ]
    group = None
    for r in rows:
        if r["group"] != group:
            group = r["group"]
            lines += ["", f"## {group}", "",
                      "| case | tried | expected | result | message | traceback | files | verdict |",
                      "|---|---|---|---|---|---|---|---|"]
        verdict = "skipped" if r["passed"] is None else "pass" if r["passed"] else "**FAIL**: " + "; ".join(r["problems"])
        tried = r["title"] + (f" ({r['note']})" if r["note"] else "")
        lines.append(f"| `{r['id']}` | {r['kind']}: {_cell(tried, 200)} | {r['expect']} | {_cell(r['outcome'])} | "
                     f"{_cell(r['message'])} | {r['traceback']} | {_cell(r['files'], 80)} | {_cell(verdict, 200)} |")
    return "\n".join(lines) + "\n"


def select(all_cases: list[Case], words: list[str] | None) -> list[Case]:
    return [c for c in all_cases if not words or any(w in c.id for w in words)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-o", "--output", default=None, help="markdown table to write (e.g. docs/faults.md)")
    p.add_argument("--json", default=None, help="also write the rows as JSON")
    p.add_argument("-k", action="append", default=None, metavar="WORD", help="only cases whose id contains WORD")
    p.add_argument("--list", action="store_true", help="list the cases and exit")
    p.add_argument("--keep", action="store_true", help="keep the work folder (printed)")
    p.add_argument("--memory-gb", type=float, default=MEMORY_LIMIT_GB, help="memory limit per case")
    p.add_argument("-j", "--jobs", type=int, default=2, help="cases run at once (the memory-hungry ones run alone)")
    p.add_argument("--_snapshot", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args._snapshot:
        Path(args._snapshot[1]).write_text(json.dumps(snapshot(Path(args._snapshot[0]))))
        return 0
    chosen = select(cases(), args.k)
    if args.list:
        for c in chosen:
            print(f"{c.id:34s} {c.kind} {c.expect:5s} {c.title}")
        print(f"{len(chosen)} cases")
        return 0
    root = Path(tempfile.mkdtemp(prefix="talkinghead-faults-"))
    t0 = time.perf_counter()
    try:
        print(f"making the inputs in {root} ...", flush=True)
        assets = make_assets(root)
        print(f"inputs made in {time.perf_counter() - t0:.0f} s", flush=True)
        done = []

        def one(case: Case) -> dict:
            row = judge(run_case(case, root, assets, args.memory_gb))
            done.append(case.id)
            verdict = "skip" if row["passed"] is None else "pass" if row["passed"] else "FAIL " + "; ".join(row["problems"])
            print(f"[{len(done):2d}/{len(chosen)}] {case.id:32s} {row.get('seconds', 0):5.1f} s {row.get('peak_gb', 0):4.1f} GB "
                  f"{row['outcome']:>12s}  {verdict}  | {row['message'][:90]}", flush=True)
            return row

        with ThreadPoolExecutor(max(1, args.jobs)) as pool:  # each case is its own process: threads are enough
            together = dict(zip([c.id for c in chosen if not c.alone], pool.map(one, [c for c in chosen if not c.alone])))
        by_id = {**together, **{c.id: one(c) for c in chosen if c.alone}}
        rows = [by_id[c.id] for c in chosen]
        seconds = time.perf_counter() - t0
        text = markdown(rows, seconds)
        if args.output:
            Path(args.output).parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(args.output).with_name(f".{Path(args.output).name}.tmp")
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, args.output)
            print(f"wrote {args.output}")
        if args.json:
            Path(args.json).write_text(json.dumps(rows, indent=1, default=str))
        failed = [r for r in rows if r["passed"] is False]
        print(f"{len(rows)} cases in {seconds:.0f} s: {len(failed)} fail" + (": " + ", ".join(r["id"] for r in failed) if failed else ""))
        return 1 if failed else 0
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
