"""Saving and finding model weights: ``config.json`` + ``model.safetensors`` in one folder.

Weights are never unpickled: only safetensors files are read, and ``.pt`` / ``.pth`` / ``.bin`` /
``.ckpt`` / ``.pkl`` files (or anything that looks like a pickle or a torch zip archive) are refused
with :class:`~talkinghead.errors.WeightsError`.

Lookup order for ``load_pretrained(name_or_dir)``:

1. an explicit path: a folder holding ``config.json`` and ``model.safetensors``, or one of those two
   files (its folder is used);
2. ``<repo root>/pretrained/<name>``, found relative to this package (source checkouts and editable
   installs);
3. ``<sys.prefix>/share/talkinghead/pretrained/<name>``, where ``pip install .`` (not editable) puts
   the shipped weights;
4. ``$TALKINGHEAD_HOME/<name>`` (default ``~/.cache/talkinghead/<name>``);
5. a download into that cache folder, only for names listed in :data:`PRETRAINED_URLS` and unless
   ``TALKINGHEAD_OFFLINE=1``. The table is empty for now, so an unknown name fails with a message
   saying where to put the files.

A name is a bare word such as ``paper-256-vox2``; anything with a path separator, a leading ``.`` or
``~``, or a file extension is taken as a path.

``config.json`` holds ``format_version`` (:data:`FORMAT_VERSION`), ``class_name``, ``family`` (the
generator family, :mod:`talkinghead.models.families`; folders without it hold the paper's), ``dtype`` (of the
stored tensors) and ``config`` (:meth:`ModelConfig.to_dict`). Tensors stored in half precision are cast
back to float32 on load. ``int8_prefixes`` lists sub-networks whose weight matrices are stored as int8
with one float32 scale per output channel (``<key>.int8_scale``); loading dequantizes them. The shipped
model stores its discriminator that way: D only initialises fine-tuning, and the size limit is tight.

``sha256`` maps ``model.safetensors`` to the SHA-256 of its bytes, recorded at save time and checked at
load (35 ms for the shipped 38 MB), after the checks that give a more specific message (a truncated
file, missing tensors): a flipped bit inside a tensor loads as valid numbers, and only the hash can
tell. Folders saved before the field existed load unchecked. Avatars record theirs the same way.
"""
from __future__ import annotations

import dataclasses

import hashlib
import json
import os
import re
import struct
import sys
from pathlib import Path
from typing import Any

from .atomic import atomic_path, atomic_paths
from .errors import WeightsError

__all__ = [
    "FORMAT_VERSION",
    "CONFIG_NAME",
    "WEIGHTS_NAME",
    "PRETRAINED_URLS",
    "save_pretrained",
    "load_pretrained",
    "resolve_pretrained",
    "cache_dir",
    "available_pretrained",
    "repo_pretrained_dir",
    "installed_pretrained_dir",
    "read_safetensors",
    "check_tensors",
    "serialize_safetensors",
    "sha256_file",
    "recorded_sha256",
    "check_sha256",
    "is_offline",
]

# 1: the first format; 2: adds ``family``, ``sha256`` and the warp family's config fields (a reader of
# format 1 would fail on them with a less helpful message). Folders of format 1 still load.
FORMAT_VERSION = 2
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
# name -> {file name: (url, sha256)}; files are downloaded into cache_dir()/name.
PRETRAINED_URLS: dict[str, dict[str, tuple[str, str]]] = {}

_PICKLE_SUFFIXES = {".pt", ".pth", ".bin", ".ckpt", ".pkl", ".pickle", ".tar", ".npy", ".npz"}
_MODEL_CLASSES = ("TalkingHeadModel",)


# ---- where weights live ------------------------------------------------------------------------------
def repo_pretrained_dir() -> Path:
    """``<repo root>/pretrained``: the folder beside the ``talkinghead`` package."""
    return Path(__file__).resolve().parents[1] / "pretrained"


def installed_pretrained_dir() -> Path:
    """``<sys.prefix>/share/talkinghead/pretrained``: the shipped weights of a non-editable install
    (``[options.data_files]`` in setup.cfg)."""
    return Path(sys.prefix) / "share" / "talkinghead" / "pretrained"


def available_pretrained() -> list[str]:
    """Names of the weight folders found locally (see the lookup order; no downloads)."""
    names = set(PRETRAINED_URLS)
    for root in (repo_pretrained_dir(), installed_pretrained_dir(), cache_dir()):
        if root.is_dir():
            names.update(d.name for d in root.iterdir() if (d / CONFIG_NAME).is_file())
    return sorted(names)


def cache_dir() -> Path:
    """``$TALKINGHEAD_HOME`` or ``~/.cache/talkinghead``."""
    home = os.environ.get("TALKINGHEAD_HOME")
    return Path(home).expanduser() if home else Path.home() / ".cache" / "talkinghead"


def is_offline() -> bool:
    """True when ``$TALKINGHEAD_OFFLINE`` is ``1``, ``true``, ``yes`` or ``on`` (any case): no downloads.

    The one rule for every download in the package (weights here, VGG trunks, face-alignment files).
    """
    return os.environ.get("TALKINGHEAD_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def _looks_like_path(s: str) -> bool:
    return (
        os.sep in s
        or (os.altsep is not None and os.altsep in s)
        or s.startswith((".", "~"))
        or Path(s).suffix != ""
    )


def _pickle_magic(path: Path) -> bool:
    """True for a pickle (protocol >= 2 starts with 0x80) or a torch zip archive ("PK\\x03\\x04")."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        return False
    return head[:1] == b"\x80" or head == b"PK\x03\x04"


def _refuse_pickle(path: Path, sniff: bool = True) -> None:
    """Raise for pickle-like extensions, or (``sniff``) content. A ``.safetensors`` file is sniffed only
    once its header fails to parse: its first byte is the header length's low byte and may be 0x80."""
    sniff = sniff and path.suffix.lower() != ".safetensors"
    if path.suffix.lower() in _PICKLE_SUFFIXES or (sniff and path.is_file() and _pickle_magic(path)):
        raise _pickle_error(path)


def _pickle_error(path: Path) -> WeightsError:
    return WeightsError(
        f"{path} is a pickle-based checkpoint, which talkinghead never loads (unpickling can run code): "
        f"convert it to {WEIGHTS_NAME} with safetensors and pass its folder."
    )


def resolve_pretrained(name_or_dir: str | os.PathLike) -> Path:
    """The folder holding ``config.json`` + ``model.safetensors`` for a path or a name (module docstring
    gives the order); downloads only for names in :data:`PRETRAINED_URLS`."""
    s = os.fspath(name_or_dir)
    path = Path(s).expanduser()
    if path.exists() or _looks_like_path(s):
        if not path.exists():
            raise WeightsError(f"{path} does not exist: pass a folder holding {CONFIG_NAME} and {WEIGHTS_NAME}.")
        if path.is_file():
            _refuse_pickle(path)
            if path.name != CONFIG_NAME and path.suffix != ".safetensors":
                raise WeightsError(f"{path} is not a weights folder: pass a folder holding {CONFIG_NAME} and {WEIGHTS_NAME}.")
            path = path.parent
        return path

    candidates = [repo_pretrained_dir() / s, installed_pretrained_dir() / s, cache_dir() / s]
    for cand in candidates:
        if (cand / CONFIG_NAME).is_file():
            return cand
    if s in PRETRAINED_URLS:
        return _download(s, cache_dir() / s)
    raise WeightsError(
        f"No weights named {s!r} in {', '.join(map(str, candidates))}: put {CONFIG_NAME} and {WEIGHTS_NAME} "
        f"in {candidates[2]} (or set $TALKINGHEAD_HOME), or pass the folder's path."
    )


def _download(name: str, dest: Path) -> Path:
    """Fetch the files of ``PRETRAINED_URLS[name]`` into ``dest``, checking their SHA-256."""
    if is_offline():
        raise WeightsError(
            f"Weights {name!r} are not in {dest} and TALKINGHEAD_OFFLINE is set: download "
            f"{', '.join(PRETRAINED_URLS[name])} into {dest} by hand."
        )
    import urllib.request

    for fname, (url, sha256) in PRETRAINED_URLS[name].items():
        target = dest / fname
        if target.is_file():
            continue
        digest = hashlib.sha256()
        try:
            with atomic_path(target) as tmp, urllib.request.urlopen(url, timeout=60) as resp, open(tmp, "wb") as f:
                for chunk in iter(lambda: resp.read(1 << 20), b""):
                    digest.update(chunk)
                    f.write(chunk)
                if sha256 and digest.hexdigest() != sha256:
                    raise WeightsError(f"{url} downloaded with the wrong checksum: try again or fetch it into {target} by hand.")
        except OSError as exc:
            raise WeightsError(f"Could not download {url} ({exc}): fetch it into {target} by hand.") from exc
    return dest


# ---- safetensors, read safely -----------------------------------------------------------------------
def _check_safetensors(path: Path) -> dict[str, Any]:
    """Validate the header and the file size before safetensors maps the file; return the header."""
    size = path.stat().st_size
    try:
        return _parse_safetensors_header(path, size)
    except WeightsError:
        if _pickle_magic(path):
            raise _pickle_error(path) from None
        raise


def _parse_safetensors_header(path: Path, size: int) -> dict[str, Any]:
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise WeightsError(f"{path} is truncated (only {size} bytes): save or download it again.")
        (n,) = struct.unpack("<Q", head)
        if n < 2 or n > size - 8 or n > 100_000_000:
            raise WeightsError(f"{path} is truncated or not a safetensors file (bad header size): save or download it again.")
        try:
            header = json.loads(f.read(n).decode("utf-8"))
            if not isinstance(header, dict):
                raise ValueError("header is not a JSON object")
            ends = [int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"]
        except (ValueError, KeyError, TypeError, IndexError, AttributeError):
            raise WeightsError(f"{path} has a corrupt safetensors header: save or download it again.") from None
    expected = 8 + n + max(ends, default=0)
    if size != expected:
        raise WeightsError(
            f"{path} is truncated or corrupt ({size} bytes, the header promises {expected}): save or download it again."
        )
    return header


def read_safetensors(path: str | os.PathLike) -> dict[str, "Any"]:
    """Tensors of a safetensors file on the CPU; refuses pickles and truncated or corrupt files."""
    from safetensors.torch import load_file

    path = Path(path)
    _refuse_pickle(path)
    if not path.is_file():
        raise WeightsError(f"{path} is missing: save the model again or pass the right folder.")
    _check_safetensors(path)
    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:  # safetensors raises its own SafetensorError and others
        raise WeightsError(f"{path} could not be read as safetensors ({exc}): save or download it again.") from None


# ---- integrity ----------------------------------------------------------------------------------------
def serialize_safetensors(tensors: dict, metadata: dict | None = None) -> tuple[bytes, str]:
    """``(the file's bytes, their sha256)``: written by the caller through :mod:`talkinghead.atomic`, so a
    full disk is an ordinary OSError there (``save_file`` hides it in its own error type)."""
    from safetensors.torch import save

    data = save(tensors, metadata=metadata)
    return data, hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def recorded_sha256(meta: dict, name: str, where: str | os.PathLike) -> str | None:
    """The sha256 that ``meta`` (``config.json`` or ``avatar.json``, read from ``where``) records for the
    file ``name``; None for folders saved before hashes were recorded."""
    hashes = meta.get("sha256")
    if hashes is None:
        return None
    digest = hashes.get(name) if isinstance(hashes, dict) else None
    if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise WeightsError(f"{where} has an invalid sha256 entry for {name}: re-download or re-save it.")
    return digest


def check_sha256(path: str | os.PathLike, expected: str | None) -> None:
    """WeightsError when the file's bytes are not the ones saved (``expected`` None: nothing recorded)."""
    if expected is not None and sha256_file(path) != expected:
        raise WeightsError(f"{path} is corrupt or modified (sha256 mismatch): re-download or re-save it.")


# ---- save / load --------------------------------------------------------------------------------------
INT8_SCALE = ".int8_scale"


def _quantize_int8(t):
    """Symmetric per-output-channel int8: ``(q int8, scale float32 (C_out,))`` with ``t ~= q * scale``."""
    import torch

    flat = t.float().reshape(t.shape[0], -1)
    scale = flat.abs().amax(dim=1).clamp_min(1e-12) / 127.0
    q = torch.round(flat / scale[:, None]).clamp(-127, 127).to(torch.int8).reshape(t.shape)
    return q, scale


def _dequantize(tensors: dict) -> dict:
    out = {}
    for key, t in tensors.items():
        if key.endswith(INT8_SCALE):
            continue
        scale = tensors.get(key + INT8_SCALE)
        if scale is not None:
            t = (t.float().reshape(t.shape[0], -1) * scale.float()[:, None]).reshape(t.shape)
        out[key] = t
    return out


def save_pretrained(model, directory: str | os.PathLike, dtype=None, int8_prefixes: tuple[str, ...] = ()) -> Path:
    """Write ``model.safetensors`` and ``config.json`` (with the weights' sha256) into ``directory``,
    together and atomically: a failed save (a full disk) keeps the folder's earlier files.

    ``dtype`` (e.g. ``torch.float16``) casts floating-point tensors for storage; loading casts them back
    to float32. ``int8_prefixes`` (e.g. ``("discriminator.",)``) stores the conv/linear weights under
    those prefixes as per-channel int8. Returns the folder.
    """
    import torch

    from .io import check_output_folder

    if dtype is not None and not dtype.is_floating_point:
        raise ValueError(f"save_pretrained dtype must be a floating-point dtype, got {dtype}")
    directory = check_output_folder(directory, f"Cannot save the model to {directory}", "choose another folder")
    tensors = {}
    for key, t in model.state_dict().items():
        t = t.detach().to("cpu")
        if t.is_floating_point() and t.dim() >= 2 and key.startswith(tuple(int8_prefixes)):
            t, scale = _quantize_int8(t)
            tensors[key + INT8_SCALE] = scale.contiguous()
        elif dtype is not None and t.is_floating_point():
            t = t.to(dtype)
        tensors[key] = t.contiguous().clone()
    stored = dtype if dtype is not None else torch.float32
    meta = {
        "format_version": FORMAT_VERSION,
        "class_name": type(model).__name__,
        "family": model.config.generator,  # the generator family: what load_pretrained builds
        "dtype": str(stored).replace("torch.", ""),
        "config": model.config.to_dict(),
    }
    if int8_prefixes:
        meta["int8_prefixes"] = list(int8_prefixes)
    if getattr(model, "training_info", None):
        meta["training"] = model.training_info
    data, digest = serialize_safetensors(tensors, {"format": "pt", "talkinghead_format_version": str(FORMAT_VERSION)})
    meta["sha256"] = {WEIGHTS_NAME: digest}
    with atomic_paths([directory / WEIGHTS_NAME, directory / CONFIG_NAME], name=directory) as (weights, config):
        weights.write_bytes(data)
        config.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return directory


def _training_info(path: Path, meta: dict) -> dict:
    """config.json's optional ``"training"`` object (loss weights and steps of the run)."""
    from .losses import LossWeights

    info = meta.get("training", {})
    if not isinstance(info, dict):
        raise WeightsError(f"{path} has a 'training' entry that is not an object: save the model again.")
    try:
        LossWeights.from_dict(info.get("loss_weights", {}))
    except (ValueError, TypeError) as exc:
        raise WeightsError(f"{path} holds invalid loss weights ({exc}): save the model again.") from None
    return info


def _read_config(path: Path):
    """``(ModelConfig, training record)`` from config.json, checked before any tensor is read."""
    from .config import ModelConfig

    if not path.is_file():
        raise WeightsError(f"{path} is missing: a weights folder needs {CONFIG_NAME} next to {WEIGHTS_NAME}.")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise WeightsError(f"{path} is not valid JSON ({exc}): save the model again.") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("config"), dict):
        raise WeightsError(f"{path} has no 'config' object: save the model again with talkinghead.")
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise WeightsError(
            f"{path} has format_version {version!r}, this talkinghead reads up to {FORMAT_VERSION}: upgrade talkinghead."
        )
    if meta.get("class_name") not in _MODEL_CLASSES:
        raise WeightsError(f"{path} describes a {meta.get('class_name')!r}, not a TalkingHeadModel.")
    from .config import GENERATOR_FAMILIES

    # folders written before generator families existed have neither field: the paper's generator
    family = meta.get("family", meta["config"].get("generator", "paper"))
    if family not in GENERATOR_FAMILIES:
        raise WeightsError(f"{path} holds a generator of family {family!r}, which this talkinghead does not know "
                           f"({', '.join(GENERATOR_FAMILIES)}): upgrade talkinghead.")
    if meta["config"].get("generator", "paper") != family:
        raise WeightsError(f"{path} names generator family {family!r} but its config builds "
                           f"{meta['config'].get('generator', 'paper')!r}: save the model again.")
    newer = sorted(set(meta["config"]) - {f.name for f in dataclasses.fields(ModelConfig)})
    if newer:  # fields a later talkinghead added (e.g. a prior): the file is fine, this library is older
        raise WeightsError(f"{path} uses model options this talkinghead does not know ({', '.join(newer)}): "
                           "upgrade talkinghead.")
    try:
        cfg = ModelConfig.from_dict(meta["config"])
    except (ValueError, TypeError) as exc:
        raise WeightsError(f"{path} holds an invalid model config ({exc}): save the model again.") from None
    training = _training_info(path, meta)
    videos = training.get("videos")
    if videos is not None and (not isinstance(videos, list) or len(videos) != cfg.num_videos
                               or not all(isinstance(v, str) for v in videos)):
        raise WeightsError(f"{path} lists training videos that do not match its {cfg.num_videos} "
                           "discriminator rows: save the model again.")
    return cfg, training


def check_tensors(path: Path, tensors: dict, expected: dict, config_name: str = CONFIG_NAME) -> None:
    """WeightsError naming missing, unexpected and wrongly shaped tensors of ``path`` (one line)."""
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong = [
        f"{k} {tuple(tensors[k].shape)} vs {tuple(expected[k].shape)}"
        for k in sorted(set(tensors) & set(expected))
        if tuple(tensors[k].shape) != tuple(expected[k].shape)
    ]

    def few(items: list[str]) -> str:
        return ", ".join(items[:4]) + (f" and {len(items) - 4} more" if len(items) > 4 else "")

    problems = []
    if missing:
        problems.append(f"missing {few(missing)}")
    if unexpected:
        problems.append(f"unexpected {few(unexpected)}")
    if wrong:
        problems.append(f"wrong shapes (file vs config) {few(wrong)}")
    if problems:
        raise WeightsError(f"{path} does not match its {config_name}: {'; '.join(problems)}.")


def load_pretrained(name_or_dir: str | os.PathLike, map_location="cpu"):
    """A :class:`~talkinghead.models.TalkingHeadModel` in eval mode, float32, on ``map_location``."""
    from .models import TalkingHeadModel

    folder = resolve_pretrained(name_or_dir)
    weights = folder / WEIGHTS_NAME
    if not weights.is_file():
        for other in sorted(folder.iterdir()) if folder.is_dir() else []:
            if other.suffix.lower() in _PICKLE_SUFFIXES:
                _refuse_pickle(other)
        raise WeightsError(f"{weights} is missing: put the model's {WEIGHTS_NAME} next to its {CONFIG_NAME}.")
    cfg, training = _read_config(folder / CONFIG_NAME)
    digest = recorded_sha256(json.loads((folder / CONFIG_NAME).read_text(encoding="utf-8")), WEIGHTS_NAME,
                             folder / CONFIG_NAME)
    from .devices import torch_threads

    tensors = _dequantize(read_safetensors(weights))
    with torch_threads(1):  # the random init is overwritten below: one thread builds it fastest
        model = TalkingHeadModel(cfg)
    expected = model.state_dict()
    check_tensors(weights, tensors, expected)
    check_sha256(weights, digest)  # last: the checks above name what is wrong, this only that something is
    # half-precision storage comes back as the model's dtype (float32)
    tensors = {k: (v.to(expected[k].dtype) if v.is_floating_point() else v) for k, v in tensors.items()}
    model.load_state_dict(tensors, strict=True)
    model.training_info = training
    return model.to(map_location).eval()
