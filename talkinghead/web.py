"""``talkinghead web``: a local web app (Gradio) on top of the public API.

The page does what ``talkinghead animate`` and ``talkinghead verify`` do, for people who will not open
a terminal: upload a portrait (or pick one of the package's public-domain photos), drive it with a
motion preset, an uploaded clip or a voice recording, optionally fine-tune, watch and download the watermarked result;
a second tab checks any video or image for the watermark. It is a thin face on :func:`talkinghead.load`,
:meth:`TalkingHead.personalize`, :meth:`Avatar.animate` / :meth:`Avatar.animate_preset` /
:meth:`Avatar.animate_audio`, :func:`talkinghead.write_video` and the ``talkinghead verify`` command: no
model logic lives here.

Bad input shows the library's own one-line message (a :class:`~talkinghead.errors.TalkingHeadError`,
what the CLI prints after ``error:``) in the page, never a traceback. The limits below keep one upload
from taking the machine; the CLI has none of them.

Each browser session gets its own folder (a random name inside Gradio's cache folder) for the samples
it picks and the videos it makes; it is deleted when the tab is closed and when the server stops.
Uploads are deleted then too (unless another open session uploaded the same file), and Gradio deletes
anything left in its cache after :data:`CACHE_MAX_AGE_S`.

Gradio is an optional extra (``pip install talkinghead[web]``) imported only by :meth:`WebApp.build`,
so ``import talkinghead.web`` works without it. Nothing is fetched from the network: Gradio's analytics,
version check, share link and run history are off, and the page's fonts and scripts come from the
installed Gradio.
"""
# no `from __future__ import annotations`: Gradio reads the handlers' `gr.Request` annotations at run time
import errno
import ipaddress
import os
import secrets
import shutil
import tempfile
import threading
import time
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path

from .errors import InputError, TalkingHeadError

MAX_UPLOAD_BYTES = 50 * 2**20  # one uploaded file (a minute of 1080p phone video is 20-40 MB); Gradio's unit
MAX_SECONDS = 60.0  # a driving clip's, a voice recording's and a preset's length (1500 frames at 25 fps: ~3 min
# on a 2-core CPU)
MIN_PRESET_SECONDS = 0.2  # the shortest preset the page offers (5 frames at 25 fps)
MAX_FINE_TUNE_STEPS = 500  # fine-tuning steps the page allows (docs/fine-tuning.md uses 20 to 200)
PRESET_FPS = 25.0
CACHE_MAX_AGE_S = 3600  # Gradio deletes cached uploads and results older than this (checked every 10 min)
QUEUE_SIZE = 16  # animations waiting; more are refused with "the queue is full"

RESPONSIBLE_USE_PATH = "responsible-use"  # the page, inside the app, showing docs/responsible-use.md
_DOCS = Path(__file__).resolve().parents[1] / "docs"
_DRIVES = (("the talk preset", "talk"), ("the idle preset", "idle"), ("a driving clip", "clip"),
           ("a voice recording", "voice"))  # voice: Avatar.animate_audio, the shipped audio-to-motion model

NOTE = ("Every video made here carries signed content credentials (C2PA), an invisible watermark and "
        "metadata that mark it as synthetic "
        "(check any file in the **Verify** tab, or with `talkinghead verify FILE`). Animate people only "
        f"with their consent, and say that it is synthetic wherever you publish it: read "
        f"[responsible use](/{RESPONSIBLE_USE_PATH}) first.")


CSS = "#th-note {border-left: 4px solid #f59e0b; background: #fffbeb; color: #3b2f14}"


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _file_size_text(nbytes: int) -> str:
    """Sizes as Gradio's own message counts them (1 MB = 2**20 bytes)."""
    return f"{nbytes / 2**20:.0f} MB" if nbytes >= 2**20 else f"{nbytes / 2**10:.0f} KB"


@dataclass
class Result:
    """What one click of a button shows: the status (Markdown) and the file made (if any)."""

    status: str
    path: str | None = None


class WebApp:
    """The app: a loaded model, the per-session folders, and (after :meth:`build`) the Gradio Blocks.

    The handlers (:meth:`photo_faces`, :meth:`animate`, :meth:`verify`) are plain methods taking file
    paths and a session id, so they can be tested without a browser; :meth:`build` wires them to the
    page.
    """

    def __init__(self, model: str | os.PathLike = "default", device: str = "auto",
                 max_upload_bytes: int = MAX_UPLOAD_BYTES, max_seconds: float = MAX_SECONDS):
        from .pipeline import load

        self.model = load(model, device=device)
        self.max_upload_bytes = int(max_upload_bytes)
        self.max_seconds = float(max_seconds)
        self._lock = threading.Lock()
        self._sessions: dict[str, Path] = {}  # session id -> its folder
        self._uploads: dict[str, set[str]] = {}  # uploaded file -> the sessions that used it
        self._detector = None
        self._detector_lock = threading.Lock()
        self._audio_model = None  # the audio-to-motion model, loaded on the first voice recording
        self._audio_lock = threading.Lock()
        self.blocks = None
        self.url: str | None = None

    # ---- sessions and their files ----------------------------------------------------------------
    @staticmethod
    def cache_dir() -> Path:
        """Gradio's cache folder (``$GRADIO_TEMP_DIR``, else ``<temp>/gradio``): files there are served
        without being copied, so a session's folder lives inside it."""
        return Path(os.environ.get("GRADIO_TEMP_DIR") or Path(tempfile.gettempdir()) / "gradio").resolve()

    def session_dir(self, session: str) -> Path:
        """The folder of one browser session, made on first use, with a name nobody can guess."""
        with self._lock:
            d = self._sessions.get(session)
            if d is None or not d.is_dir():
                root = self.cache_dir()
                root.mkdir(parents=True, exist_ok=True)
                d = root / f"talkinghead-{secrets.token_hex(16)}"
                d.mkdir(mode=0o700)
                self._sessions[session] = d
            return d

    def _used_upload(self, session: str, path: str) -> None:
        if not path or self.cache_dir() not in Path(path).resolve().parents:
            return
        with self._lock:
            self._uploads.setdefault(str(Path(path).resolve()), set()).add(session)

    def end_session(self, session: str) -> None:
        """Delete the session's folder and the uploads no other open session used."""
        with self._lock:
            d = self._sessions.pop(session, None)
            gone = []
            for path, users in list(self._uploads.items()):
                users.discard(session)
                if not users:
                    del self._uploads[path]
                    gone.append(Path(path))
        if d is not None:
            shutil.rmtree(d, ignore_errors=True)
        cache = self.cache_dir()
        for path in gone:
            path.unlink(missing_ok=True)
            parent = path.parent  # Gradio keeps each upload in a folder of its own
            if parent != cache and cache in parent.parents:
                try:
                    parent.rmdir()
                except OSError:
                    pass

    def close(self) -> None:
        """Stop the server and delete every session's files (a second call does nothing)."""
        if self.blocks is not None and self.url is not None:
            self.blocks.close()
            self.url = None
        for session in list(self._sessions):
            self.end_session(session)
        with self._lock:
            uploads = list(self._uploads)
            self._uploads.clear()
        for path in uploads:
            Path(path).unlink(missing_ok=True)
        detector, self._detector = self._detector, None
        close = getattr(detector, "close", None)  # MediaPipe's holds a graph; dlib's has nothing to close
        if close is not None:
            close()

    # ---- checks ----------------------------------------------------------------------------------
    def _check_upload(self, path: str | None, what: str) -> Path:
        if not path:
            raise InputError(f"No {what} was given: upload one first.")
        p = Path(path)
        try:
            size = p.stat().st_size
        except OSError:
            raise InputError(f"The {what} is no longer on the server (uploads are deleted after "
                             f"{CACHE_MAX_AGE_S // 60} minutes): upload it again.") from None
        if size > self.max_upload_bytes:
            raise InputError(f"{p.name} is {_file_size_text(size)}, more than the "
                             f"{_file_size_text(self.max_upload_bytes)} the web app accepts: use a smaller file, "
                             "or `talkinghead animate` (no limit).")
        return p

    def _check_clip(self, path: Path) -> None:
        from .io import VideoReader

        with VideoReader(path) as reader:  # an unreadable or still file is the library's InputError
            seconds = reader.duration or reader.num_frames / reader.fps
        if seconds > self.max_seconds:
            raise InputError(f"{path.name} is {seconds:.1f} s long, more than the {self.max_seconds:g} s the web app "
                             f"animates: trim it, or use `talkinghead animate --driving {path.name}` (no limit).")

    def _detect(self, image):
        from .landmarks import get_detector

        with self._detector_lock:
            if self._detector is None:
                self._detector = get_detector("auto", str(self.model.device))
            return self._detector.detect(image)

    # ---- handlers --------------------------------------------------------------------------------
    def sample(self, name: str, session: str) -> str:
        """A copy of one of the package's public-domain photos in the session's folder."""
        out = self.session_dir(session) / f"{name}.png"
        if not out.is_file():
            if name == "astronaut":  # Eileen Collins, NASA (scikit-image)
                from skimage import data

                image = data.astronaut()
            elif name == "grace_hopper":  # matplotlib's sample data
                import matplotlib

                from .io import read_image

                image = read_image(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg")
            else:
                raise InputError(f"Unknown sample photo {name!r}: use astronaut or grace_hopper.")
            from .io import write_image

            write_image(out, image)
        return str(out)

    def photo_faces(self, path: str | None, session: str = "local"):
        """``(preview, number of faces, status)`` for an uploaded photo: the faces found, numbered in the
        order ``face_index`` counts them (largest first). Raises :class:`TalkingHeadError`."""
        import cv2
        import numpy as np

        from .io import read_image
        from .pipeline import prepare_sources

        photo = self._check_upload(path, "portrait")
        self._used_upload(session, str(photo))
        image = read_image(photo)
        boxes = [f.box for f in self._detect(image)]
        if not boxes:  # what personalize does next: MediaPipe where installed, else the library's NoFaceError
            lm = prepare_sources([str(photo)], self.model.image_size, "auto", 0, str(self.model.device))[0].landmarks
            boxes = [(*lm.min(0), *lm.max(0))]
        preview = np.ascontiguousarray(image.copy())
        thick = max(2, round(max(image.shape[:2]) / 300))
        for i, (x0, y0, x1, y1) in enumerate(boxes):
            colour = (255, 210, 0) if i == 0 else (0, 200, 255)
            cv2.rectangle(preview, (int(x0), int(y0)), (int(x1), int(y1)), colour, thick)
            cv2.putText(preview, str(i), (int(x0) + thick, int(y0) - 2 * thick), cv2.FONT_HERSHEY_SIMPLEX,
                        thick / 2.5, colour, thick, cv2.LINE_AA)
        n = len(boxes)
        status = ("1 face found." if n == 1 else
                  f"{n} faces found: choose the one to animate under **Face** (0 is the largest).")
        return preview, n, status

    def animate(self, photo: str | None, drive: str = "talk", seconds: float = 4.0, clip: str | None = None,
                face_index: int = 0, fine_tune_steps: int = 0, session: str = "local", progress=None,
                voice: str | None = None) -> Result:
        """Personalise on the photo and animate it; the watermarked video in the session's folder.
        Raises :class:`TalkingHeadError` (the page shows its message)."""
        from .checks import check_choice, check_int, check_number
        from .pipeline import write_video

        say = progress or (lambda *a, **k: None)
        check_choice("motion", drive, [v for _, v in _DRIVES])
        face_index = check_int("face", face_index, 0)
        fine_tune_steps = check_int("fine-tuning steps", fine_tune_steps, 0, MAX_FINE_TUNE_STEPS)
        if drive in ("talk", "idle"):
            seconds = check_number("seconds", seconds, 0, maximum=self.max_seconds)
        photo_path = self._check_upload(photo, "portrait")
        self._used_upload(session, str(photo_path))
        clip_path = voice_path = None
        if drive == "clip":
            clip_path = self._check_upload(clip, "driving clip")
            self._used_upload(session, str(clip_path))
            self._check_clip(clip_path)
        elif drive == "voice":
            from .audio import check_audio
            from .audio2motion import load_audio_model

            voice_path = self._check_upload(voice, "voice recording")
            self._used_upload(session, str(voice_path))
            check_audio(voice_path, max_seconds=self.max_seconds)  # no sound track, silence, too long
            with self._audio_lock:
                if self._audio_model is None:
                    self._audio_model = load_audio_model()
        out = self.session_dir(session) / f"talkinghead-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}.mp4"
        t0 = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            say(0.0, desc="finding the face" + (" and fine-tuning" if fine_tune_steps else ""))
            avatar = self.model.personalize([str(photo_path)], fine_tune_steps=fine_tune_steps, face_index=face_index)
            say(0.0, desc="animating")
            if clip_path is not None:
                video = avatar.animate(str(clip_path))
            elif voice_path is not None:
                video = avatar.animate_audio(str(voice_path), fps=PRESET_FPS, model=self._audio_model)
            else:
                video = avatar.animate_preset(drive, seconds=seconds, fps=PRESET_FPS)
            write_video(out, video)  # watermarked, with the provenance metadata; the clip's audio muxed in
        took = time.perf_counter() - t0
        notes = list(dict.fromkeys(str(w.message) for w in caught if issubclass(w.category, UserWarning)))
        for p in (photo_path, clip_path, voice_path):  # the file's name, not where the server keeps it
            notes = [n.replace(str(p), p.name) for n in notes] if p is not None else notes
        status = (f"Made {len(video)} frames at {video.fps:g} fps in {took:.0f} s with the {self.model.name} model"
                  + (f", fine-tuned for {avatar.info.get('fine_tune_steps', fine_tune_steps)} steps"
                     if fine_tune_steps else "")
                  + ". The video is watermarked as synthetic.")
        if notes:
            status += " Note: " + " ".join(notes)
        return Result(status, str(out))

    def verify(self, path: str | None, session: str = "local") -> Result:
        """What ``talkinghead verify FILE`` prints for an uploaded file, run as that command, so the tab
        says exactly what the CLI says (a file it cannot read is an :class:`InputError` with its message)."""
        import subprocess
        import sys

        p = self._check_upload(path, "file to check")
        self._used_upload(session, str(p))
        try:
            out = subprocess.run([sys.executable, "-m", "talkinghead", "verify", str(p)], capture_output=True,
                                 text=True, timeout=600, env={**os.environ, "PYTHONIOENCODING": "utf-8"})
        except subprocess.TimeoutExpired:
            raise InputError(f"Checking {p.name} did not finish in 10 minutes: try a shorter file.") from None
        if out.returncode == 2:  # unreadable: "FILE: error: ..." on stderr
            lines = [line for line in out.stderr.splitlines() if line.strip()]
            message = lines[-1] if lines else "verify failed without a message"
            raise InputError(message.split(": error: ", 1)[-1].replace(str(p), p.name))
        text = out.stdout.rstrip().replace(str(p), p.name)
        return Result(f"```\n$ talkinghead verify {p.name}\n{text}\n```\n(exit status {out.returncode}: "
                      "see `talkinghead verify --help`)")

    # ---- the page --------------------------------------------------------------------------------
    def build(self):
        """The Gradio Blocks of the page (imports gradio: :class:`DependencyError` where it is missing)."""
        from .deps import require

        os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before the import: it reads it there
        try:
            import gradio as gr
        except Exception:  # missing, or a broken install: one DependencyError line with the pip command
            require("gradio", "The web app", import_it=True)
            raise

        app = self

        def shown(exc: BaseException, *paths) -> str:
            """The one-line message, with the server's upload paths shortened to the file names."""
            if isinstance(exc, TalkingHeadError):
                msg = str(exc)
                for p in paths:
                    if p:
                        msg = msg.replace(str(p), Path(p).name)
                return f"**Error:** {msg}"
            traceback.print_exc()  # a bug: the traceback goes to the server's console, not the page
            return f"**Internal error** ({type(exc).__name__}); the server's console has the details."

        def session_of(request) -> str:
            return getattr(request, "session_hash", None) or "local"

        def on_photo(path, request: gr.Request):
            if not path:
                return None, gr.update(visible=False, choices=[("0", 0)], value=0), ""
            try:
                preview, n, status = app.photo_faces(path, session_of(request))
            except Exception as exc:  # noqa: BLE001 - every failure is shown as one line
                return None, gr.update(visible=False, choices=[("0", 0)], value=0), shown(exc, path)
            choices = [(f"{i} (largest)" if i == 0 else str(i), i) for i in range(n)]
            return preview, gr.update(visible=n > 1, choices=choices, value=0), status

        def on_sample(name):
            def pick(request: gr.Request):
                try:
                    return app.sample(name, session_of(request))
                except Exception as exc:  # noqa: BLE001
                    raise gr.Error(shown(exc).replace("**", "")) from None
            return pick

        def on_drive(drive):
            return (gr.update(visible=drive in ("talk", "idle")), gr.update(visible=drive == "clip"),
                    gr.update(visible=drive == "voice"))

        def on_animate(photo, drive, seconds, clip, voice, face, steps, request: gr.Request,
                       progress=gr.Progress(track_tqdm=True)):
            try:
                res = app.animate(photo, drive, seconds, clip, int(face or 0), int(steps or 0),
                                  session_of(request), progress, voice=voice)
            except Exception as exc:  # noqa: BLE001
                return None, None, shown(exc, photo, clip, voice)
            return res.path, res.path, res.status

        def on_verify(path, request: gr.Request):
            try:
                return app.verify(path, session_of(request)).status
            except Exception as exc:  # noqa: BLE001
                return shown(exc, path)

        def on_unload(request: gr.Request):
            app.end_session(session_of(request))

        with gr.Blocks(title="talkinghead", analytics_enabled=False,
                       delete_cache=(600, CACHE_MAX_AGE_S)) as blocks:
            gr.Markdown("# talkinghead\nAnimate a portrait or a painting, offline, on this computer.")
            gr.Markdown(NOTE, elem_id="th-note", padding=True)
            with gr.Tab("Animate", id="animate"):
                with gr.Row():
                    with gr.Column():
                        photo = gr.File(label="Portrait or painting (an image file)", file_types=["image"],
                                        height=140, elem_id="th-photo")
                        with gr.Row():
                            astronaut = gr.Button("Use the astronaut photo", size="sm", elem_id="th-sample-astronaut")
                            hopper = gr.Button("Use Grace Hopper's photo", size="sm", elem_id="th-sample-hopper")
                        preview = gr.Image(label="Faces found", interactive=False, height=240, elem_id="th-preview")
                        face = gr.Dropdown(choices=[("0", 0)], value=0, label="Face", visible=False, elem_id="th-face",
                                           info="the photo shows several faces: which one to animate")
                        drive = gr.Radio(choices=list(_DRIVES), value="talk", label="Motion", elem_id="th-drive")
                        seconds = gr.Slider(MIN_PRESET_SECONDS, self.max_seconds, value=4.0, step=0.2,
                                            label="Length (seconds)", elem_id="th-seconds")
                        clip = gr.File(label=f"Driving clip (a video of a face, at most {self.max_seconds:g} s)",
                                       file_types=["video"], visible=False, elem_id="th-clip")
                        voice = gr.File(label=f"Voice recording (wav, mp3, m4a... or a video's sound, at most "
                                              f"{self.max_seconds:g} s): the lips follow it", file_types=["audio", "video"],
                                        visible=False, elem_id="th-voice")
                        with gr.Accordion("Fine-tuning (optional, slower)", open=False):
                            steps = gr.Slider(0, MAX_FINE_TUNE_STEPS, value=0, step=10, label="Fine-tuning steps",
                                              info="0: the model as it is; 100-200 steps learn the face better "
                                                   "(a few seconds a step on a CPU)", elem_id="th-steps")
                        go = gr.Button("Animate", variant="primary", elem_id="th-animate")
                    with gr.Column():
                        status = gr.Markdown(elem_id="th-status", padding=True)
                        video = gr.Video(label="Result", interactive=False, autoplay=True, loop=True, height=400,
                                         elem_id="th-video")
                        download = gr.File(label="Download the video", interactive=False, height=100,
                                           elem_id="th-download")
                gr.Markdown(f"Uploads: at most {_file_size_text(self.max_upload_bytes)} a file; clips, voice "
                            f"recordings and presets: at most {self.max_seconds:g} s. Files are deleted when you "
                            "close the tab.")
            with gr.Tab("Verify", id="verify"):
                gr.Markdown("Check a video or an image for talkinghead's content credentials, watermark and metadata "
                            "(what `talkinghead verify FILE` does).")
                vfile = gr.File(label="Video or image to check", elem_id="th-verify-file")
                vgo = gr.Button("Verify", variant="primary", elem_id="th-verify")
                vstatus = gr.Markdown(elem_id="th-verify-status")

            photo.change(on_photo, [photo], [preview, face, status], api_name="faces")
            astronaut.click(on_sample("astronaut"), None, [photo], api_name="sample_astronaut")
            hopper.click(on_sample("grace_hopper"), None, [photo], api_name="sample_grace_hopper")
            drive.change(on_drive, [drive], [seconds, clip, voice], api_visibility="private")
            go.click(on_animate, [photo, drive, seconds, clip, voice, face, steps], [video, download, status],
                     api_name="animate", show_progress_on=[video], concurrency_limit=1, concurrency_id="model")
            vgo.click(on_verify, [vfile], [vstatus], api_name="verify", concurrency_limit=2)
            blocks.unload(on_unload)
        with blocks.route("Responsible use", f"/{RESPONSIBLE_USE_PATH}"):
            doc = _DOCS / "responsible-use.md"
            gr.Markdown(doc.read_text(encoding="utf-8") if doc.is_file() else
                        "# Responsible use\nRead `docs/responsible-use.md` in the talkinghead source: consent, "
                        "disclosure, what the watermark proves and what it does not.")
        blocks.queue(max_size=QUEUE_SIZE)
        self.blocks = blocks
        return blocks

    def launch(self, host: str = "127.0.0.1", port: int = 7860, quiet: bool = False) -> str:
        """Start serving in a background thread; returns the page's address. A port in use is an
        :class:`InputError`."""
        blocks = self.blocks or self.build()
        try:
            blocks.launch(server_name=host, server_port=port, prevent_thread_lock=True, share=False, quiet=quiet,
                          show_error=False, max_file_size=self.max_upload_bytes, inbrowser=False, ssr_mode=False,
                          pwa=False, mcp_server=False, enable_monitoring=False, run_history=False,
                          footer_links=["api", "settings"], css=CSS)
        except OSError as exc:
            if "empty port" in str(exc):  # Gradio's words for a port in use
                raise InputError(f"Port {port} on {host} is in use: choose another --port, or stop what uses it.") from None
            first = (str(exc).splitlines() or [""])[0]
            raise InputError(f"Cannot serve on {host}:{port} ({first}): choose another --host or --port.") from None
        self.url = f"http://{'localhost' if is_loopback(host) else host}:{blocks.server_port}/"
        return self.url


def _check_port(host: str, port: int) -> None:
    """An :class:`InputError` when ``host:port`` cannot be listened on (in use, or not this machine's)."""
    import socket

    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as s:
            s.bind(address)
    except socket.gaierror:
        raise InputError(f"Cannot serve on {host}: no such host here; use --host 127.0.0.1.") from None
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise InputError(f"Port {port} on {host} is in use: choose another --port, or stop what uses it.") from None
        raise InputError(f"Cannot serve on {host}:{port} ({exc.strerror or exc}): choose another --host or --port.") from None


def serve(host: str = "127.0.0.1", port: int = 7860, model: str | os.PathLike = "default",
          device: str = "auto") -> None:
    """Run the web app until Ctrl-C (or SIGTERM), then delete its temporary files."""
    _check_port(host, port)  # before the model loads (and before the warning: a host that fails is one line)
    if not is_loopback(host):
        warnings.warn(f"serving on {host}, not on this machine only: anyone who can reach it can upload photos, "
                      "animate them and download the results (there is no login). Use --host 127.0.0.1 unless "
                      "you mean to share it.", stacklevel=2)
    app = WebApp(model, device=device)
    try:
        url = app.launch(host, port, quiet=True)
        print(f"talkinghead web: serving {app.model.name} on {url} (Ctrl-C to stop)", flush=True)
        while True:
            time.sleep(1.0)
    except KeyboardInterrupt:
        app.close()
        print("talkinghead web: stopped; temporary files removed")
    finally:
        app.close()  # also on SIGTERM (the CLI raises it as an exception) and on errors
