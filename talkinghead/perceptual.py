"""VGG trunks for the content loss and LPIPS: VGG19 (ImageNet), VGGFace (VGG16) and ST-LPIPS VGG16.

Three small modules written here (torchvision is not needed), each loading a known weights file:

- ``vgg19``: torchvision's ImageNet VGG19, file ``vgg19-dcbb9e9d.pth`` with its ``features.N.*`` key
  names. Content layers of the paper: conv1, conv6, conv11, conv20, conv29, i.e. the ReLU outputs at
  ``features`` indices 1, 6, 11, 20, 29 (relu1_1 ... relu5_1).
- ``vggface``: the VGG16 face-identity network of Parkhi et al. 2015 as ported to PyTorch by S. Albanie,
  file ``vgg_face_dag.pth`` with keys ``conv1_1.weight`` ... ``conv5_3.bias`` (``fc6-8`` ignored); a file
  with torchvision-style ``features.N.*`` keys is accepted too. It takes 0-255 RGB minus the mean
  (129.186, 104.762, 93.594). Content layers: conv1, conv6, conv11, conv18, conv25 (relu1_1 ... relu5_1).
- ``st-lpips-vgg16``: the shift-tolerant VGG16 of ST-LPIPS (Ghildyal & Liu, ECCV 2022) shipped inside the
  ``stlpips-pytorch`` package (``weights/vST0.0/vgg_shift_tolerant.pth``, BSD-2), read without importing
  that package. Every max-pool is a stride-1 2x2 max-pool followed by a [1,2,1]x[1,2,1]/16 blur with
  reflect padding 2 and stride 2. The file also holds LPIPS linear heads (used by ``metrics.lpips``).
  It runs offline, so it is the default when the two files above are absent.

Weights are found in this order: an explicit path, the repository's ``pretrained/`` folder, torch hub's
``checkpoints/`` folder (``torch.hub.get_dir()``), then a download into that folder unless
``TALKINGHEAD_OFFLINE=1``. Nothing is loaded at import time.

All trunks take ``(B, 3, H, W)`` float RGB in [-1, 1] and normalise inside; they are frozen (``eval()``,
``requires_grad=False``) and the caller chooses device and dtype with ``.to()``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator, Sequence

import torch
from torch import nn
import torch.nn.functional as F

from .errors import WeightsError
from .hub import is_offline

VGG19_FILE = "vgg19-dcbb9e9d.pth"
VGG19_URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"
VGGFACE_FILE = "vgg_face_dag.pth"
VGGFACE_URL = "https://www.robots.ox.ac.uk/~albanie/models/pytorch-mcn/vgg_face_dag.pth"
STLPIPS_FILE = "weights/vST0.0/vgg_shift_tolerant.pth"

# channel plans ('M' = downsampling), as in Simonyan & Zisserman 2015
_VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
_VGG19 = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
          512, 512, 512, 512, "M")

VGG19_LAYERS = (1, 6, 11, 20, 29)      # relu1_1, relu2_1, relu3_1, relu4_1, relu5_1
VGGFACE_LAYERS = (1, 6, 11, 18, 25)    # the same ReLUs in VGG16
# In the blur-pooled VGG16 each pool is two modules (max-pool, blur), which shifts later indices.
STLPIPS_CONTENT_LAYERS = (1, 7, 13, 21, 29)   # relu1_1 ... relu5_1, the paper's choice for content
STLPIPS_LPIPS_LAYERS = (3, 9, 17, 25, 33)     # relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 (LPIPS)

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_VGGFACE_MEAN = (129.186279296875, 104.76238250732422, 93.59396362304688)


class BlurDownsample(nn.Module):
    """Anti-aliased stride-2 downsampling: reflect pad 2, depthwise 3x3 binomial blur, stride 2.

    ``(B, C, H, W) -> (B, C, H // 2 + 1, W // 2 + 1)``. The filter is a buffer named ``filt`` so that
    ST-LPIPS files load into it unchanged.
    """

    def __init__(self, channels: int):
        super().__init__()
        a = torch.tensor([1.0, 2.0, 1.0])
        filt = a[:, None] * a[None, :]
        self.register_buffer("filt", (filt / filt.sum())[None, None].repeat(channels, 1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (2, 2, 2, 2), mode="reflect")
        return F.conv2d(x, self.filt.to(x.dtype), stride=2, groups=x.shape[1])


def _make_features(plan: Sequence, last: int, blur: bool) -> nn.Sequential:
    """VGG ``features`` with torchvision's module indices, cut after index ``last``."""
    layers: list[nn.Module] = []
    cin = 3
    for v in plan:
        if v == "M":
            if blur:
                layers += [nn.MaxPool2d(2, stride=1), BlurDownsample(cin)]
            else:
                layers.append(nn.MaxPool2d(2, stride=2))
        else:
            # not in-place: tapped activations must survive for the loss and its backward pass
            layers += [nn.Conv2d(cin, v, 3, padding=1), nn.ReLU()]
            cin = v
        if len(layers) > last:
            break
    return nn.Sequential(*layers[: last + 1])


class VGGTrunk(nn.Module):
    """A frozen VGG trunk returning the activations at ``layers`` (indices into ``features``).

    ``forward(x (B,3,H,W) in [-1,1]) -> list[(B, C_l, H_l, W_l)]``. Inside, ``x`` becomes
    ``((x + 1) / 2 * in_scale - mean) / std`` per channel, which covers ImageNet-style ([0,1], mean/std)
    and Caffe-style (0-255 minus mean) networks.
    """

    def __init__(self, name: str, plan: Sequence, layers: Sequence[int], mean: Sequence[float],
                 std: Sequence[float], in_scale: float = 1.0, blur: bool = False):
        super().__init__()
        self.name = name
        self.layers = tuple(int(i) for i in layers)
        self.features = _make_features(plan, max(self.layers), blur)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.in_scale = float(in_scale)
        self.channels = tuple(self.features[i - 1].out_channels for i in self.layers)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return ((x + 1.0) * (0.5 * self.in_scale) - self.mean) / self.std

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"{self.name} expects (B, 3, H, W) RGB in [-1, 1], got {tuple(x.shape)}")
        h = self.normalize(x)
        taps = set(self.layers)
        out = []
        for i, module in enumerate(self.features):
            h = module(h)
            if i in taps:
                out.append(h)
        return out

    def freeze(self) -> "VGGTrunk":
        for p in self.parameters():
            p.requires_grad_(False)
        return self.eval()

    def train(self, mode: bool = True) -> "VGGTrunk":
        # Frozen feature extractors stay in eval mode even inside a model put in train mode.
        return super().train(False)


class STLPIPSVGG16(VGGTrunk):
    """ST-LPIPS's shift-tolerant VGG16 trunk plus its five LPIPS linear heads (``lins``).

    The scaling layer of ST-LPIPS, ``(x - shift) / scale`` on [-1, 1] input, is kept as the persistent
    buffers ``shift`` and ``scale`` loaded from the file; it equals ImageNet normalisation within 1%.
    """

    def __init__(self, layers: Sequence[int] = STLPIPS_LPIPS_LAYERS, with_heads: bool = True):
        super().__init__("st-lpips-vgg16", _VGG16, layers, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), blur=True)
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1))
        self.lins = nn.ModuleList(
            [nn.Conv2d(c, 1, 1, bias=False) for c in (64, 128, 256, 512, 512)] if with_heads else []
        )

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.shift) / self.scale


class ContentBackbones(nn.Module):
    """The frozen networks of the content loss. Iterating yields ``(name, module, layer_weights)``.

    ``names`` says which were used, e.g. ``["vgg19", "vggface"]`` or ``["st-lpips-vgg16"]``;
    ``layer_weights`` are per-layer multipliers (all 1, as in the paper).
    """

    def __init__(self, trunks: Sequence[VGGTrunk], layer_weights: Sequence[Sequence[float]] | None = None):
        super().__init__()
        self.trunks = nn.ModuleList(trunks)
        self.layer_weights = [tuple(w) for w in layer_weights] if layer_weights is not None else [
            (1.0,) * len(t.layers) for t in trunks
        ]

    @property
    def names(self) -> list[str]:
        return [t.name for t in self.trunks]

    def __iter__(self) -> Iterator[tuple[str, VGGTrunk, tuple[float, ...]]]:
        return iter(zip(self.names, self.trunks, self.layer_weights))

    def __len__(self) -> int:
        return len(self.trunks)


# ---------------------------------------------------------------------------------------------
# weights lookup


def hub_checkpoints_dir() -> Path:
    """torch hub's ``checkpoints/`` folder, where third-party weights are looked up and downloaded."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def _package_pretrained_dir() -> Path:
    from .hub import repo_pretrained_dir

    return repo_pretrained_dir()


def find_local_weights(filename: str, path: str | os.PathLike | None = None) -> Path | None:
    """The first existing file among: ``path``, the package's ``pretrained/``, hub ``checkpoints/``."""
    if path is not None:
        p = Path(path).expanduser()
        if not p.is_file():
            raise WeightsError(f"Weights file {p} does not exist; check the path or leave it out to use {filename} from {hub_checkpoints_dir()}.")
        return p
    for folder in (_package_pretrained_dir(), hub_checkpoints_dir()):
        if (folder / filename).is_file():
            return folder / filename
    return None


def _load_file(p: Path) -> dict:
    try:
        sd = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated download, pickle with code, not a torch file
        raise WeightsError(f"Could not read weights file {p} ({type(exc).__name__}); delete it and download it again.") from exc
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict):
        raise WeightsError(f"Weights file {p} does not hold a state dict; replace it with the original file.")
    return sd


def load_weights(filename: str, url: str | None, path: str | os.PathLike | None = None,
                 download: bool | None = None, check_hash: bool = False) -> dict:
    """Return the state dict of ``filename`` found in the documented order, downloading if allowed.

    ``download=None`` means: download unless ``TALKINGHEAD_OFFLINE=1``.
    """
    local = find_local_weights(filename, path)
    if local is not None:
        return _load_file(local)
    folder = hub_checkpoints_dir()
    if download is None:
        download = not is_offline()
    if not download or url is None:
        raise WeightsError(f"{filename} is not in {folder}; download it from {url} into that folder (Python callers can also pass path=).")
    try:
        return torch.hub.load_state_dict_from_url(url, model_dir=str(folder), map_location="cpu",
                                                  file_name=filename, check_hash=check_hash, weights_only=True)
    except Exception as exc:  # no network, HTTP error, hash mismatch
        raise WeightsError(f"Could not download {filename} ({type(exc).__name__}: {exc}); put the file from {url} into {folder} (Python callers can also pass path=).") from exc


def _load_features(trunk: VGGTrunk, sd: dict, source: str) -> VGGTrunk:
    own = trunk.state_dict()
    picked = {k: v for k, v in sd.items() if k in own}
    missing = sorted(set(own) - set(picked))
    if missing:
        raise WeightsError(f"Weights file {source} lacks {len(missing)} tensors of {trunk.name} (e.g. {missing[0]}); use the original file.")
    for k, v in picked.items():
        if tuple(v.shape) != tuple(own[k].shape):
            raise WeightsError(f"Weights file {source} has {k} of shape {tuple(v.shape)}, expected {tuple(own[k].shape)}; use the original file.")
    trunk.load_state_dict(picked, strict=True)
    return trunk.freeze()


def vgg19(path: str | os.PathLike | None = None, layers: Sequence[int] = VGG19_LAYERS,
          download: bool | None = None) -> VGGTrunk:
    """ImageNet VGG19 trunk from ``vgg19-dcbb9e9d.pth`` (torchvision's file and key names)."""
    trunk = VGGTrunk("vgg19", _VGG19, layers, _IMAGENET_MEAN, _IMAGENET_STD, in_scale=1.0)
    sd = load_weights(VGG19_FILE, VGG19_URL, path, download, check_hash=True)
    return _load_features(trunk, sd, str(path or VGG19_FILE))


def _vggface_keys(sd: dict) -> dict:
    """Map ``conv{b}_{i}.*`` keys of ``vgg_face_dag.pth`` onto torchvision-style ``features.N.*``."""
    if any(k.startswith("features.") for k in sd):
        return sd
    out, idx = {}, 0
    for b, n in ((1, 2), (2, 2), (3, 3), (4, 3), (5, 3)):
        for i in range(1, n + 1):
            for kind in ("weight", "bias"):
                key = f"conv{b}_{i}.{kind}"
                if key in sd:
                    out[f"features.{idx}.{kind}"] = sd[key]
            idx += 2
        idx += 1  # the pool
    return out


def vggface(path: str | os.PathLike | None = None, layers: Sequence[int] = VGGFACE_LAYERS,
            download: bool | None = None) -> VGGTrunk:
    """VGGFace (VGG16) trunk from ``vgg_face_dag.pth``; takes 0-255 RGB minus the VGGFace mean."""
    trunk = VGGTrunk("vggface", _VGG16, layers, _VGGFACE_MEAN, (1.0, 1.0, 1.0), in_scale=255.0)
    sd = _vggface_keys(load_weights(VGGFACE_FILE, VGGFACE_URL, path, download))
    return _load_features(trunk, sd, str(path or VGGFACE_FILE))


def stlpips_weights_path() -> Path:
    """Path of ``vgg_shift_tolerant.pth`` inside the installed ``stlpips-pytorch`` (not imported)."""
    import importlib.util

    spec = importlib.util.find_spec("stlpips_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError("The ST-LPIPS weights come with the stlpips-pytorch package; run `pip install --no-deps stlpips-pytorch`.")
    p = Path(list(spec.submodule_search_locations)[0]) / STLPIPS_FILE
    if not p.is_file():
        raise WeightsError(f"{p} is missing; reinstall it with `pip install --force-reinstall --no-deps stlpips-pytorch`.")
    return p


def stlpips_state_dict_to_local(sd: dict) -> dict:
    """Rename ST-LPIPS keys: ``net.sliceK.N.*`` -> ``features.N.*``, ``linK.model.1.weight`` -> ``lins.K.weight``,
    ``scaling_layer.*`` -> ``*``."""
    out = {}
    for k, v in sd.items():
        parts = k.split(".")
        if parts[0] == "net" and parts[1].startswith("slice"):
            out[".".join(["features"] + parts[2:])] = v
        elif parts[0].startswith("lin") and parts[1:3] == ["model", "1"]:
            out[f"lins.{parts[0][3:]}.{parts[3]}"] = v
        elif parts[0] == "scaling_layer":
            out[parts[1]] = v
        else:
            out[k] = v
    return out


def stlpips_vgg16(layers: Sequence[int] = STLPIPS_LPIPS_LAYERS, with_heads: bool = True,
                  path: str | os.PathLike | None = None) -> STLPIPSVGG16:
    """ST-LPIPS shift-tolerant VGG16 (offline; ships with ``stlpips-pytorch``), frozen.

    The trunk is built through ``max(layers)``; tensors of the file beyond it (and the heads when
    ``with_heads=False``) are not used. With the default layers every key of the file is loaded.
    """
    p = Path(path) if path is not None else stlpips_weights_path()
    sd = stlpips_state_dict_to_local(_load_file(p))
    net = STLPIPSVGG16(layers, with_heads)
    own = net.state_dict()
    missing = sorted(set(own) - set(sd))
    if missing:
        raise WeightsError(f"Weights file {p} lacks {len(missing)} tensors (e.g. {missing[0]}); reinstall stlpips-pytorch.")
    net.load_state_dict({k: sd[k] for k in own}, strict=True)
    return net.freeze()


def content_weights_available() -> dict[str, bool]:
    """Whether ``vgg19`` / ``vggface`` weights are present locally (no download)."""
    return {"vgg19": find_local_weights(VGG19_FILE) is not None,
            "vggface": find_local_weights(VGGFACE_FILE) is not None}


def build_content_backbones(prefer: str = "auto", vgg19_path: str | os.PathLike | None = None,
                            vggface_path: str | os.PathLike | None = None) -> ContentBackbones:
    """The networks of the content loss.

    ``prefer``:
      - ``"auto"``: VGG19 and/or VGGFace whose files are present (explicit paths or local folders; no
        download), else the ST-LPIPS VGG16 (offline). Check ``.names`` for what was used.
      - ``"paper"``: VGG19 + VGGFace as in the paper, downloading where allowed; ``WeightsError`` if not.
      - ``"stlpips"``: the ST-LPIPS VGG16 only (content taps relu1_1 ... relu5_1).
    """
    if prefer not in ("auto", "paper", "stlpips"):
        raise ValueError(f"prefer must be 'auto', 'paper' or 'stlpips', got {prefer!r}")
    trunks: list[VGGTrunk] = []
    if prefer == "paper":
        trunks = [vgg19(vgg19_path), vggface(vggface_path)]
    elif prefer == "auto":
        if vgg19_path is not None or find_local_weights(VGG19_FILE) is not None:
            trunks.append(vgg19(vgg19_path, download=False))
        if vggface_path is not None or find_local_weights(VGGFACE_FILE) is not None:
            trunks.append(vggface(vggface_path, download=False))
    if not trunks:
        trunks = [stlpips_vgg16(STLPIPS_CONTENT_LAYERS, with_heads=False)]
    return ContentBackbones(trunks)
