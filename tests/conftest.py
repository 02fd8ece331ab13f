"""Shared fixtures: real faces from installed packages and the project's shared data folder."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Tiny test tensors run faster on one thread, and a busy 2-core machine is not oversubscribed."""
    import torch

    torch.set_num_threads(1)


@pytest.fixture(autouse=True, scope="session")
def _session_signing_key(tmp_path_factory):
    """Outputs are signed (content credentials) with a key made for the session, named by
    $TALKINGHEAD_C2PA_CERT/KEY, so tests never make one in the user's cache folder (test_credentials
    covers the installation's key with a TALKINGHEAD_HOME of its own)."""
    from talkinghead import credentials

    if credentials.unavailable_reason() is not None:
        yield None
        return
    pem = tmp_path_factory.mktemp("c2pa") / "signing.pem"
    pem.write_bytes(credentials._new_installation_pem())
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(credentials.CERT_ENV, str(pem))
        mp.setenv(credentials.KEY_ENV, str(pem))
        yield pem


def shared_data_dir() -> Path | None:
    """``$TALKINGHEAD_DATA`` or ``../shared/data`` beside the checkout, if present."""
    env = os.environ.get("TALKINGHEAD_DATA")
    for cand in ([Path(env)] if env else []) + [REPO.parent / "shared" / "data"]:
        if (cand / "MANIFEST.csv").is_file():
            return cand
    return None


@pytest.fixture(scope="session")
def data_dir() -> Path:
    d = shared_data_dir()
    if d is None:
        pytest.skip("../shared/data is absent (set TALKINGHEAD_DATA to the data folder to run this test)")
    return d


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    """(512, 512, 3) uint8 RGB public-domain photo of Eileen Collins (scikit-image)."""
    from skimage import data

    return data.astronaut()


@pytest.fixture(scope="session")
def grace_hopper_path() -> Path:
    """Path to matplotlib's public-domain grace_hopper.jpg (512x600 RGB)."""
    import matplotlib

    return Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"


@pytest.fixture(scope="session")
def grace_hopper(grace_hopper_path) -> np.ndarray:
    import cv2

    bgr = cv2.imread(str(grace_hopper_path), cv2.IMREAD_COLOR)
    return np.ascontiguousarray(bgr[:, :, ::-1])


@pytest.fixture(scope="session")
def astronaut_face(astronaut):
    """``(crop uint8 (256, 256, 3), landmarks float32 (68, 2) in crop pixels)``: the astronaut's face
    crop as the library makes it (dlib landmarks, ``crop_from_landmarks``)."""
    from talkinghead.landmarks import crop_from_landmarks, crop_image, get_detector, transform_landmarks

    lm = get_detector("dlib").detect(astronaut)[0].landmarks
    crop = crop_from_landmarks(lm, 256)
    return crop_image(astronaut, crop), transform_landmarks(lm, crop).astype(np.float32)


def scaled_face(face, size: int):
    """The astronaut's face crop and landmarks at ``size`` pixels (pixel centres at integers)."""
    import cv2

    crop, lm = face
    r = size / crop.shape[0]
    img = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA) if size != crop.shape[0] else crop
    return img, ((lm + 0.5) * r - 0.5).astype(np.float32)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A saved, untrained ``tiny`` model (seed 0): for tests of loading, personalising and writing."""
    import torch

    from talkinghead.config import get_config
    from talkinghead.models import TalkingHeadModel

    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("model") / "tiny-test"
    TalkingHeadModel(get_config("tiny", num_videos=3)).save_pretrained(d)
    return d


@pytest.fixture(scope="session")
def warp_model_dir(tmp_path_factory):
    """A saved, untrained ``warp-tiny`` model (64 px, seed 0): untrained, its generator is the TPS warp of
    the source, so what it makes is a real face."""
    import torch

    from talkinghead.config import get_config
    from talkinghead.models import TalkingHeadModel

    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("model") / "warp-tiny"
    TalkingHeadModel(get_config("warp-tiny", num_videos=3)).save_pretrained(d)
    return d


def opened_mouth(lm, px: float):
    """Landmarks ``(..., 68, 2)`` (numpy or torch) with the jaw, lower lip and lower inner lip moved down
    by ``px`` (a mouth opening); a copy."""
    out = lm.copy() if isinstance(lm, np.ndarray) else lm.clone()
    lower = list(range(4, 13)) + [55, 56, 57, 58, 59, 65, 66, 67]
    out[..., lower, 1] += px
    return out


def tiny_warp_pair(astronaut_face, **prior):
    """The astronaut at 64 px as one shot: ``(plain, with_prior, state, points (1, 68, 2))``, two warp-tiny
    generators with the same weights, the second with the ``prior`` config fields set (mouth_cavity=True...)."""
    import torch

    from talkinghead.config import get_config
    from talkinghead.models import TalkingHeadModel
    from talkinghead.tensors import to_tensor

    crop, lm = astronaut_face
    small = torch.as_tensor(lm)[None] / 4  # the tiny config's 64 px
    cfg = get_config("warp-tiny", num_videos=3)
    torch.manual_seed(0)
    plain = TalkingHeadModel(cfg).eval().generator
    torch.manual_seed(0)
    with_prior = TalkingHeadModel(cfg.replace(**prior)).eval().generator
    shots = torch.nn.functional.interpolate(to_tensor(crop)[None], size=(64, 64), mode="area")[:, None]
    state = plain.identity_state(torch.randn(1, cfg.embed_dim), shots, small[:, None])
    return plain, with_prior, state, small
