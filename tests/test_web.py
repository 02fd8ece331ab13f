"""The web app (``talkinghead web``): its handlers without a browser, then the page in headless Chromium.

The handler tests need neither Gradio nor a browser and run on the tiny test model. The browser tests
start the app on a free loopback port in this process, drive Debian's ``chromium`` through its
``chromedriver`` with Selenium, and use the shipped model (as a user would); they skip, saying why,
where Gradio, Selenium or the browser is not installed (``make test`` installs all three where it can).
While they run, every network connection this process opens and every address the page loads is
recorded: anything but loopback fails the test (the app must work offline).

``TALKINGHEAD_SCREENSHOT_DIR=docs/figures`` keeps the screenshot of the page with its result there
(``docs/figures/web.png`` was made this way).
"""
import ipaddress
import os
import shutil
import socket
import sys
import tempfile
import time
import urllib.parse
import warnings
from pathlib import Path

import numpy as np
import pytest

from talkinghead.errors import InputError, NoFaceError
from talkinghead.web import WebApp, is_loopback

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
# what the machine notes say headless Chromium needs here: no sandbox as root, no GPU, and none of its
# background connections (a closed network refuses them, many at a time)
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1400,1200")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:gradio.queueing")  # its pandas calls
SECONDS = 0.4  # the preset's length in the browser test: 10 frames, a few seconds on a CPU


# ---- the handlers, without a browser -------------------------------------------------------------


@pytest.fixture(scope="module")
def app(model_dir, tmp_path_factory):
    cache = tmp_path_factory.mktemp("gradio-cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("GRADIO_TEMP_DIR", str(cache))
    web = WebApp(model_dir, device="cpu")
    yield web
    web.close()
    mp.undo()


@pytest.fixture(scope="module")
def photos(tmp_path_factory, astronaut):
    from talkinghead.io import write_image

    d = tmp_path_factory.mktemp("photos")
    write_image(d / "astronaut.png", astronaut)
    write_image(d / "two.png", np.hstack([astronaut, astronaut[:, ::-1]]))  # two faces, side by side
    yy, xx = np.mgrid[0:256, 0:256]
    write_image(d / "nofaces.png", np.stack([xx, yy, (xx + yy) // 2], -1).astype(np.uint8))  # a gradient
    (d / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really an image" * 10)
    return d


def test_a_photo_shows_its_faces(app, photos):
    preview, n, status = app.photo_faces(str(photos / "astronaut.png"), "s1")
    assert n == 1 and status == "1 face found." and preview.shape == (512, 512, 3)


def test_several_faces_let_the_user_pick_one(app, photos):
    _, n, status = app.photo_faces(str(photos / "two.png"), "s1")
    assert n == 2 and "2 faces found" in status and "Face" in status
    res = app.animate(str(photos / "two.png"), "idle", 0.2, face_index=1, session="s1")
    assert Path(res.path).stat().st_size > 0 and "Made 5 frames" in res.status
    with pytest.raises(InputError, match=r"^Face index 2 is out of range for .*two\.png, which shows 2 face"):
        app.animate(str(photos / "two.png"), "talk", 0.2, face_index=2, session="s1")


@pytest.mark.parametrize("name, error, message", [
    ("nofaces.png", NoFaceError, r"^No face was found in .*nofaces\.png: use a photo with a clearly visible"),
    ("broken.png", InputError, r"broken\.png is not a readable image"),
], ids=["no-face", "unreadable"])
def test_bad_photos_are_the_librarys_one_line_message(app, photos, name, error, message):
    for call in (lambda: app.photo_faces(str(photos / name), "s1"),
                 lambda: app.animate(str(photos / name), "talk", 0.2, session="s1")):
        with pytest.raises(error, match=message) as exc:
            call()
        assert "\n" not in str(exc.value)


def test_the_limits(model_dir, photos, tmp_path):
    from talkinghead.io import write_video

    small = WebApp(model_dir, device="cpu", max_upload_bytes=10 * 1024, max_seconds=0.2)
    try:
        with pytest.raises(InputError, match=r"^astronaut\.png is \d+ KB, more than the 10 KB the web app accepts"):
            small.photo_faces(str(photos / "astronaut.png"))
        clip = tmp_path / "clip.mp4"
        write_video(clip, [np.zeros((64, 64, 3), np.uint8)] * 10, 25.0)  # 0.4 s
        with pytest.raises(InputError, match=r"^clip\.mp4 is 0\.4 s long, more than the 0\.2 s the web app animates"):
            small._check_clip(clip)
        with pytest.raises(InputError, match="seconds must be a number > 0 and <= 0.2"):
            small.animate(str(photos / "nofaces.png"), "talk", 1.0)
    finally:
        small.close()
    with pytest.raises(InputError, match="No portrait was given"):
        small.animate(None, "talk", 0.1)


def test_fine_tuning_first(app, photos):
    res = app.animate(str(photos / "astronaut.png"), "idle", 0.2, fine_tune_steps=2, session="ft")
    assert "Made 5 frames" in res.status and "fine-tuned for 2 steps" in res.status, res.status
    app.end_session("ft")


def test_a_driving_clip(app, photos, astronaut, tmp_path):
    import cv2

    from talkinghead.io import write_video

    small = cv2.resize(astronaut, (256, 256), interpolation=cv2.INTER_AREA)
    frames = [cv2.warpAffine(small, cv2.getRotationMatrix2D((128.0, 100.0), 1.5 * (i - 3), 1.0), (256, 256),
                             borderMode=cv2.BORDER_REFLECT101) for i in range(6)]
    clip = tmp_path / "clip.mp4"
    write_video(clip, frames, 25.0)
    res = app.animate(str(photos / "astronaut.png"), "clip", clip=str(clip), session="c")
    assert "Made 6 frames at 25 fps" in res.status
    (tmp_path / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"junk" * 100)
    with pytest.raises(InputError, match=r"broken\.mp4") as exc:
        app.animate(str(photos / "astronaut.png"), "clip", clip=str(tmp_path / "broken.mp4"), session="c")
    assert "\n" not in str(exc.value)
    with pytest.raises(InputError, match="No driving clip was given"):
        app.animate(str(photos / "astronaut.png"), "clip", session="c")
    app.end_session("c")


def _wav(path: Path, samples: np.ndarray, rate: int = 16000) -> Path:
    import wave

    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return path


def test_a_voice_recording(app, photos, tmp_path):
    t = np.arange(16000) / 16000.0  # 1 s: a voice-like buzz, its loudness changing 4 times a second
    buzz = 0.3 * np.sign(np.sin(2 * np.pi * 140 * t)) * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t)) ** 2
    voice = _wav(tmp_path / "voice.wav", buzz + 0.01 * np.random.default_rng(0).standard_normal(len(t)))
    res = app.animate(str(photos / "astronaut.png"), "voice", voice=str(voice), session="a")
    assert "Made 25 frames at 25 fps" in res.status, res.status
    from talkinghead.io import VideoReader

    with VideoReader(res.path) as r:  # the recording is in the video
        assert r.has_audio
    with pytest.raises(InputError, match=r"silence\.wav holds only silence"):
        app.animate(str(photos / "astronaut.png"), "voice", voice=str(_wav(tmp_path / "silence.wav", 0 * t)),
                    session="a")
    with pytest.raises(InputError, match="No voice recording was given"):
        app.animate(str(photos / "astronaut.png"), "voice", session="a")
    app.end_session("a")


def test_sessions_are_apart_and_their_files_deleted(app, photos, astronaut):
    a = app.animate(app.sample("astronaut", "alice"), "talk", 0.2, session="alice")
    b = app.animate(str(photos / "astronaut.png"), "talk", 0.2, session="bob")
    da, db = Path(a.path).parent, Path(b.path).parent
    assert da != db and da.parent == db.parent == app.cache_dir()
    assert da.name.startswith("talkinghead-") and len(da.name) > 30  # a name nobody can guess
    assert sorted(p.name for p in da.iterdir()) == sorted(["astronaut.png", Path(a.path).name])
    app.end_session("alice")
    assert not da.exists() and Path(b.path).is_file()
    app.end_session("bob")
    assert not db.exists()
    assert (photos / "astronaut.png").is_file()  # only uploads inside Gradio's cache are deleted


def test_verify_says_what_the_cli_says(app, photos, capsys):
    from talkinghead.cli import main

    made = app.animate(str(photos / "astronaut.png"), "talk", 0.2, session="v")
    for path, status in ((made.path, 0), (str(photos / "astronaut.png"), 1)):
        capsys.readouterr()
        assert main(["verify", path]) == status
        said = capsys.readouterr().out.strip().replace(path, Path(path).name)
        shown = app.verify(path, "v").status
        assert said in shown and f"exit status {status}" in shown, (said, shown)
    with pytest.raises(InputError, match=r"broken\.png is not a readable image") as exc:  # the CLI's message
        app.verify(str(photos / "broken.png"), "v")
    assert str(photos) not in str(exc.value)  # with the file's name, not the server's path
    app.end_session("v")


def test_loopback_and_the_warning_for_other_hosts(monkeypatch):
    import talkinghead.web as web

    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1") and is_loopback("127.0.0.2")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5") and not is_loopback("example.org")

    class Stub:
        def __init__(self, *a, **k):
            self.model = type("M", (), {"name": "stub"})()

        def launch(self, *a, **k):
            raise KeyboardInterrupt  # as Ctrl-C would

        def close(self):
            pass
    monkeypatch.setattr(web, "WebApp", Stub)
    monkeypatch.setattr(web, "_check_port", lambda host, port: None)
    with pytest.warns(UserWarning, match="serving on 0.0.0.0, not on this machine only"):
        web.serve("0.0.0.0", 7860)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        web.serve("127.0.0.1", 7860)


def test_a_port_in_use_is_one_line_before_the_model_loads(monkeypatch, capsys):
    import talkinghead.web as web
    from talkinghead.cli import main

    monkeypatch.setattr(web, "WebApp", lambda *a, **k: pytest.fail("the model was loaded"))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["web", "--port", str(port)]) == 2
    assert capsys.readouterr().err.strip() == (f"talkinghead web: error: Port {port} on 127.0.0.1 is in use: choose "
                                               "another --port, or stop what uses it.")


# ---- the page, in headless Chromium --------------------------------------------------------------

_NETWORK: list[str] = []  # connections and lookups of anything but loopback, while the browser tests run
_RECORDING = [False]


def _audit(event, args):
    if not _RECORDING[0]:
        return
    if event == "socket.connect":
        addr = args[1]
        if isinstance(addr, tuple) and addr:
            try:
                if not ipaddress.ip_address(addr[0]).is_loopback:
                    _NETWORK.append(f"connect {addr}")
            except ValueError:
                _NETWORK.append(f"connect {addr}")
    elif event == "socket.getaddrinfo":
        host = args[0]
        if isinstance(host, bytes):
            host = host.decode()
        if host and not is_loopback(str(host)):
            _NETWORK.append(f"lookup {host}")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    pytest.importorskip("gradio", reason="needs the web extra: pip install 'talkinghead[web]'")
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("needs Debian's chromium and chromium-driver (`make test` installs them with apt-get as root)")
    pytest.importorskip("selenium", reason="needs selenium (in the test extras)")
    sys.addaudithook(_audit)  # records only while _RECORDING (hooks cannot be removed)
    _RECORDING[0] = True
    mp = pytest.MonkeyPatch()
    mp.setenv("GRADIO_TEMP_DIR", str(tmp_path_factory.mktemp("gradio-cache")))
    mp.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    with socket.socket() as s:  # a free loopback port
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    web = WebApp("default", device="cpu")
    url = web.launch("127.0.0.1", port, quiet=True)
    yield web, url
    web.close()
    mp.undo()
    _RECORDING[0] = False
    assert _NETWORK == [], f"the app reached beyond this machine: {_NETWORK}"


@pytest.fixture(scope="module")
def browser(server, tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    downloads = tmp_path_factory.mktemp("downloads")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        opts.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    opts.add_argument(f"--user-data-dir={profile}")
    opts.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                           "download.prompt_for_download": False})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.downloads = downloads
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_for(driver, js: str, timeout: float = 60.0, what: str = ""):
    """Poll a JavaScript expression until it is truthy; returns its value."""
    end = time.monotonic() + timeout
    while True:
        value = driver.execute_script(f"return ({js});")
        if value:
            return value
        if time.monotonic() > end:
            shot = Path(tempfile.gettempdir()) / "talkinghead-web-timeout.png"
            driver.save_screenshot(str(shot))
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what or js} (screenshot: {shot}); "
                        f"status: {text(driver, '#th-status')!r}")
        time.sleep(0.25)


def _text_js(selector: str) -> str:
    """JavaScript for the text a component shows (a Markdown's own text, not its progress timer)."""
    return (f"((document.querySelector({selector + ' [data-testid=markdown]'!r}) || document.querySelector({selector!r})"
            f" || {{innerText: ''}}).innerText.trim())")


def text(driver, selector: str) -> str:
    return driver.execute_script(f"return {_text_js(selector)};")


def wait_for_text(driver, selector: str, part: str, timeout: float = 60.0) -> str:
    return wait_for(driver, f"{_text_js(selector)}.includes({part!r}) && {_text_js(selector)}", timeout,
                    what=f"{part!r} in {selector}")


def open_page(driver, url):
    driver.get(url)
    wait_for(driver, "document.querySelector('#th-photo input[type=file]')", what="the page")


def upload(driver, selector: str, path: Path):
    driver.find_element("css selector", f"{selector} input[type=file]").send_keys(str(path))


def set_number(driver, selector: str, value: float):
    box = driver.find_element("css selector", f"{selector} input[type=number]")
    box.clear()
    box.send_keys(f"{value:g}\n")


def only_local_resources(driver, url: str) -> list[str]:
    origin = urllib.parse.urlsplit(url)
    names = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    return [n for n in names if not n.startswith(("data:", "blob:"))
            and urllib.parse.urlsplit(n).hostname != origin.hostname]


@pytest.mark.slow
def test_animate_the_astronaut_in_the_browser(server, browser, photos, tmp_path):
    from talkinghead.cli import main

    app, url = server
    open_page(browser, url)
    upload(browser, "#th-photo", photos / "astronaut.png")
    wait_for_text(browser, "#th-status", "1 face found")
    browser.find_element("css selector", "#th-drive input[value=talk]").click()
    set_number(browser, "#th-seconds", SECONDS)
    time.sleep(0.5)  # the number box updates the slider on change
    t0 = time.perf_counter()
    browser.find_element("css selector", "#th-animate").click()
    wait_for_text(browser, "#th-status", "Made ", timeout=180)
    took = time.perf_counter() - t0
    assert "Made 10 frames at 25 fps" in text(browser, "#th-status"), text(browser, "#th-status")
    # the result plays in the page
    state = browser.execute_async_script("""
        const done = arguments[arguments.length - 1];
        const v = document.querySelector('#th-video video');
        if (!v) { done({error: 'no <video> element'}); return; }
        v.muted = true;
        const report = () => done({duration: v.duration, time: v.currentTime, paused: v.paused,
                                   error: v.error && v.error.code, src: v.currentSrc});
        const start = () => v.play().then(() => setTimeout(report, 300), e => done({error: String(e)}));
        if (v.readyState >= 1) start(); else v.addEventListener('loadedmetadata', start, {once: true});
        setTimeout(report, 20000);""")
    assert state.get("error") is None, state
    assert state["duration"] > 0 and (state["time"] > 0 or not state["paused"]), state
    # the watermark note links to the responsible-use page
    note = browser.find_element("css selector", "#th-note a")
    assert note.get_attribute("href").rstrip("/").endswith("/responsible-use")
    shot = tmp_path / "web.png"
    browser.execute_script("window.scrollTo(0, 0)")
    browser.save_screenshot(str(shot))
    if os.environ.get("TALKINGHEAD_SCREENSHOT_DIR"):
        shutil.copy(shot, Path(os.environ["TALKINGHEAD_SCREENSHOT_DIR"]) / "web.png")
    assert shot.stat().st_size > 10_000
    # download it with the page's link, and verify it
    link = browser.find_element("css selector", "#th-download a")
    name = urllib.parse.unquote(link.get_attribute("href").rsplit("/", 1)[-1])
    link.click()
    saved = browser.downloads / name
    end = time.monotonic() + 30
    while not (saved.is_file() and saved.stat().st_size > 0) and time.monotonic() < end:
        time.sleep(0.25)
    assert saved.is_file(), f"{name} was not downloaded: {list(browser.downloads.iterdir())}"
    assert main(["verify", str(saved)]) == 0
    # nothing came from beyond this machine (Gradio's fonts, scripts, analytics...)
    assert only_local_resources(browser, url) == []
    assert _NETWORK == [], f"the app reached beyond this machine: {_NETWORK}"
    # the session's folder goes when the tab does
    folder = Path(urllib.parse.unquote(state["src"].split("file=", 1)[1])).parent
    assert folder.is_dir() and folder.name.startswith("talkinghead-")
    open_page(browser, url)  # a reload ends the session
    end = time.monotonic() + 30
    while folder.exists() and time.monotonic() < end:
        time.sleep(0.25)
    assert not folder.exists(), "the closed session's files were not deleted"
    print(f"\nweb: animated {SECONDS:g} s in the browser in {took:.1f} s")


@pytest.mark.slow
def test_bad_input_in_the_page_is_one_line(server, browser, photos, tmp_path):
    from talkinghead.web import MAX_UPLOAD_BYTES

    _, url = server
    open_page(browser, url)
    # no face: the library's message, with the file's name
    upload(browser, "#th-photo", photos / "nofaces.png")
    status = wait_for_text(browser, "#th-status", "Error")
    assert status == "Error: No face was found in nofaces.png: use a photo with a clearly visible, frontal face.", status
    browser.find_element("css selector", "#th-animate").click()  # the same again if animated anyway
    wait_for(browser, "document.querySelector('#th-video [data-testid=status-tracker]')"
                      ".classList.contains('hide')", what="the animation to end")
    assert text(browser, "#th-status") == status
    # several faces: the page asks which one
    open_page(browser, url)
    upload(browser, "#th-photo", photos / "two.png")
    wait_for_text(browser, "#th-status", "2 faces found")
    # Gradio renders the face menu in an update of its own, after the status text
    wait_for(browser, "document.querySelector('#th-face')?.offsetParent", what="the face menu")
    # the motion's own inputs show with it
    wait_for(browser, "document.querySelector('#th-drive input[value=voice]')", what="the motion choices")
    browser.find_element("css selector", "#th-drive input[value=voice]").click()
    wait_for(browser, "document.querySelector('#th-voice')?.offsetParent "
                      "&& !document.querySelector('#th-seconds')?.offsetParent", what="the voice upload")
    # an upload over the limit is refused as it uploads, in one line (a sparse file: no disk used)
    big = tmp_path / "big.png"
    with open(big, "wb") as fh:
        fh.truncate(MAX_UPLOAD_BYTES + 1)
    open_page(browser, url)
    upload(browser, "#th-photo", big)
    toast = wait_for(browser, "Array.from(document.querySelectorAll('[data-testid=toast-body]'))"
                              ".map(e => e.innerText).join(' ')", what="the size message")
    assert "exceed the maximum allowed size of 50.0 Mb" in toast and "big.png" in toast, toast
    assert "Traceback" not in browser.page_source


@pytest.mark.slow
def test_the_verify_tab(server, browser, photos):
    _, url = server
    open_page(browser, url)
    browser.find_element("xpath", "//button[@role='tab'][normalize-space()='Verify']").click()
    wait_for(browser, "document.querySelector('#th-verify-file input[type=file]')", what="the Verify tab")
    upload(browser, "#th-verify-file", photos / "astronaut.png")
    time.sleep(1.0)
    browser.find_element("css selector", "#th-verify").click()
    shown = wait_for_text(browser, "#th-verify-status", "exit status")
    assert "$ talkinghead verify astronaut.png" in shown and "exit status 1" in shown, shown
    assert "watermark: not found" in shown or "watermark not found" in shown, shown
    # the responsible-use page the note links to is served by the app itself
    browser.get(url.rstrip("/") + "/responsible-use")
    wait_for(browser, "document.body.innerText.includes('Consent and disclosure')", what="the responsible-use page")
    assert only_local_resources(browser, url) == []
