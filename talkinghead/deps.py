"""The packages each command needs, checked before any work starts.

Everything a shipped command always needs is in ``install_requires`` (``setup.cfg``), so
``pip install -c constraints.txt .`` runs every command. :data:`REQUIRED` maps each module the package
imports to its pip name (``tests/test_deps.py`` checks it against every import in ``talkinghead/`` and
against ``setup.cfg``); :data:`OPTIONAL` lists the ones some options need (the ``mediapipe`` backend)
or that are used where present (``lpips``, ``pytorch-fid``, with a fallback or an "n/a").

:func:`check_command` is what ``talkinghead`` runs after parsing the command line and before the
command: a missing package (a ``--no-deps`` install, a broken environment) or an option whose optional
package is absent is one line naming the package and the pip command, exit status 2, instead of a
traceback after minutes of work. Presence is checked without importing (``importlib.util.find_spec``),
except for the modules a command imports only at its end (eval's plots), which are imported.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
from dataclasses import dataclass

from .errors import DependencyError


@dataclass(frozen=True)
class Dependency:
    module: str   # the top-level module imported (or looked up with find_spec)
    package: str  # its pip name
    install: str  # the pip command that installs it

    def missing_message(self, what: str, why: str = "is not installed") -> str:
        return f"{what} needs the {self.package} package, which {why}: run `{self.install}`."


def _dep(module: str, package: str, install: str | None = None) -> Dependency:
    return Dependency(module, package, install or f"pip install {package}")


# module -> pip name of every package in install_requires (the imports of talkinghead/ and the packages
# whose files are read without importing them: face_recognition_models, stlpips_pytorch)
REQUIRED: dict[str, Dependency] = {d.module: d for d in (
    _dep("torch", "torch", "pip install torch (CPU build: pip install -c constraints.txt torch)"),
    _dep("numpy", "numpy"),
    _dep("scipy", "scipy"),
    _dep("cv2", "opencv-python"),
    _dep("tqdm", "tqdm"),
    _dep("safetensors", "safetensors"),
    _dep("imageio_ffmpeg", "imageio-ffmpeg"),
    _dep("skimage", "scikit-image"),
    _dep("dlib", "dlib-bin"),
    _dep("face_recognition_models", "face-recognition-models", "pip install --no-deps face-recognition-models"),
    _dep("face_alignment", "face-alignment"),
    _dep("stlpips_pytorch", "stlpips-pytorch", "pip install --no-deps stlpips-pytorch==0.0.2"),
    _dep("PIL", "pillow"),
    _dep("matplotlib", "matplotlib"),
    # content credentials (talkinghead.credentials): every output is signed. Not in COMMAND_NEEDS: where
    # c2pa-python does not import (no wheel for the platform) outputs are still written, watermarked and
    # tagged, with one warning line, as the credentials' issue asks
    _dep("c2pa", "c2pa-python"),
    _dep("cryptography", "cryptography"),  # the installation's signing key and certificate
)}

# optional: needed by one option, or used where present
OPTIONAL: dict[str, Dependency] = {d.module: d for d in (
    _dep("mediapipe", "mediapipe",
         "pip install --no-deps mediapipe==0.10.21 'protobuf<5' absl-py attrs flatbuffers"),
    _dep("lpips", "lpips"),
    _dep("pytorch_fid", "pytorch-fid"),
    _dep("gradio", "gradio", "pip install 'talkinghead[web]'"),  # the web command's page
    _dep("pyvirtualcam", "pyvirtualcam", "pip install 'talkinghead[live]'"),  # live's virtual camera, where present
)}

_CORE = ("numpy", "torch", "safetensors", "PIL", "cv2", "tqdm")
_FACES = ("dlib", "face_recognition_models", "scipy")
_VIDEO_OUT = ("imageio_ffmpeg",)
_CONTENT_LOSS = ("stlpips_pytorch",)

# what each command needs whatever its options (find_spec), and what it imports only at its end (imported now)
COMMAND_NEEDS: dict[str, tuple[str, ...]] = {
    "demo": _CORE + _FACES + _VIDEO_OUT + ("skimage",),
    "animate": _CORE + _FACES + _VIDEO_OUT + _CONTENT_LOSS,
    "finetune": _CORE + _FACES + _VIDEO_OUT + _CONTENT_LOSS,
    "landmarks": _CORE + _FACES + _VIDEO_OUT,
    "preprocess": _CORE + _FACES,
    "train": _CORE + _FACES + _VIDEO_OUT + _CONTENT_LOSS,
    "eval": _CORE + _FACES + _VIDEO_OUT + _CONTENT_LOSS + ("matplotlib",),
    "bench": _CORE + _FACES + _VIDEO_OUT + _CONTENT_LOSS,
    "verify": ("numpy", "PIL", "cv2") + _VIDEO_OUT,
    "models": ("torch", "numpy"),
    "live": _CORE + _FACES + _VIDEO_OUT,
    "web": _CORE + _FACES + _VIDEO_OUT + _CONTENT_LOSS + ("skimage", "matplotlib"),  # + gradio, imported below
}
COMMAND_IMPORTS: dict[str, tuple[str, ...]] = {
    "eval": ("matplotlib.figure",),  # the report's plots, drawn after every clip is evaluated
    "web": ("gradio",),  # an optional extra: missing or broken, one line before the model loads
}


def _dependency(module: str) -> Dependency:
    top = module.split(".")[0]
    return REQUIRED.get(top) or OPTIONAL.get(top) or _dep(top, top)


def is_installed(module: str) -> bool:
    """Whether ``module`` is found on the path (without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package that does not import, or a module without a spec
        return False


def require(module: str, what: str, import_it: bool = False) -> None:
    """Raise :class:`DependencyError` naming the package and the pip command when ``module`` is not
    installed (``import_it``: or does not import). ``what`` begins the sentence: who needs it
    (``"This command"``, ``"--backend mediapipe"``)."""
    dep = _dependency(module)
    if not is_installed(dep.module):
        raise DependencyError(dep.missing_message(what))
    if import_it:
        try:
            importlib.import_module(module)
        except Exception as exc:  # ImportError, or a broken build raising something else
            first = (str(exc).splitlines() or [""])[0]
            raise DependencyError(dep.missing_message(what, f"does not import ({type(exc).__name__}: {first})")) from None


def check_backend(backend: str | None) -> None:
    """The packages (and, offline, the weights) a landmark backend chosen by name needs."""
    if backend == "mediapipe":
        require("mediapipe", "--backend mediapipe", import_it=True)  # imported later anyway
    elif backend == "face-alignment":
        require("face_alignment", "--backend face-alignment")
        from .hub import is_offline
        from .landmarks.detectors import (FA_DETECTOR_FILE, FA_LANDMARK_FILE, _fa_missing_error,
                                          face_alignment_weights_dir)

        d = face_alignment_weights_dir()
        missing = [f for f in (FA_DETECTOR_FILE, FA_LANDMARK_FILE) if not (d / f).is_file()]
        if missing and is_offline():
            raise _fa_missing_error(d, missing, "TALKINGHEAD_OFFLINE is set")


def check_command(args: argparse.Namespace) -> None:
    """Everything ``talkinghead <command>`` with these options needs, before it starts."""
    command = getattr(args, "command", None)
    what = "This command"  # the CLI prints "talkinghead CMD: error: " before the message
    for module in COMMAND_NEEDS.get(command, ()):
        require(module, what)
    for module in COMMAND_IMPORTS.get(command, ()):
        require(module, what, import_it=True)
    backend = getattr(args, "backend", None) or getattr(args, "detector", None)
    if isinstance(backend, str):
        check_backend(backend)
