"""The user-facing path: load a model, personalise it to a face, animate it, write the video.

>>> import talkinghead as th                                          # doctest: +SKIP
>>> model = th.load("default")                                       # E, G, D from pretrained/
>>> avatar = model.personalize(["mona_lisa.jpg"])                    # feed-forward: embed only
>>> avatar = model.personalize(photos, fine_tune_steps=200)          # fine-tuned (paper, sec. 3.3)
>>> avatar.save("avatar/"); avatar = th.Avatar.load("avatar/")
>>> video = avatar.animate("driving.mp4")                            # lazy frames + fps + audio source
>>> th.write_video("out.mp4", video)                                 # watermarked, driving audio muxed

Frames are generated in batches while the video is written, so memory stays flat however long the
driving clip is. Only the driving clip's landmark track (``T x 68 x 2`` floats) is held whole.
"""
from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import torch

from .atomic import atomic_paths
from .checks import MAX_BATCH_SIZE, MAX_FINE_TUNE_STEPS, MAX_FRAMES, check_fps
from .checks import check_int as _check_int  # ``(name, value, minimum, maximum=None)``: an InputError naming it
from .devices import resolve_device  # also public here: talkinghead.pipeline.resolve_device
from .errors import InputError, WeightsError
from .tensors import to_tensor, to_uint8  # also public here: talkinghead.pipeline.to_tensor / to_uint8

AVATAR_FORMAT = 2  # 2: generator families (the state's tensors under "state."); 1: the paper family's psi
AVATAR_FORMATS_READ = (1, 2)
AVATAR_CONFIG = "avatar.json"
AVATAR_WEIGHTS = "avatar.safetensors"
RECOMMENDED_MAX_PHOTOS = 32
FINE_TUNE_LR = 2e-4  # G' (D': 4x); meta-learning uses 5e-5, see personalize
SAME_PERSON_DISTANCE = 0.6  # dlib's descriptor distance below which two faces are the same person
CONTENT_CHOICES = ("auto", "paper", "stlpips", "none")  # content-loss backbones, see training.build_loss


@dataclass
class SourceFace:
    """One photo of the person: the full image, its 68 landmarks and the model-sized face crop."""

    image: np.ndarray  # uint8 (H, W, 3) RGB
    landmarks: np.ndarray  # float32 (68, 2), image pixels
    crop: Any  # talkinghead.landmarks.FaceCrop
    name: str = "photo"
    num_faces: int = 1

    def crop_and_landmark_image(self, size: int) -> tuple[np.ndarray, np.ndarray]:
        """``(face crop, landmark image)``, both uint8 ``(size, size, 3)``."""
        from .landmarks import crop_image, draw_landmarks, transform_landmarks

        return (crop_image(self.image, self.crop),
                draw_landmarks(transform_landmarks(self.landmarks, self.crop), size))


def _as_photo_list(photos) -> list:
    from PIL import Image

    # one photo, not a sequence of rows (an array, a tensor) or of bytes (a PIL image)
    if isinstance(photos, (str, os.PathLike, np.ndarray, Image.Image)) or hasattr(photos, "detach"):
        return [photos]
    try:
        photos = list(photos)
    except TypeError:
        raise InputError(f"photos must be an image path, array or PIL image, or a list of them; got "
                         f"{type(photos).__name__}.") from None
    if not photos:
        raise InputError("No photos were given: pass 1 to 32 image paths or arrays of the person.")
    return photos


def _fallback_faces(image: np.ndarray, name: str, tried: str, device: str) -> list:
    """With ``backend="auto"``: a second try with MediaPipe, which also finds turned faces (a painting
    in three-quarter view) where dlib's frontal detector finds none. [] if it is not installed."""
    from .errors import TalkingHeadError
    from .landmarks import get_detector

    try:
        det = get_detector("mediapipe", device)
        try:
            faces = det.detect(image)
        finally:
            det.close()
    except (TalkingHeadError, ImportError):
        return []
    if faces:
        warnings.warn(f"{tried} found no face in {name}; using the face MediaPipe found there.", stacklevel=3)
    return faces


def prepare_sources(photos, size: int, backend: str = "auto", face_index: int = 0,
                    device: str = "cpu", detector=None) -> list[SourceFace]:
    """Read, detect and crop each photo; raises :class:`NoFaceError` naming the photo without a face."""
    from .io import read_image, to_uint8_rgb
    from .landmarks import LandmarkDetector, crop_from_landmarks, get_detector, select_face

    if detector is None and isinstance(backend, LandmarkDetector):
        detector, backend = backend, backend.name
    det = detector or get_detector(backend, device)
    out = []
    for i, photo in enumerate(_as_photo_list(photos)):
        if isinstance(photo, (str, os.PathLike)):
            name, image = str(photo), read_image(photo)
        else:
            name = f"photo {i}"
            image = to_uint8_rgb(photo, name)
        faces = det.detect(image)
        if not faces and backend == "auto" and detector is None:
            faces = _fallback_faces(image, name, det.name, device)
        face = select_face(faces, face_index, name)
        out.append(SourceFace(image, face.landmarks.astype(np.float32),
                              crop_from_landmarks(face.landmarks, size), name, len(faces)))
    return out


def shot_state(sources: Sequence[SourceFace], size: int, device=None) -> dict[str, torch.Tensor]:
    """What a family that reads the photos' pixels keeps of them: ``shots`` ``(K, 3, S, S)`` in [-1, 1]
    (the face crops) and ``shot_points`` ``(K, 68, 2)`` (their landmarks in crop pixels)."""
    from .landmarks import transform_landmarks

    crops = [s.crop_and_landmark_image(size)[0] for s in sources]
    points = np.stack([transform_landmarks(s.landmarks, s.crop) for s in sources]).astype(np.float32)
    return {"shots": torch.stack([to_tensor(c) for c in crops]).to(device),
            "shot_points": torch.from_numpy(points).to(device)}


def _check_same_person(sources: Sequence[SourceFace]) -> None:
    """Warn when the photos seem to show different people (dlib face descriptors)."""
    if len(sources) < 2:
        return
    from .metrics import face_descriptor

    try:
        desc = [face_descriptor(s.crop_and_landmark_image(256)[0]) for s in sources]
    except ImportError:  # dlib is a dependency; a stripped-down install (a GPU box) may lack it
        warnings.warn("dlib is not importable, so the photos were not checked for being one person.", stacklevel=3)
        return
    ref = next((d for d in desc if d is not None), None)
    if ref is None:
        return
    odd = [s.name for s, d in zip(sources, desc) if d is not None and np.linalg.norm(d - ref) > SAME_PERSON_DISTANCE]
    if odd:
        warnings.warn(f"These photos seem to show a different person from {sources[0].name}: {', '.join(odd)}. "
                      "Personalising on several people blurs the identity: pass photos of one person.",
                      stacklevel=3)


class TalkingHead:
    """A meta-learned model (embedder, generator, discriminator) ready to personalise.

    Use :func:`load` to build one. ``device`` is where personalisation and animation run.
    """

    def __init__(self, model, name: str = "custom", device: str | torch.device = "cpu",
                 loss_weights: dict | None = None):
        self.model = model.eval()
        self.name = name
        # fine-tuning keeps the loss balance the model was meta-trained with unless told otherwise
        if loss_weights is None:
            loss_weights = getattr(model, "training_info", {}).get("loss_weights", {})
        self.loss_weights = dict(loss_weights)
        self.device = resolve_device(device)
        self.model.to(self.device)

    @property
    def config(self):
        return self.model.config

    @property
    def image_size(self) -> int:
        return self.model.config.image_size

    def __repr__(self) -> str:
        return f"TalkingHead(name={self.name!r}, image_size={self.image_size}, device={self.device})"

    @torch.no_grad()
    def embed(self, sources: Sequence[SourceFace]) -> torch.Tensor:
        """Mean identity embedding ``e_hat`` ``(D,)`` of the photos (the paper's eq. 1)."""
        size = self.image_size
        pairs = [s.crop_and_landmark_image(size) for s in sources]
        x = torch.stack([to_tensor(c) for c, _ in pairs])[None].to(self.device)
        y = torch.stack([to_tensor(l) for _, l in pairs])[None].to(self.device)
        _, e_hat = self.model.embedder(x, y)
        return e_hat[0]

    def personalize(self, photos, fine_tune_steps: int = 0, device: str | torch.device | None = None,
                    backend: str = "auto", face_index: int = 0, batch_size: int = 2,
                    patience: int = 50, progress: bool = True, seed: int = 0,
                    content: str = "auto", loss_weights: dict | None = None, lr: float = FINE_TUNE_LR,
                    train_generator: bool = True, amp: str = "auto", log=None, callback=None) -> "Avatar":
        """Adapt the model to one person from 1 to 32 photos.

        Args:
            photos: image paths, PIL images or RGB arrays (one or a list; arrays as
                :func:`talkinghead.io.to_uint8_rgb` takes them). More than 32 are allowed.
            backend: landmark detector name (``auto``, ``dlib``, ``face-alignment``, ``mediapipe``) or a
                :class:`talkinghead.landmarks.LandmarkDetector` instance of your own.
            fine_tune_steps: 0 is the feed-forward mode (embed only). Otherwise G' (with trainable
                AdaIN parameters psi' from ``P e_hat``) and D' (with ``w' = w0 + e_hat``) are trained on
                the photos with the content and adversarial losses, stopping early when the loss has
                not improved for ``patience`` steps (0: never stop early). A loss that becomes NaN or
                infinite stops fine-tuning with an :class:`InputError` (lower ``lr`` or the weights).
            content: the content loss's backbones: ``auto``, ``paper``, ``stlpips`` or ``none`` (see
                :func:`talkinghead.perceptual.build_content_backbones`).
            device: where fine-tuning runs (default: this model's device; ``"auto"`` picks CUDA).
            lr: G' learning rate; D' uses 4x (meta-learning's 5e-5 : 2e-4 ratio). The default is 4x
                meta-learning's, measured to reach the same self-reenactment LPIPS in half the steps
                (``docs/fine-tuning.md``).
            train_generator: ``True`` (the paper) trains G's weights with psi'; ``False`` trains psi'
                alone, so G keeps the meta-learned weights.
            amp: bf16 autocast while fine-tuning: ``auto`` (on CUDA only), ``bf16`` (also on a CPU: pays
                on CPUs with AMX or AVX512-BF16, see ``docs/fine-tuning.md``) or ``off``.
            loss_weights: overrides of :class:`talkinghead.losses.LossWeights` fields for fine-tuning;
                by default the weights the model was meta-trained with (``training.loss_weights`` in
                its ``config.json``), else the paper's.
            callback: ``callback(step, terms, snapshot)`` after each fine-tuning step; ``snapshot()``
                returns an :class:`Avatar` copy of the current state (to watch FT converge).

        Raises:
            InputError: before any photo is read, for a setting it cannot use (negative steps or
                patience, ``batch_size`` < 1, an unknown ``amp``/``content``/device, a non-finite or
                non-positive ``lr``, bad ``loss_weights``); for a photo that is unreadable or shows no
                face; and when fine-tuning diverges.

        Returns:
            An :class:`Avatar` holding the (fine-tuned) generator, psi and the first photo. It lives
            where it was made: on the fine-tuning device after FT, on this model's device after FF.
        """
        fine_tune_steps = _check_int("fine_tune_steps", fine_tune_steps, 0, MAX_FINE_TUNE_STEPS)
        batch_size = _check_int("batch_size", batch_size, 1, MAX_BATCH_SIZE)
        patience = _check_int("patience", patience, 0)
        lr = _check_fine_tune_settings(content, lr, amp, loss_weights)
        ft_device = resolve_device(device or self.device) if fine_tune_steps > 0 else None
        photos = _as_photo_list(photos)
        if len(photos) > RECOMMENDED_MAX_PHOTOS:
            warnings.warn(f"{len(photos)} photos given; the model was designed for 1 to {RECOMMENDED_MAX_PHOTOS}. "
                          "All are used, which costs time and memory.", stacklevel=2)
        sources = prepare_sources(photos, self.image_size, backend, face_index, device=str(self.device))
        _check_same_person(sources)
        e_hat = self.embed(sources)
        generator = self.model.generator
        shots = shot_state(sources, self.image_size, self.device) if generator.needs_shots else {}
        info: dict = {"photos": [s.name for s in sources], "fine_tune_steps": 0}
        if fine_tune_steps > 0:
            generator, psi, info = self._fine_tune(sources, e_hat, fine_tune_steps, ft_device,
                                                   batch_size, patience, progress, seed, content, loss_weights,
                                                   lr, train_generator, amp, log, callback, shots)
        else:
            with torch.no_grad():
                psi = generator.psi_from_embedding(e_hat[None])[0]
        state = {"psi": psi, **{k: v.to(psi.device) for k, v in shots.items()}}
        avatar = Avatar(generator, state, e_hat, sources[0], model_name=self.name, config=self.config, info=info)
        return avatar.to(psi.device)

    def _fine_tune(self, sources, e_hat, steps, device, batch_size, patience, progress, seed, content, loss_weights,
                   lr, train_generator, amp, log, callback, shots: dict):
        """The photos as tensors for :func:`talkinghead.training.fine_tune`; its snapshots as Avatars."""
        from .training import fine_tune

        pairs = [s.crop_and_landmark_image(self.image_size) for s in sources]
        frames = torch.stack([to_tensor(c) for c, _ in pairs])
        marks = torch.stack([to_tensor(l) for _, l in pairs])

        def snapshot(generator, psi) -> Avatar:
            state = {"psi": psi, **{k: v.to(psi.device) for k, v in shots.items()}}
            return Avatar(generator, state, e_hat, sources[0], model_name=self.name, config=self.config)

        generator, psi, info = fine_tune(
            self.model, frames, marks, e_hat, steps, device, lr=lr, batch_size=batch_size, patience=patience,
            progress=progress, seed=seed, content=content,
            loss_weights=self.loss_weights if loss_weights is None else loss_weights,
            train_generator=train_generator, amp=amp, model_name=self.name, log=log, callback=callback,
            make_snapshot=snapshot, points=shots["shot_points"].cpu() if shots else None)
        return generator, psi, {"photos": [s.name for s in sources], **info}


def _check_fine_tune_settings(content: str, lr: float, amp: str, loss_weights: dict | None) -> float:
    """InputError for a setting personalize() cannot use, before any photo is read; returns ``lr``."""
    from .losses import LossWeights

    if amp not in ("auto", "bf16", "off"):
        raise InputError(f"amp must be auto, bf16 or off, not {amp!r}.")
    if content not in CONTENT_CHOICES:
        choices = f"{', '.join(CONTENT_CHOICES[:-1])} or {CONTENT_CHOICES[-1]}"
        raise InputError(f"content must be {choices}, not {content!r}.")
    try:
        lr_ok = math.isfinite(lr) and lr > 0
    except TypeError:  # not a number
        lr_ok = False
    if not lr_ok:
        raise InputError(f"The fine-tuning learning rate must be positive and finite, such as {FINE_TUNE_LR:g}; "
                         f"got {lr!r}.")
    if loss_weights is not None:
        try:
            LossWeights.from_dict(dict(loss_weights))
        except (TypeError, ValueError) as exc:
            raise InputError(f"loss_weights: {exc}.") from None
    return float(lr)


def load(name_or_dir: str | os.PathLike = "default", device: str | torch.device = "auto") -> TalkingHead:
    """Load a pretrained model by name or folder (see :mod:`talkinghead.hub` for the lookup order)
    onto ``device`` (``auto``: CUDA where available, else the CPU)."""
    from .models import TalkingHeadModel

    if not isinstance(name_or_dir, (str, os.PathLike)):
        raise InputError(f"model must be a model name or a folder (such as \"default\"), not "
                         f"{type(name_or_dir).__name__} {name_or_dir!r}.")
    device = resolve_device(device)  # a bad name fails before the weights are read
    model = TalkingHeadModel.from_pretrained(name_or_dir)
    name = Path(str(name_or_dir)).name if os.path.isdir(str(name_or_dir)) else str(name_or_dir)
    return TalkingHead(model, name=name, device=device)


class Avatar:
    """A personalised generator: what animation needs, nothing more.

    Attributes:
        generator: the (fine-tuned) generator, of the config's family (:mod:`talkinghead.models.families`).
        state: the person as the family keeps it, unbatched: ``psi`` ``(n_psi,)`` (AdaIN parameters:
            ``P e_hat`` in feed-forward mode, trained psi' after FT) and, for the warp family, ``shots``
            ``(K, 3, S, S)`` and ``shot_points`` ``(K, 68, 2)`` (the photos' crops and landmarks).
        psi: ``state["psi"]``.
        e_hat: ``(D,)`` the photos' mean embedding.
        source: the first photo (image, landmarks, crop) the animation starts from and is pasted into.
    """

    def __init__(self, generator, state: dict | torch.Tensor, e_hat: torch.Tensor, source: SourceFace,
                 model_name: str, config, info: dict | None = None):
        self.generator = generator.eval()
        if torch.is_tensor(state):  # a bare psi (the paper family's whole state)
            state = {"psi": state}
        self.state = {k: v.detach() for k, v in state.items()}
        self.state["psi"] = self.state["psi"].reshape(-1)
        self.e_hat = e_hat.detach().reshape(-1)
        self.source = source
        self.model_name = model_name
        self.config = config
        self.info = dict(info or {})

    @property
    def image_size(self) -> int:
        return self.config.image_size

    @property
    def psi(self) -> torch.Tensor:
        return self.state["psi"]

    @psi.setter
    def psi(self, value: torch.Tensor) -> None:
        self.state["psi"] = value.detach().reshape(-1)

    @property
    def device(self) -> torch.device:
        return next(self.generator.parameters()).device

    def to(self, device) -> "Avatar":
        device = resolve_device(device)
        self.generator.to(device)
        self.state = {k: v.to(device) for k, v in self.state.items()}
        self.e_hat = self.e_hat.to(device)
        return self

    def __repr__(self) -> str:
        ft = self.info.get("fine_tune_steps", 0)
        return f"Avatar(model={self.model_name!r}, mode={'FT %d steps' % ft if ft else 'FF'}, source={self.source.name!r})"

    # ---- generation -------------------------------------------------------------------------
    @torch.no_grad()
    def render(self, crop_landmarks: np.ndarray) -> np.ndarray:
        """Face crops for landmarks in crop pixels: ``(B, 68, 2)`` -> uint8 ``(B, S, S, 3)``."""
        from .landmarks import landmark_images

        y = landmark_images(crop_landmarks, self.image_size).to(self.device, self.psi.dtype)
        points = torch.as_tensor(np.asarray(crop_landmarks, np.float32), device=self.device)
        state = {k: v[None] for k, v in self.state.items()}  # a batch of one, shared by every frame
        return to_uint8(self.generator.generate(y, points, state)["fake"])

    def animate(self, driving, motion: str = "relative", reference: str | int = "best", crop_only: bool = False,
                backend: str = "auto", face_index: int = 0, smooth: bool = True, max_frames: int | None = None,
                batch_size: int = 8, progress: bool = True, on_bad_frames: str = "hold",
                redetect_every: int | None = None) -> "Animation":
        """Animate the source face with the motion of a driving clip.

        Args:
            driving: a video path, or a :class:`talkinghead.landmarks.LandmarkTrack`.
            redetect_every: with the dlib backend, the face detector runs once every this many driving
                frames (default 1: every frame; 25 is ``landmarks.follow.REDETECT_EVERY``) and dlib's predictor follows
                the face in between (about 5x faster tracking, points within 2% of the eye distance;
                :mod:`talkinghead.landmarks.follow`); 1 detects in every frame.
            on_bad_frames: what a driving frame that cannot be decoded becomes: ``hold`` (the frame
                before it, with a warning), ``skip`` (left out, with a warning) or ``error`` (an
                :class:`InputError`); see :class:`talkinghead.io.VideoReader`.
            motion: ``relative`` (moves the source's own landmarks by the driver's motion, keeping the
                source's face shape) or ``absolute`` (the driving landmarks' shape on the source's face).
            reference: the driving frame ``relative`` motion is measured from: ``best`` (most like the
                source's expression), ``first`` or an index.
            crop_only: return the generated face crops instead of pasting them into the source image.

        Returns:
            An :class:`Animation` (lazy): one frame per driving frame, at the driving clip's fps.
        """
        from .checks import check_choice, check_max_frames
        from .io import BAD_FRAME_POLICIES
        from .landmarks import LandmarkTrack, track_video
        from .motion import check_motion, transfer_motion

        # every argument before the slow tracking
        if not isinstance(driving, (LandmarkTrack, str, os.PathLike)):
            raise InputError(f"driving must be a video path or a LandmarkTrack, not {type(driving).__name__}.")
        _check_int("batch_size", batch_size, 1, MAX_BATCH_SIZE)
        if redetect_every is None:  # following cost eye-opening correlation in a spot check (0.93 -> 0.86)
            redetect_every = 1
        _check_int("redetect_every", redetect_every, 1, MAX_FRAMES)
        check_motion(motion, reference)
        max_frames = check_max_frames(max_frames)
        check_choice("on_bad_frames", on_bad_frames, BAD_FRAME_POLICIES)
        audio = None
        if isinstance(driving, LandmarkTrack):
            track = driving
        else:
            from .io import VideoReader

            path = Path(driving)
            track = track_video(path, backend=backend, face_index=face_index, smooth=smooth,
                                max_frames=max_frames, progress=progress, on_bad_frames=on_bad_frames,
                                follow_every=redetect_every if redetect_every > 1 else 0)
            with VideoReader(path) as r:
                audio = path if r.has_audio else None
        lm = transfer_motion(self.source.landmarks, track.landmarks, mode=motion, reference=reference)
        info = {"driving_frames": len(track), "filled_frames": int(np.sum(track.filled)),
                "landmark_backend": track.backend, "motion": motion,
                "driving": None if isinstance(driving, LandmarkTrack) else str(driving)}
        return self.animate_landmarks(lm, track.fps, crop_only=crop_only, batch_size=batch_size,
                                      audio_from=audio, progress=progress, info=info)

    def animate_preset(self, preset: str = "talk", seconds: float = 5.0, fps: float = 25.0, seed: int = 0,
                       crop_only: bool = False, batch_size: int = 8, progress: bool = True) -> "Animation":
        """Animate without a driving video: ``talk`` or ``idle`` motion made from the source's landmarks."""
        from .motion import preset_motion

        lm = preset_motion(self.source.landmarks, preset, seconds, fps, seed)
        return self.animate_landmarks(lm, fps, crop_only=crop_only, batch_size=batch_size, progress=progress,
                                      info={"preset": preset})

    def animate_audio(self, audio: str | os.PathLike, fps: float = 25.0, head_motion: str = "natural",
                      model="audio2motion", seed: int = 0, crop_only: bool = False, batch_size: int = 8,
                      progress: bool = True) -> "Animation":
        """Animate the source face speaking a sound track (no driving video).

        ``audio``: a wav, mp3, m4a... or a video's audio track (see :mod:`talkinghead.audio`; no audio
        track, silence only or more than ``checks.MAX_AUDIO_SECONDS`` is an :class:`InputError`).
        The audio-to-motion ``model`` (:mod:`talkinghead.audio2motion`; default: the shipped
        ``pretrained/audio2motion``) moves the lips, jaw and brows; ``head_motion`` is ``natural``
        (speech-aware sway, nods and blinks) or ``none`` (a still head, blinks only). The animation has
        ``round(seconds * fps)`` frames and carries the audio (:func:`write_video` muxes it).
        """
        from .audio2motion import audio_motion

        _check_int("batch_size", batch_size, 1, MAX_BATCH_SIZE)
        lm, info = audio_motion(self.source.landmarks, audio, fps, head_motion=head_motion, model=model, seed=seed)
        return self.animate_landmarks(lm, fps, crop_only=crop_only, batch_size=batch_size, audio_from=audio,
                                      progress=progress, info=info)

    def animate_landmarks(self, landmarks: np.ndarray, fps: float, crop_only: bool = False, batch_size: int = 8,
                          audio_from=None, progress: bool = True, info: dict | None = None,
                          face_size: int | str | None = None) -> "Animation":
        """Animate from a landmark track ``(T, 68, 2)`` in source-image pixels: finite, at most
        :data:`talkinghead.checks.MAX_FRAMES` frames, at an ``fps`` of at most ``checks.MAX_FPS``.
        ``face_size``: see :class:`Animation`."""
        from .landmarks import transform_landmarks
        from .motion import _check_track

        fps = check_fps(fps)
        _check_int("batch_size", batch_size, 1, MAX_BATCH_SIZE)
        landmarks = _check_track(landmarks, "landmarks")
        if len(landmarks) > MAX_FRAMES:
            raise InputError(f"landmarks has {len(landmarks)} frames, more than the {MAX_FRAMES} frames an animation "
                             "can have: animate it in parts.")
        if not np.isfinite(landmarks).all():
            raise InputError("landmarks contain NaN or infinite values: fill the frames without a face first "
                             "(talkinghead.landmarks.fill_gaps).")
        crop_lm = transform_landmarks(landmarks, self.source.crop)
        return Animation(self, crop_lm, fps, paste_back=not crop_only, batch_size=batch_size,
                         audio_from=audio_from, progress=progress, info=info, face_size=face_size)

    # ---- persistence -------------------------------------------------------------------------
    def save(self, directory: str | os.PathLike) -> Path:
        """Write ``avatar.safetensors`` (generator, state, e_hat, source) and ``avatar.json`` (with the
        weights' sha256) together and atomically: a failed save (a full disk) keeps an earlier avatar
        there, or leaves no folder. A path that is a file, or cannot be written, is an :class:`InputError`."""
        from .hub import serialize_safetensors
        from .io import check_output_folder

        directory = check_output_folder(directory, f"Cannot save the avatar to {directory}",
                                        "choose a new folder, or an avatar's to replace it")
        tensors = {f"generator.{k}": v.detach().cpu().contiguous() for k, v in self.generator.state_dict().items()}
        tensors.update({f"state.{k}": v.detach().cpu().contiguous() for k, v in self.state.items()})
        tensors.update({
            "e_hat": self.e_hat.cpu().contiguous(),
            "source.image": torch.from_numpy(np.array(self.source.image, np.uint8)),
            "source.landmarks": torch.from_numpy(np.array(self.source.landmarks, np.float32)),
        })
        data, digest = serialize_safetensors(tensors)
        crop = self.source.crop
        meta = {"format_version": AVATAR_FORMAT, "class_name": "Avatar", "family": self.config.generator,
                "model_name": self.model_name, "model_config": self.config.to_dict(),
                "source": {"name": self.source.name, "crop": {"center": list(crop.center), "side": crop.side, "size": crop.size}},
                "info": self.info, "sha256": {AVATAR_WEIGHTS: digest}}
        with atomic_paths([directory / AVATAR_WEIGHTS, directory / AVATAR_CONFIG], name=directory) as (weights, config):
            weights.write_bytes(data)
            config.write_text(json.dumps(meta, indent=1), encoding="utf-8")
        return directory

    @classmethod
    def load(cls, directory: str | os.PathLike, device: str | torch.device = "auto") -> "Avatar":
        """Rebuild an avatar written by :meth:`save` on ``device`` (``auto``: CUDA where available);
        bad, foreign or modified files (the sha256 ``avatar.json`` records) raise :class:`WeightsError`.
        Avatars of format 1 (the paper family, saved before generator families existed) and avatars
        saved before hashes were recorded load too."""
        from .hub import check_sha256, check_tensors, read_safetensors, recorded_sha256
        from .config import ModelConfig
        from .landmarks import FaceCrop
        from .models import build_generator

        device = resolve_device(device)  # a bad name fails before the weights are read
        directory = Path(directory)
        cfg_path, w_path = directory / AVATAR_CONFIG, directory / AVATAR_WEIGHTS
        if not cfg_path.is_file() or not w_path.is_file():
            raise WeightsError(f"{directory} is not an avatar folder (it needs {AVATAR_CONFIG} and {AVATAR_WEIGHTS}): "
                               "create one with `talkinghead finetune` or Avatar.save().")
        try:
            meta = json.loads(cfg_path.read_text(encoding="utf-8"))
            version = meta.get("format_version")
            if version not in AVATAR_FORMATS_READ:
                raise WeightsError(f"{cfg_path} has avatar format {version}, this version reads "
                                   f"{', '.join(map(str, AVATAR_FORMATS_READ))}: save the avatar again with this "
                                   "version, or upgrade talkinghead.")
            config = ModelConfig.from_dict(meta["model_config"])
            if version >= 2 and meta.get("family") != config.generator:
                raise ValueError(f"family {meta.get('family')!r} differs from the config's {config.generator!r}")
            crop = FaceCrop(tuple(meta["source"]["crop"]["center"]), float(meta["source"]["crop"]["side"]),
                            int(meta["source"]["crop"]["size"]))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise WeightsError(f"{cfg_path} is not a valid avatar config ({exc}): save the avatar again.") from None
        digest = recorded_sha256(meta, AVATAR_WEIGHTS, cfg_path)
        tensors = read_safetensors(w_path)  # refuses pickles, truncated and corrupt files in one line
        if version == 1:  # psi alone, stored at the top level
            tensors = {("state.psi" if k == "psi" else k): v for k, v in tensors.items()}
        generator = build_generator(config)
        weights = {k[len("generator."):]: v for k, v in tensors.items() if k.startswith("generator.")}
        check_tensors(w_path, weights, generator.state_dict(), AVATAR_CONFIG)
        generator.load_state_dict(weights)
        state = {k[len("state."):]: v for k, v in tensors.items() if k.startswith("state.")}
        needed = ("psi", "shots", "shot_points") if generator.needs_shots else ("psi",)
        missing = [f"state.{k}" for k in needed if k not in state] + \
            [k for k in ("e_hat", "source.image", "source.landmarks") if k not in tensors]
        if missing:
            raise WeightsError(f"{w_path} does not match {cfg_path} (missing {', '.join(missing)}): save the avatar again.")
        try:
            generator.check_state(state)
        except ValueError as exc:
            raise WeightsError(f"{w_path} does not match {cfg_path} ({exc}): save the avatar again.") from None
        check_sha256(w_path, digest)  # last: the checks above name what is wrong, this only that something is
        source = SourceFace(tensors["source.image"].numpy(), tensors["source.landmarks"].numpy(), crop,
                            meta["source"]["name"])
        avatar = cls(generator, state, tensors["e_hat"], source, meta["model_name"], config, meta.get("info"))
        return avatar.to(device)


class Animation:
    """Lazy frames of an animation: iterate to generate them in batches.

    ``fps``; ``len()`` is the number of frames; ``audio_from`` the clip whose audio belongs to it;
    ``model_name`` names the model (for the watermark); frames are uint8 ``(H, W, 3)`` RGB: the
    source image with the face pasted back, or the face crop with ``crop_only``.

    ``face_size`` (settable until iteration starts): ``None``/``"auto"`` pastes the face back at the source
    image's own resolution (the warp family moves the source's pixels themselves, see
    :mod:`talkinghead.fullres`) and makes crops of 512 px where the source's face spans 384 px or more,
    else 256; ``256`` or ``512`` renders the face crop at that size (the network runs at its trained size).
    """

    def __init__(self, avatar: Avatar, crop_landmarks: np.ndarray, fps: float, paste_back: bool = True,
                 batch_size: int = 8, audio_from=None, progress: bool = True, info: dict | None = None,
                 face_size: int | str | None = None):
        from .fullres import check_face_size

        self.avatar = avatar
        self.crop_landmarks = crop_landmarks
        self.fps = float(fps)
        self.paste_back = paste_back
        self.batch_size = _check_int("batch_size", batch_size, 1, MAX_BATCH_SIZE)
        self.audio_from = audio_from
        self.progress = progress
        self.info = dict(info or {})
        self.face_size = check_face_size(face_size)
        self._src_mask: np.ndarray | None = None

    @property
    def model_name(self) -> str:
        return self.avatar.model_name

    @property
    def inputs(self) -> list:
        """The files it is made from (the driving clip, the avatar's photos) that exist: :func:`write_video`
        refuses to write over them, as the CLI does."""
        names = (self.info.get("driving"), self.audio_from, *self.avatar.info.get("photos", []))
        return list(dict.fromkeys(str(p) for p in names if p and os.path.isfile(p)))

    def __len__(self) -> int:
        return len(self.crop_landmarks)

    def __iter__(self) -> Iterator[np.ndarray]:
        from tqdm import tqdm

        from .fullres import FaceRenderer, check_face_size

        # the avatar's crops, masks and batched state once; faces at face_size (talkinghead.fullres)
        renderer = FaceRenderer(self.avatar, check_face_size(self.face_size))
        with tqdm(total=len(self), desc="animate", unit="frame", disable=not self.progress) as bar:
            for start in range(0, len(self), self.batch_size):
                lms = self.crop_landmarks[start:start + self.batch_size]
                if self.paste_back:  # the driven face's region and the source's are both covered
                    frames = renderer.frames(lms)
                else:
                    frames = renderer.render(lms, with_masks=False)[0]
                yield from frames
                bar.update(len(lms))

    @property
    def _source_mask(self) -> np.ndarray:
        if self._src_mask is None:
            from .landmarks import face_mask, transform_landmarks

            src = self.avatar.source
            self._src_mask = face_mask(transform_landmarks(src.landmarks, src.crop), self.avatar.image_size)
        return self._src_mask


def write_video(path: str | os.PathLike, video: Iterable[np.ndarray], fps: float | None = None,
                audio_from: str | os.PathLike | None = "auto", watermark: bool = True, label: str | None = None,
                model_name: str | None = None, crf: int = 18, credentials: bool = True,
                signing_key: Any = None) -> Path:
    """Write generated frames as H.264 video (``.mp4``, ``.mov``, ``.m4v`` or ``.mkv``), marked as synthetic.

    Frames are anything :func:`talkinghead.io.to_uint8_rgb` takes (uint8/uint16/float arrays, RGBA,
    PIL images, ``(3, H, W)`` tensors in [-1, 1]).

    Every frame carries the invisible talkinghead watermark (see :mod:`talkinghead.watermark`) and the
    container records that the video is synthetic and which model made it. ``watermark=False`` is
    for research only and is recorded in the metadata. ``label`` draws visible text in a corner.
    ``audio_from="auto"`` takes the audio of an :class:`Animation`'s driving clip. A ``path`` that is one
    of the animation's inputs (its driving clip, its photos) is refused with an :class:`InputError`.

    The file also carries a signed C2PA manifest (content credentials, :mod:`talkinghead.credentials`):
    ``trainedAlgorithmicMedia``, the model and a hash of its weights, the inputs by hash and the
    watermark's payload id, signed with ``signing_key`` (a :class:`talkinghead.credentials.SigningKey`;
    default: ``$TALKINGHEAD_C2PA_CERT``/``$TALKINGHEAD_C2PA_KEY``, else this installation's key).
    ``watermark=False`` keeps it; only ``credentials=False`` leaves it out.
    """
    from .io import VideoWriter, refuse_overwriting, to_uint8_rgb
    from .watermark import Watermarker, mark_frame, provenance_metadata

    fps = fps if fps is not None else getattr(video, "fps", None)
    if fps is None:
        raise InputError("fps is needed for a plain iterable of frames: pass fps=25, say.")
    fps = check_fps(fps)  # before any frame is generated
    if audio_from == "auto":
        audio_from = getattr(video, "audio_from", None)
    refuse_overwriting(path, [*getattr(video, "inputs", ()), audio_from])  # before any frame is generated
    model_name = model_name or getattr(video, "model_name", None) or "unknown"
    marker = Watermarker.for_model(model_name, label=label) if watermark else None
    with VideoWriter(path, fps, audio_from=audio_from, metadata=provenance_metadata(model_name, watermarked=watermark),
                     crf=crf) as w:
        if credentials:  # signs the finished temporary file, before the rename; the key is checked now
            from .credentials import credentials_finalizer, provenance_of

            w.finalize = credentials_finalizer(path, provenance_of(video, model_name, marker and marker.payload),
                                               signing_key)
        for i, frame in enumerate(video):
            w.write(mark_frame(to_uint8_rgb(frame, f"frame {i}"), marker, label))  # the watermark works on uint8 RGB
    return Path(path)


def write_image(path: str | os.PathLike, image: np.ndarray, model_name: str = "unknown", watermark: bool = True,
                label: str | None = None, credentials: bool = True, signing_key: Any = None,
                animation: "Animation | None" = None) -> Path:
    """Write one generated image, watermarked, tagged as synthetic and with signed content credentials
    (see :func:`write_video`). ``animation``: the :class:`Animation` the image is a frame of, whose
    inputs and weights the manifest names."""
    from .io import IMAGE_EXTENSIONS, to_uint8_rgb
    from .io import write_image as _write
    from .watermark import Watermarker, mark_frame, provenance_metadata

    image = to_uint8_rgb(image)  # the watermark works on uint8 RGB
    marker = Watermarker.for_model(model_name, label=label) if watermark else None
    image = mark_frame(image, marker, label)
    finalize = None
    if credentials and Path(path).suffix.lower() in IMAGE_EXTENSIONS:  # other names: io refuses them
        from .credentials import credentials_finalizer, provenance_of

        finalize = credentials_finalizer(path, provenance_of(animation, model_name, marker and marker.payload),
                                         signing_key)
    _write(path, image, metadata=provenance_metadata(model_name, watermarked=watermark), finalize=finalize)
    return Path(path)
