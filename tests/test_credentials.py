"""Content credentials (issue 21): every output carries a signed C2PA manifest that c2pa's own Reader sees as
AI-generated; `verify` tells intact, stripped, tampered, foreign and unmarked files apart."""
from __future__ import annotations

import datetime
import hashlib
import io as _io
import json
import os
import stat
import struct
import subprocess

import numpy as np
import pytest

c2pa = pytest.importorskip("c2pa")  # installs with the package (setup.cfg); a broken one: see the warning test

import talkinghead as th  # noqa: E402
from talkinghead import credentials as C  # noqa: E402
from talkinghead import io as thio  # noqa: E402
from talkinghead import pipeline  # noqa: E402
from talkinghead.cli import main  # noqa: E402
from talkinghead.errors import InputError, OutputError  # noqa: E402
from talkinghead.watermark import provenance_payload, verify_file  # noqa: E402

DST = C.DIGITAL_SOURCE_TYPE


def _independent(path) -> dict:
    """What c2pa-python's own Reader (default settings: no trust anchors of ours) says about ``path``."""
    with open(path, "rb") as fh:
        return json.loads(c2pa.Reader(C.media_type(path), fh).json())


def _active(store: dict) -> dict:
    return store["manifests"][store["active_manifest"]]


def _sources(store: dict) -> list[str]:
    return [a.get("digitalSourceType") for s in _active(store)["assertions"] if s["label"].startswith("c2pa.actions")
            for a in s["data"]["actions"]]


def _sha(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def _verify(capsys, *paths) -> tuple[int, str]:
    code = main(["verify", *map(str, paths)])
    return code, capsys.readouterr().out


@pytest.fixture(scope="module")
def photo(tmp_path_factory, astronaut):
    path = tmp_path_factory.mktemp("in") / "photo.png"
    thio.write_image(path, astronaut)
    return path


@pytest.fixture(scope="module")
def driving(photo, astronaut):
    path = photo.with_name("driving.mp4")
    thio.write_video(path, [astronaut] * 3, 25.0)
    return path


@pytest.fixture(scope="module")
def animated(tmp_path_factory, model_dir, photo, driving):
    """An mp4 and a png that `talkinghead animate` wrote (tiny model, dlib landmarks)."""
    out = tmp_path_factory.mktemp("out")
    common = ["--source", str(photo), "--model", str(model_dir), "--backend", "dlib", "--device", "cpu"]
    assert main(["animate", *common, "--driving", str(driving), "-o", str(out / "anim.mp4")]) == 0
    assert main(["animate", *common, "--motion-preset", "talk", "--seconds", "0.2", "-o", str(out / "still.png")]) == 0
    return out / "anim.mp4", out / "still.png"


@pytest.fixture(scope="module")
def signed_video(tmp_path_factory, astronaut):
    path = tmp_path_factory.mktemp("v") / "made.mp4"
    return th.write_video(path, [np.roll(astronaut, 3 * i, axis=1) for i in range(6)], fps=10, model_name="tiny")


def test_an_independent_reader_sees_animate_outputs_as_ai_generated(animated, photo, driving, model_dir):
    for path in animated:
        store = _independent(path)
        active = _active(store)
        assert DST in _sources(store), path
        assert active["claim_generator_info"][0]["name"] == "talkinghead"
        assert active["claim_generator_info"][0]["version"] == th.__version__
        assert store["validation_state"] != "Invalid"  # valid; untrusted: nobody trusts this installation's CA
        ours = next(a["data"] for a in active["assertions"] if a["label"] == C.ASSERTION)
        assert ours["model"] == model_dir.name and len(ours["model_weights_sha256"]) == 64
        assert ours["watermark"]["payload"] == provenance_payload(model_dir.name)
        # the inputs by hash, never embedded: no data, no thumbnail
        ingredients = {i["title"]: i for i in active["ingredients"]}
        assert ingredients["photo.png"]["instance_id"] == f"sha256:{_sha(photo)}"
        for ing in ingredients.values():
            assert ing["relationship"] == "inputTo" and "data" not in ing and "thumbnail" not in ing
    assert _active(_independent(animated[0]))["ingredients"][0]["instance_id"] == f"sha256:{_sha(driving)}"
    assert "driving.mp4" not in {i["title"] for i in _active(_independent(animated[1]))["ingredients"]}  # a preset


def test_round_trip_names_both_marks(animated, capsys):
    video, still = animated
    for path in (video, still):
        res = verify_file(path)
        rep = res.credentials
        assert rep.ours and rep.intact and rep.ai_generated and res.watermark.found
        # the two marks point to each other: the manifest's soft binding is the payload the watermark carries
        assert rep.soft_binding == rep.watermark_payload == res.watermark.payload
        assert "c2pa.watermarked" in rep.actions and res.verdict[0] == C.STATUS_VALID
    code, out = _verify(capsys, video, still)
    assert code == 0 and out.count("content credentials valid") == 2
    assert "hard binding matches the bytes" in out and "watermark: FOUND" in out


def _mdat(data: bytes) -> tuple[int, int]:
    """Offset and size of the top-level mdat box (the video stream) of an mp4."""
    at = 0
    while at + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[at:at + 8])
        header = 8
        if size == 1:
            size, header = struct.unpack(">Q", data[at + 8:at + 16])[0], 16
        if kind == b"mdat":
            return at + header, size - header
        at += size or len(data)
    raise AssertionError("no mdat box")


@pytest.mark.filterwarnings("ignore:.*decoded with errors")  # the changed byte damages a frame, as it should
def test_one_changed_byte_in_the_video_stream_is_tampered(signed_video, tmp_path, capsys):
    data = bytearray(signed_video.read_bytes())
    start, size = _mdat(bytes(data))
    data[start + size // 2] ^= 0x55
    bad = tmp_path / "tampered.mp4"
    bad.write_bytes(bytes(data))
    res = verify_file(bad)
    assert res.credentials.found and res.credentials.ours and not res.credentials.intact
    assert any("bmffHash.mismatch" in f for f in res.credentials.failures)
    code, out = _verify(capsys, bad)
    assert code == C.STATUS_CHANGED == 4 and "content changed after signing" in out


def test_a_reencode_drops_the_manifest_and_still_verifies_through_the_watermark(signed_video, tmp_path, capsys):
    import imageio_ffmpeg

    out = tmp_path / "reencoded.mp4"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(signed_video), "-c:v", "libx264",
                    "-crf", "23", str(out)], check=True)
    res = verify_file(out)
    assert not res.credentials.found and res.watermark.found and res.marked
    code, text = _verify(capsys, out)
    assert code == C.STATUS_STRIPPED == 3 and "manifest stripped, watermark found" in text


def _foreign_key() -> tuple[bytes, bytes]:
    """Another party's CA and signing certificate, made with cryptography."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=5)
    later = now + datetime.timedelta(days=30)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Other AI Lab CA")])
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Other AI Lab")])
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(1).not_valid_before(now).not_valid_after(later)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(ca_name).public_key(key.public_key())
            .serial_number(2).not_valid_before(now).not_valid_after(later)
            .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    return (cert.public_bytes(pem) + ca.public_bytes(pem),
            key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))


def test_a_foreign_manifest_is_reported_as_such_not_as_ours(astronaut, tmp_path, capsys):
    from PIL import Image

    plain = _io.BytesIO()
    Image.fromarray(astronaut).save(plain, format="PNG")
    chain, key = _foreign_key()
    manifest = {"claim_generator_info": [{"name": "OtherGen", "version": "2.0"}], "title": "other.png",
                "assertions": [{"label": "c2pa.actions", "data": {"actions": [
                    {"action": "c2pa.created", "digitalSourceType": DST}]}}]}
    out = tmp_path / "other.png"
    with c2pa.Signer.from_info(c2pa.C2paSignerInfo("es256", chain, key, None)) as signer, \
            c2pa.Builder(manifest) as builder, open(out, "w+b") as dst:
        builder.sign(signer, "image/png", _io.BytesIO(plain.getvalue()), dst)
    rep = verify_file(out).credentials
    assert rep.found and rep.intact and not rep.ours and rep.ai_generated and rep.generator == "OtherGen/2.0"
    assert rep.signer == "Other AI Lab" and rep.model is None
    code, text = _verify(capsys, out)
    assert code == C.STATUS_FOREIGN == 5 and "foreign manifest from OtherGen/2.0" in text
    assert "talkinghead output" not in text and "no talkinghead watermark" in text


def test_a_file_with_no_marks_exits_not_marked(astronaut, tmp_path, capsys):
    plain = thio.write_image(tmp_path / "plain.png", astronaut)
    code, text = _verify(capsys, plain)
    assert code == C.STATUS_NOT_MARKED == 1 and f"{plain}: not marked" in text and "manifest: none" in text


def test_several_files_exit_with_their_common_status_else_1(signed_video, astronaut, tmp_path, capsys):
    plain = thio.write_image(tmp_path / "plain.png", astronaut)
    assert _verify(capsys, signed_video, signed_video)[0] == 0
    assert _verify(capsys, signed_video, plain)[0] == 1
    (tmp_path / "bad.mp4").write_bytes(b"not a video" * 10)
    assert main(["verify", str(signed_video), str(tmp_path / "bad.mp4")]) == 2
    assert "bad.mp4: error:" in capsys.readouterr().err
    line = json.loads(_verify(capsys, "--json", signed_video)[1])
    assert line["status"] == 0 and line["credentials"]["ours"] and line["credentials"]["ai_generated"]


def test_no_watermark_keeps_the_manifest_only_no_credentials_removes_it(astronaut, tmp_path, capsys):
    off = th.write_image(tmp_path / "nowm.png", astronaut, model_name="tiny", watermark=False)
    rep = verify_file(off).credentials
    assert rep.ours and rep.intact and "c2pa.watermarked" not in rep.actions and rep.soft_binding is None
    assert rep.provenance["watermark"]["state"].startswith("off")
    assert _verify(capsys, off)[0] == 0  # the manifest alone says it is talkinghead's
    bare = th.write_image(tmp_path / "nocred.png", astronaut, model_name="tiny", credentials=False)
    with pytest.raises(c2pa.C2paError.ManifestNotFound):
        _independent(bare)
    assert _verify(capsys, bare)[0] == C.STATUS_STRIPPED


def test_the_installation_key_is_made_once_owner_only(monkeypatch, tmp_path, astronaut):
    monkeypatch.delenv(C.CERT_ENV)
    monkeypatch.delenv(C.KEY_ENV)
    monkeypatch.setenv("TALKINGHEAD_HOME", str(tmp_path / "home"))
    path = C.installation_key_path()
    assert path == tmp_path / "home" / "c2pa" / "signing.pem" and not path.exists()
    first = C.signing_key()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert C.signing_key().chain == first.chain  # made on first use only
    out = th.write_image(tmp_path / "o.png", astronaut, model_name="tiny")
    store = _independent(out)  # an outsider: valid but untrusted (a self-signed installation CA)
    assert store["validation_state"] == "Valid"
    assert [s["code"] for s in store["validation_status"]] == ["signingCredential.untrusted"]
    assert _active(store)["signature_info"]["common_name"] == first.subject
    assert "not a trusted publisher" in _active(store)["signature_info"]["issuer"]
    assert verify_file(out).credentials.trusted  # here, this installation's CA is known


def test_the_users_own_key_by_option_and_a_bad_one_before_any_work(model_dir, photo, tmp_path, capsys, monkeypatch):
    chain, key = _foreign_key()
    (tmp_path / "cert.pem").write_bytes(chain)
    (tmp_path / "key.pem").write_bytes(key)
    out = tmp_path / "mine.png"
    assert main(["animate", "--source", str(photo), "--motion-preset", "talk", "--seconds", "0.1", "--model",
                 str(model_dir), "--backend", "dlib", "--sign-cert", str(tmp_path / "cert.pem"), "--sign-key",
                 str(tmp_path / "key.pem"), "-o", str(out)]) == 0
    assert _active(_independent(out))["signature_info"]["common_name"] == "Other AI Lab"
    capsys.readouterr()

    def no_work(*a, **k):
        raise AssertionError("the key should have been refused before the model was loaded")
    monkeypatch.setattr(pipeline, "load", no_work)
    (tmp_path / "other.pem").write_bytes(_foreign_key()[1])  # a key that is not the certificate's
    for extra, says in ((["--sign-key", str(tmp_path / "other.pem")], "cannot sign content credentials"),
                        ([], "give its private key too"),
                        (["--sign-key", str(tmp_path / "key.pem"), "--no-credentials"], "drop one or the other")):
        code = main(["animate", "--source", str(photo), "--motion-preset", "talk", "--model", str(model_dir),
                     "--sign-cert", str(tmp_path / "cert.pem"), *extra, "-o", str(tmp_path / "x.mp4")])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and says in err[0] and "Traceback" not in err[0], err
    assert not (tmp_path / "x.mp4").exists()


def test_a_self_signed_certificate_is_refused_with_what_c2pa_needs(tmp_path, monkeypatch):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "me")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    (tmp_path / "c.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "k.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    monkeypatch.setenv(C.CERT_ENV, str(tmp_path / "c.pem"))  # the environment variables take the same path
    monkeypatch.setenv(C.KEY_ENV, str(tmp_path / "k.pem"))
    with pytest.raises(InputError, match="cannot sign content credentials .*issued by a CA"):
        C.signing_key()
    monkeypatch.delenv(C.KEY_ENV)
    with pytest.raises(InputError, match="TALKINGHEAD_C2PA_KEY too"):
        C.signing_key()


def test_without_a_working_c2pa_the_output_is_still_written_with_one_warning(monkeypatch, astronaut, tmp_path):
    monkeypatch.setattr(C, "_c2pa_or_reason", lambda: (None, "ImportError: no wheel for this platform"))
    with pytest.warns(UserWarning) as seen:
        out = th.write_video(tmp_path / "o.mp4", [astronaut] * 3, fps=5, model_name="tiny")
    assert len(seen) == 1 and "c2pa-python cannot sign here (ImportError: no wheel" in str(seen[0].message)
    res = verify_file(out)
    assert res.watermark.found and res.metadata_found and not res.credentials.found
    assert "c2pa-python cannot read" in res.credentials.note and res.verdict[0] == C.STATUS_STRIPPED


def test_without_a_working_c2pa_animate_says_so_in_one_warning_line(monkeypatch, model_dir, photo, tmp_path, capsys):
    monkeypatch.setattr(C, "_c2pa_or_reason", lambda: (None, "ImportError: no wheel for this platform"))
    out = tmp_path / "o.mp4"
    assert main(["animate", "--source", str(photo), "--motion-preset", "talk", "--seconds", "0.2", "--model",
                 str(model_dir), "--backend", "dlib", "-o", str(out)]) == 0
    warned = [line for line in capsys.readouterr().err.splitlines() if "warning:" in line]
    assert len(warned) == 1 and warned[0].startswith("talkinghead animate: warning: c2pa-python cannot sign here")
    assert verify_file(out).watermark.found
    # a key asked for by name is not dropped with a warning: one line, before any work
    assert main(["animate", "--source", str(photo), "--motion-preset", "talk", "--model", str(model_dir),
                 "--sign-cert", str(photo), "--sign-key", str(photo), "-o", str(tmp_path / "o2.mp4")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--sign-cert/--sign-key need c2pa-python" in err, err
    assert not (tmp_path / "o2.mp4").exists()


def test_a_failed_check_after_signing_keeps_the_earlier_file_and_leaves_no_temp(monkeypatch, astronaut, tmp_path):
    out = tmp_path / "o.png"
    out.write_bytes(b"earlier")
    monkeypatch.setattr(C, "read_credentials", lambda *a, **k: C.ManifestReport(True, failures=("made up",)))
    with pytest.raises(OutputError, match=r"o\.png: its content credentials did not verify after signing \(made up\)"
                                          r"; the earlier o\.png is kept"):
        th.write_image(out, astronaut, model_name="tiny")
    with pytest.raises(OutputError, match="nothing was written"):
        th.write_video(tmp_path / "v.mp4", [astronaut] * 2, fps=5, model_name="tiny")
    assert out.read_bytes() == b"earlier" and sorted(os.listdir(tmp_path)) == ["o.png"]


@pytest.mark.parametrize("name", ["o.mov", "o.m4v", "o.jpg", "o.webp", "o.tif", "o.gif"])
def test_every_signable_format_round_trips(astronaut, tmp_path, name):
    small = astronaut[::2, ::2]
    if name.endswith(("mov", "m4v")):
        out = th.write_video(tmp_path / name, [small] * 2, fps=5, model_name="tiny")
    else:
        out = th.write_image(tmp_path / name, small, model_name="tiny")
    assert DST in _sources(_independent(out))
    rep = verify_file(out).credentials
    assert rep.ours and rep.intact and rep.model == "tiny"


def test_a_format_that_cannot_carry_a_manifest_is_written_with_a_warning(astronaut, tmp_path, capsys):
    with pytest.warns(UserWarning, match=r"\.mkv files cannot carry C2PA content credentials"):
        out = th.write_video(tmp_path / "o.mkv", [astronaut] * 3, fps=5, model_name="tiny")
    code, text = _verify(capsys, out)
    assert code == C.STATUS_STRIPPED and "cannot carry C2PA manifests" in text


def test_weights_digest_is_the_weights(model_dir):
    import torch

    model = th.load(model_dir, device="cpu").model
    state = model.state_dict()
    digest = C.weights_digest(state)
    assert digest == C.weights_digest(dict(reversed(list(state.items()))))  # by name, not by order
    name = next(k for k, v in state.items() if v.is_floating_point() and v.numel() > 1)
    changed = {**state, name: state[name].clone()}
    changed[name].view(-1)[0] += 1e-3
    assert C.weights_digest(changed) != digest
    assert C.weights_digest({**state, name: state[name].to(torch.bfloat16)}) != digest


def test_damaged_files_are_reported_never_raised(animated, photo, tmp_path):
    """c2pa's parser on changed bytes: a changed manifest is 'changed', a damaged unsigned file has none."""
    rng = np.random.default_rng(0)
    for src in (*animated, photo):
        data = src.read_bytes()
        at = data.find(b"jumb")
        for i in range(12):
            b = bytearray(data)
            if i % 3 == 0:
                b = b[:int(rng.integers(1, len(b)))]
            else:
                lo = at if (at >= 0 and i % 3 == 1) else 0
                for k in rng.integers(lo, min(len(b), lo + 4000) if lo else len(b), 4):
                    b[int(k)] ^= 0xA5
            bad = tmp_path / f"bad{src.suffix}"
            bad.write_bytes(bytes(b))
            rep = C.read_credentials(bad)
            if src == photo:
                assert not rep.found  # never signed: never "changed after signing"
            elif i % 3 == 0:
                assert rep.found is False or not rep.intact  # truncated: the binding no longer holds


def test_c2pa_data_is_found_behind_other_jumbf_boxes(tmp_path):
    """A manifest store after another JUMBF box, and one split across the 1 MiB read blocks."""
    other = b"\x00\x00\x00\x20jumb\x00\x00\x00\x18jumdxmp-only-box" + b"\x00" * 64
    store = b"\x00\x00\x00\x20jumb\x00\x00\x00\x18jumdc2pa"
    for name, data in (("after.bin", other + store), ("split.bin", b"\x00" * ((1 << 20) - 6) + store),
                       ("none.bin", other * 3)):
        (tmp_path / name).write_bytes(data)
    assert C._holds_c2pa_data(tmp_path / "after.bin") and C._holds_c2pa_data(tmp_path / "split.bin")
    assert not C._holds_c2pa_data(tmp_path / "none.bin")
