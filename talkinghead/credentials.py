"""Content credentials: a signed C2PA manifest in every file talkinghead writes, and reading one back.

The invisible watermark (:mod:`talkinghead.watermark`) tells our own ``verify`` that a file is
synthetic. C2PA content credentials say it to everyone else, in the industry's open format: camera
makers, editors, generators and platforms read it, and the EU AI Act's labelling duty (Art. 50) points
to it. Each output of :func:`talkinghead.pipeline.write_video` / ``write_image`` carries one manifest,
signed when the file is complete and checked before it is renamed into place (a failure leaves no
half-signed file under the final name). The manifest holds:

- a ``c2pa.created`` action with the IPTC digital source type ``trainedAlgorithmicMedia`` (and
  ``c2pa.watermarked`` when the watermark is on);
- the claim generator ``talkinghead/<version>``;
- the ``org.talkinghead.provenance`` assertion: the model's name, the SHA-256 of the weights that made
  the frames (:func:`weights_digest`), the watermark's scheme and payload id, and the inputs by hash;
- a ``c2pa.soft-binding`` assertion holding the watermark's payload id, so the two marks point to each
  other (the watermark's payload names the model; the manifest names the payload);
- the source portrait(s) and the driving clip as ``inputTo`` ingredients, by SHA-256 and file name only:
  never embedded, no thumbnail.

**Signing key**, in this order: the ``cert``/``key`` files given (``--sign-cert``/``--sign-key``), the
files named by ``$TALKINGHEAD_C2PA_CERT`` / ``$TALKINGHEAD_C2PA_KEY``, else this installation's key, made
on first use in ``cache_dir()/c2pa/signing.pem`` (``$TALKINGHEAD_HOME``, default ``~/.cache/talkinghead``;
the folder ``0700``, the file ``0600``). C2PA refuses a self-signed end-entity certificate, so the
installation's signing certificate is issued by a self-signed CA certificate made with it, whose private
key is thrown away at once. That key **identifies this installation, not a trusted publisher**: readers
report its signature as valid but untrusted. Nothing is fetched, online or off: no timestamp authority,
no OCSP, no remote manifest.

**Formats**: mp4, mov, m4v, png, jpeg, webp, tiff and gif carry a manifest. mkv, bmp and the netpbm
formats cannot; they are written without one, with a warning. Where ``c2pa-python`` does not import (no
wheel for the platform), outputs are written without credentials, still watermarked and tagged, with one
warning line.

>>> from talkinghead.credentials import read_credentials      # doctest: +SKIP
>>> report = read_credentials("out.mp4")
>>> report.ours, report.intact, report.ai_generated, report.model
(True, True, True, 'default')
"""
from __future__ import annotations

import dataclasses
import datetime
import errno
import functools
import hashlib
import io as _io
import json
import mimetypes
import os
import re
import secrets
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from .errors import InputError, OutputError
from .hub import sha256_file

DIGITAL_SOURCE_TYPE = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
GENERATOR = "talkinghead"
ASSERTION = "org.talkinghead.provenance"  # our own assertion: model, weights, watermark, inputs
SOFT_BINDING_ALG = "org.talkinghead.ss-v2"  # the watermark scheme talkinghead-ss-v2, as a soft binding
CERT_ENV = "TALKINGHEAD_C2PA_CERT"
KEY_ENV = "TALKINGHEAD_C2PA_KEY"
KEY_FOLDER = "c2pa"
KEY_FILE = "signing.pem"  # the private key, then the signing certificate, then the CA certificate
CA_YEARS, CERT_YEARS = 20, 10
# the formats c2pa-python embeds a manifest in, among those the library writes
MEDIA_TYPES = {".mp4": "video/mp4", ".m4v": "video/x-m4v", ".mov": "video/quicktime", ".png": "image/png",
               ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp", ".tif": "image/tiff",
               ".tiff": "image/tiff", ".gif": "image/gif"}
# verify exit statuses, one per verdict (docs/cli.md#verify)
STATUS_VALID = 0      # talkinghead's manifest, the content unchanged since signing
STATUS_NOT_MARKED = 1  # neither mark
STATUS_UNREADABLE = 2  # the file could not be read
STATUS_STRIPPED = 3   # no manifest (stripped by a re-encode, or never written), the watermark found
STATUS_CHANGED = 4    # a manifest whose hard binding or signature no longer matches the bytes
STATUS_FOREIGN = 5    # a valid manifest from another generator
# nothing leaves the machine: no remote manifest, no OCSP (timestamps: the signer is given no TSA)
_OFFLINE = {"verify": {"remote_manifest_fetch": False, "ocsp_fetch": False}}
_SIGN_SETTINGS = {"verify": {**_OFFLINE["verify"], "verify_after_sign": False},  # read back below instead
                  "builder": {"thumbnail": {"enabled": False}}}  # our own frames are the file itself
_CREDENTIAL_CODES = ("signingCredential.", "timeStamp.")  # about the signer's trust, not about the bytes


# ------------------------------------------------------------------------------------ availability


@functools.lru_cache(maxsize=1)
def _c2pa_or_reason() -> tuple[Any, str | None]:
    try:
        import c2pa

        c2pa.sdk_version()  # the native library loads
        if not hasattr(c2pa, "Context"):  # before 0.38: another API
            return None, f"c2pa-python {getattr(c2pa, '__version__', '?')} is older than 0.38"
        return c2pa, None
    except Exception as exc:  # ImportError; OSError from a native library that does not load
        first = (str(exc).splitlines() or [""])[0]
        return None, f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def unavailable_reason() -> str | None:
    """Why ``c2pa-python`` cannot sign or read here, or None when it can."""
    return _c2pa_or_reason()[1]


def _c2pa():
    mod, reason = _c2pa_or_reason()
    if mod is None:
        raise RuntimeError(f"c2pa-python is unavailable ({reason})")
    return mod


def media_type(path: str | os.PathLike) -> str | None:
    """The media type c2pa embeds a manifest in for ``path``'s extension, or None (mkv, bmp...)."""
    return MEDIA_TYPES.get(Path(path).suffix.lower())


# ------------------------------------------------------------------------------------ hashing


def weights_digest(tensors: Mapping[str, Any]) -> str:
    """SHA-256 of named tensors, in name order: for each, ``name``, dtype and shape (NUL-separated,
    UTF-8), then its bytes in C order on the CPU. The same weights give the same digest whatever file
    they were loaded from; ``talkinghead.credentials.weights_digest(model.state_dict())`` recomputes it."""
    import torch

    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach()
        h.update(f"{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        flat = t.reshape(-1).cpu().contiguous()
        if flat.numel():
            h.update(flat.view(torch.uint8).numpy())
    return h.hexdigest()


# ------------------------------------------------------------------------------------ what the manifest says


@dataclasses.dataclass(frozen=True)
class Ingredient:
    """One input of an output, by hash: ``title`` (a file name without its folder, or ``photo 0`` for an
    array), ``sha256`` (of the file's bytes, or of the decoded pixels where there is no file), its
    media ``format``, its ``role`` (``source portrait``, ``driving clip``, ``audio``) and what was
    hashed (``hashed``: ``file`` or ``pixels``)."""

    title: str
    sha256: str
    format: str
    role: str
    hashed: str = "file"

    @classmethod
    def of_file(cls, path: str | os.PathLike, role: str) -> "Ingredient":
        path = Path(path)
        kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return cls(path.name, sha256_file(path), kind, role)

    @classmethod
    def of_pixels(cls, image, title: str, role: str) -> "Ingredient":
        """An array input: the SHA-256 of its uint8 ``(H, W, 3)`` RGB pixels, prefixed by the shape."""
        import numpy as np

        a = np.ascontiguousarray(image)
        h = hashlib.sha256(f"{a.dtype}\0{a.shape}\0".encode())
        h.update(a)
        return cls(title, h.hexdigest(), "image/x-raw-rgb", role, "pixels")

    def definition(self) -> dict:
        """The manifest's ingredient: no data, no thumbnail; the hash as its instance id."""
        return {"title": self.title, "format": self.format, "relationship": "inputTo",
                "instance_id": f"sha256:{self.sha256}", "description": f"{self.role} ({self.hashed} SHA-256)"}


@dataclasses.dataclass(frozen=True)
class Provenance:
    """What the manifest of one output says: the model, the SHA-256 of its weights, the watermark payload
    id (None: the watermark is off), the inputs and a few ``details`` (``{"motion": "preset talk"}``)."""

    model_name: str = "unknown"
    weights_sha256: str | None = None
    watermark_payload: str | None = None
    ingredients: tuple[Ingredient, ...] = ()
    details: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def manifest(self, title: str, media: str) -> dict:
        """The manifest definition c2pa's Builder takes."""
        from . import __version__
        from .watermark import SCHEME

        created = {"action": "c2pa.created", "digitalSourceType": DIGITAL_SOURCE_TYPE,
                   "softwareAgent": {"name": GENERATOR, "version": __version__},
                   "description": f"talking-head animation generated by the model {self.model_name}"}
        actions = [created]
        assertions = []
        if self.watermark_payload is not None:
            actions.append({"action": "c2pa.watermarked",
                            "description": f"invisible watermark {SCHEME}, payload {self.watermark_payload!r}"})
            assertions.append({"label": "c2pa.soft-binding", "data": {
                "alg": SOFT_BINDING_ALG,
                "blocks": [{"scope": {}, "value": _b64(self.watermark_payload.encode("ascii"))}]}})
        ours = {
            "generator": f"{GENERATOR}/{__version__}",
            "model": self.model_name,
            "model_weights_sha256": self.weights_sha256,
            "watermark": ({"scheme": SCHEME, "payload": self.watermark_payload} if self.watermark_payload is not None
                          else {"scheme": None, "state": "off (disabled by the user)"}),
            "inputs": [{"role": i.role, "title": i.title, "sha256": i.sha256, "hashed": i.hashed}
                       for i in self.ingredients],
            **{str(k): str(v) for k, v in self.details.items()},
        }
        assertions.insert(0, {"label": "c2pa.actions", "data": {"actions": actions}})
        assertions.append({"label": ASSERTION, "data": ours})
        return {"claim_generator_info": [{"name": GENERATOR, "version": __version__}], "title": title,
                "format": media, "ingredients": [i.definition() for i in self.ingredients],
                "assertions": assertions}


def _b64(raw: bytes) -> str:
    import base64

    return base64.b64encode(raw).decode("ascii")


def provenance_of(video: Any, model_name: str, watermark_payload: str | None) -> Provenance:
    """The :class:`Provenance` of the frames of ``video``: an :class:`talkinghead.pipeline.Animation`
    gives its avatar's weights and its input files (driving clip, audio, photos); a plain iterable or
    None gives only the model's name and the watermark."""
    avatar = getattr(video, "avatar", None)
    weights = None
    ingredients: list[Ingredient] = []
    details: dict[str, str] = {}
    if avatar is not None:
        tensors = {f"generator.{k}": v for k, v in avatar.generator.state_dict().items()}
        tensors.update({f"state.{k}": v for k, v in avatar.state.items()})
        weights = weights_digest(tensors)
        info = dict(getattr(video, "info", {}) or {})
        roles = {}
        for p in avatar.info.get("photos", []):
            roles.setdefault(os.path.abspath(str(p)), "source portrait")
        if info.get("driving"):
            roles[os.path.abspath(str(info["driving"]))] = "driving clip"
        audio = getattr(video, "audio_from", None)
        if audio and os.path.abspath(str(audio)) not in roles:
            roles[os.path.abspath(str(audio))] = "audio"
        for p in getattr(video, "inputs", []):
            ingredients.append(Ingredient.of_file(p, roles.get(os.path.abspath(str(p)), "input")))
        if not any(i.role == "source portrait" for i in ingredients):  # arrays, or a saved avatar
            title = os.path.basename(str(avatar.source.name)) or "photo"  # a name, never a folder
            ingredients.insert(0, Ingredient.of_pixels(avatar.source.image, title, "source portrait"))
        if info.get("preset"):
            details["motion"] = f"preset {info['preset']}"
        elif info.get("motion"):
            details["motion"] = str(info["motion"])
        if avatar.info.get("fine_tune_steps"):
            details["fine_tune_steps"] = str(avatar.info["fine_tune_steps"])
    return Provenance(model_name, weights, watermark_payload, tuple(ingredients), details)


# ------------------------------------------------------------------------------------ signing keys


@dataclasses.dataclass(frozen=True)
class SigningKey:
    """A certificate chain (PEM, the signing certificate first) and its private key (PEM), with the
    C2PA algorithm the key calls for. ``origin`` says where it came from, for messages."""

    chain: bytes = dataclasses.field(repr=False)
    key: bytes = dataclasses.field(repr=False)
    alg: str = "es256"
    origin: str = ""

    @property
    def subject(self) -> str:
        """The signing certificate's common name."""
        from cryptography import x509
        from cryptography.x509.oid import NameOID

        cert = x509.load_pem_x509_certificate(_pem_blocks(self.chain, "CERTIFICATE")[0])
        names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return str(names[0].value) if names else cert.subject.rfc4514_string()

    @property
    def root(self) -> bytes:
        """The last certificate of the chain (PEM): the one a verifier trusts to trust this key."""
        return _pem_blocks(self.chain, "CERTIFICATE")[-1]


def _pem_blocks(data: bytes, kind: str) -> list[bytes]:
    pattern = rb"-----BEGIN " + kind.encode() + rb"-----.+?-----END " + kind.encode() + rb"-----\s*"
    return [m.group(0).strip() + b"\n" for m in re.finditer(pattern, data, re.S)]


def _alg_of(private_key) -> str | None:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        return {"secp256r1": "es256", "secp384r1": "es384", "secp521r1": "es512"}.get(private_key.curve.name)
    if isinstance(private_key, ed25519.Ed25519PrivateKey):
        return "ed25519"
    if isinstance(private_key, rsa.RSAPrivateKey):
        return "ps256"  # C2PA takes RSA keys with PSS padding only
    return None


def _read(path: Path, what: str, hint: str) -> bytes:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"The {what} {path} does not exist: {hint}.") from None
    except IsADirectoryError:
        raise InputError(f"The {what} {path} is a folder: give the path of a PEM file.") from None
    except PermissionError:
        raise InputError(f"The {what} {path} cannot be read (permission denied): give yourself read access.") from None
    except OSError as exc:
        raise InputError(f"The {what} {path} cannot be read ({exc.strerror or exc}): {hint}.") from None
    return data


def _key_from_pem(chain: bytes, key_pem: bytes, origin: str) -> SigningKey:
    """A checked :class:`SigningKey`: PEM certificates, an unencrypted private key of a kind C2PA signs
    with, and a chain c2pa accepts (a test signature on a tiny PNG in memory)."""
    from cryptography.hazmat.primitives import serialization

    if not _pem_blocks(chain, "CERTIFICATE"):
        raise InputError(f"{origin} holds no PEM certificate (-----BEGIN CERTIFICATE-----): give the signing "
                         "certificate, then the certificates that issued it, in PEM.")
    blocks = re.findall(rb"-----BEGIN [A-Z ]*PRIVATE KEY-----.+?-----END [A-Z ]*PRIVATE KEY-----", key_pem, re.S)
    if not blocks:
        raise InputError(f"{origin} holds no PEM private key (-----BEGIN PRIVATE KEY-----): give the signing "
                         "certificate's private key in PEM.")
    try:
        private = serialization.load_pem_private_key(blocks[0], password=None)
    except TypeError:
        raise InputError(f"The private key of {origin} is encrypted: give an unencrypted PEM key (c2pa-python takes "
                         "no password), e.g. `openssl pkey -in KEY -out plain.pem`.") from None
    except ValueError as exc:
        raise InputError(f"The private key of {origin} cannot be read ({exc}): give a PEM private key.") from None
    alg = _alg_of(private)
    if alg is None:
        raise InputError(f"The private key of {origin} is of a kind C2PA does not sign with: use an EC key "
                         "(P-256, P-384, P-521), Ed25519 or RSA.")
    signing = SigningKey(b"".join(_pem_blocks(chain, "CERTIFICATE")), blocks[0] + b"\n", alg, origin)
    _test_sign(signing)
    return signing


_TINY_PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00\x90wS"
             b"\xde\x00\x00\x00\x0cIDATx\x9cc\xf8\xff\xff?\x00\x05\xfe\x02\xfe\r\xefF\xb8\x00\x00\x00\x00IEND"
             b"\xaeB`\x82")


def _test_sign(key: SigningKey) -> None:
    """Sign a 1-pixel PNG in memory: c2pa's objections to a chain (a self-signed end-entity certificate, a
    missing key usage, a key that does not match) come up here, before any frame is generated."""
    c2pa = _c2pa()
    try:
        checked = {**_SIGN_SETTINGS, "verify": {**_SIGN_SETTINGS["verify"], "verify_after_sign": True}}  # key = cert?
        with c2pa.Context.from_dict(checked) as ctx, _signer(c2pa, key) as signer, \
                c2pa.Builder(Provenance().manifest("test.png", "image/png"), ctx) as builder:
            builder.sign(signer, "image/png", _io.BytesIO(_TINY_PNG), _io.BytesIO())
    except c2pa.C2paError as exc:
        raise InputError(f"{key.origin} cannot sign content credentials ({exc}): C2PA needs a signing certificate "
                         "with the digitalSignature key usage and the emailProtection or documentSigning extended "
                         "key usage, issued by a CA (not self-signed) whose certificate follows it in the file, and "
                         "its own private key; or leave the key out to sign with this installation's key.") from None


def _signer(c2pa, key: SigningKey):
    return c2pa.Signer.from_info(c2pa.C2paSignerInfo(key.alg, key.chain, key.key, None))  # None: no timestamp server


def installation_key_path() -> Path:
    """Where this installation's signing key is (made on first use): ``cache_dir()/c2pa/signing.pem``."""
    from .hub import cache_dir

    return cache_dir() / KEY_FOLDER / KEY_FILE


def signing_key(cert: str | os.PathLike | None = None, key: str | os.PathLike | None = None) -> SigningKey:
    """The key outputs are signed with: ``cert`` and ``key`` (PEM files: the signing certificate followed by
    the CA certificates above it; its private key, unencrypted), else ``$TALKINGHEAD_C2PA_CERT`` and
    ``$TALKINGHEAD_C2PA_KEY``, else this installation's key (:func:`installation_key_path`), made on first
    use. Raises :class:`InputError` for files that are missing, unreadable or that C2PA refuses, and
    :class:`OutputError` when the installation's key cannot be written."""
    if (cert is None) != (key is None):
        given, missing = ("the certificate", "its private key") if key is None else ("the private key", "its certificate")
        raise InputError(f"Only {given} was given for signing content credentials: give {missing} too "
                         "(--sign-cert CERT.pem --sign-key KEY.pem), or neither to use this installation's key.")
    how = "given with --sign-cert/--sign-key"
    if cert is None:
        env_cert, env_key = os.environ.get(CERT_ENV) or None, os.environ.get(KEY_ENV) or None
        if (env_cert is None) != (env_key is None):
            missing = KEY_ENV if env_key is None else CERT_ENV
            raise InputError(f"Only one of ${CERT_ENV} and ${KEY_ENV} is set: set ${missing} too, or unset both to "
                             "sign with this installation's key.")
        if env_cert is None:
            return _installation_key()
        cert, key, how = env_cert, env_key, f"named by ${CERT_ENV}/${KEY_ENV}"
    cert, key = Path(cert).expanduser(), Path(key).expanduser()
    hint = f"check the path {how}"
    return _cached_key(str(cert), str(key), _stamp(cert), _stamp(key), hint)


def _stamp(path: Path) -> tuple:
    try:
        st = path.stat()
        return st.st_mtime_ns, st.st_size
    except OSError:
        return (None,)


@functools.lru_cache(maxsize=8)
def _cached_key(cert: str, key: str, _cert_stamp, _key_stamp, hint: str) -> SigningKey:
    chain = _read(Path(cert), "signing certificate", hint)
    key_pem = _read(Path(key), "signing key", hint)
    origin = f"The certificate {cert} with the key {key}"
    return _key_from_pem(chain, key_pem, origin)


def _installation_key() -> SigningKey:
    path = installation_key_path()
    if not path.is_file():
        _create_installation_key(path)
    return _cached_installation_key(str(path), _stamp(path))


@functools.lru_cache(maxsize=2)
def _cached_installation_key(path: str, _stamp_) -> SigningKey:
    p = Path(path)
    data = _read(p, "installation signing key", "remove it to have a new one made, or set $TALKINGHEAD_HOME")
    if os.name == "posix" and p.stat().st_mode & 0o077:
        try:
            os.chmod(p, 0o600)  # owner-only, as it was made
        except OSError:
            warnings.warn(f"the signing key {p} can be read by other users; make it owner-only: chmod 600 {p}")
    try:
        return _key_from_pem(data, data, f"This installation's signing key {p}")
    except InputError as exc:  # damaged: a new one is made once it is gone
        raise InputError(f"{exc} (Or remove {p}: a new installation key is then made.)") from None


def _create_installation_key(path: Path) -> None:
    """A new EC P-256 key and its certificate, issued by a CA certificate made for the purpose (whose key
    is not kept), written owner-only with one rename; when two processes race, the first file stays."""
    from .atomic import output_error, temp_path

    folder = path.parent
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        pem = _new_installation_pem()
        tmp = temp_path(path)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(pem)
                fh.flush()
                os.fsync(fh.fileno())
            try:
                os.link(tmp, path)  # fails if another process made one meanwhile: theirs is kept
            except FileExistsError:
                pass
            except OSError as exc:  # file systems without hard links
                if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
                    raise
                os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    except OSError as exc:
        err = output_error(path, exc, kept=False)
        if err is None:
            raise
        raise OutputError(f"{err} (This is the key content credentials are signed with: set $TALKINGHEAD_HOME to a "
                          f"writable folder, give your own with --sign-cert/--sign-key, or use --no-credentials.)") from None


def _new_installation_pem() -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=5)  # clock skew
    tag = secrets.token_hex(4)  # no host or user name goes into every output
    org = x509.NameAttribute(NameOID.ORGANIZATION_NAME, "talkinghead (self-signed: identifies an installation, "
                                                          "not a trusted publisher)")
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"talkinghead installation {tag} CA"), org])
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"talkinghead installation {tag}"), org])
    ca_key = ec.generate_private_key(ec.SECP256R1())
    key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now)
          .not_valid_after(now + datetime.timedelta(days=365 * CA_YEARS))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=365 * CERT_YEARS))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, True, False, False, False, False, False, False, False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    return (key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
            + cert.public_bytes(pem) + ca.public_bytes(pem))


# ------------------------------------------------------------------------------------ signing an output


def credentials_finalizer(path: str | os.PathLike, provenance: Provenance,
                          key: SigningKey | None = None) -> Callable[[Path], None] | None:
    """The ``finalize`` hook of :class:`talkinghead.io.VideoWriter` / :func:`talkinghead.io.write_image`
    that signs ``path``'s temporary file with ``provenance`` (see :func:`sign_file`), or None, with a
    warning, where the format or the installed c2pa-python cannot carry a manifest. The key is resolved
    now (:func:`signing_key`), so a bad one is reported before any frame is made."""
    path = Path(path)
    reason = unavailable_reason()
    if reason is not None:
        warnings.warn(f"c2pa-python cannot sign here ({reason}): outputs are written without content credentials, "
                      "still watermarked and tagged as synthetic; `pip install c2pa-python` adds them")
        return None
    if media_type(path) is None:
        warnings.warn(f"{path.suffix or 'a file without extension'} files cannot carry C2PA content credentials: "
                      f"{path} is written without them, still watermarked and tagged as synthetic (write "
                      ".mp4/.mov/.m4v or .png/.jpg/.webp/.tif for signed output)")
        return None
    key = key if key is not None else signing_key()
    return functools.partial(sign_file, provenance=provenance, key=key, name=path)


def sign_file(tmp: str | os.PathLike, provenance: Provenance, key: SigningKey | None = None,
              name: str | os.PathLike | None = None) -> Path:
    """Embed a signed manifest of ``provenance`` in the complete file ``tmp``, in place, and check it by
    reading it back (talkinghead's, ``trainedAlgorithmicMedia``, the hard binding matching); only then is
    ``tmp`` replaced. ``name`` is the final path (its extension gives the format; default ``tmp``). Raises
    :class:`OutputError` naming ``name`` when signing or the check fails: nothing half-signed is left."""
    from .atomic import output_error, temp_path

    c2pa = _c2pa()
    tmp = Path(tmp)
    name = Path(name) if name is not None else tmp
    media = media_type(name)
    if media is None:
        raise InputError(f"Cannot sign {name}: its format cannot carry C2PA content credentials (use one of "
                         f"{', '.join(sorted(MEDIA_TYPES))}).")
    key = key if key is not None else signing_key()
    signed = temp_path(name)  # beside, named as the writer's own temporary files (removed if stale)
    try:
        try:
            with c2pa.Context.from_dict(_SIGN_SETTINGS) as ctx, _signer(c2pa, key) as signer, \
                    c2pa.Builder(provenance.manifest(name.name, media), ctx) as builder, \
                    open(tmp, "rb") as src, open(signed, "w+b") as dst:
                builder.sign(signer, media, src, dst)
        except (c2pa.C2paError, OSError) as exc:
            raise (output_error(name, exc) or output_error(
                name, detail=f"its content credentials could not be signed ({_one_line(exc)})")) from None
        report = read_credentials(signed, media=media)
        if not (report.ours and report.intact and report.ai_generated):
            why = report.note or ", ".join(report.failures) or "not read back as talkinghead's"
            raise output_error(name, detail=f"its content credentials did not verify after signing ({why})")
        os.replace(signed, tmp)
    finally:
        signed.unlink(missing_ok=True)
    return tmp


def _one_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0]


# ------------------------------------------------------------------------------------ reading


@dataclasses.dataclass(frozen=True)
class ManifestReport:
    """What the C2PA manifest of a file says, as c2pa-python's ``Reader`` validates it.

    ``found``: a manifest store is in the file. ``ours``: its active manifest is talkinghead's (claim
    generator ``talkinghead`` and the ``org.talkinghead.provenance`` assertion). ``intact``: the hard
    binding and the claim signature still match the bytes (no validation failure other than the signer's
    trust). ``trusted``: the signer chains to a trusted certificate (this installation's own CA, or that of
    ``$TALKINGHEAD_C2PA_CERT``; no trust list is fetched). ``note``: why no manifest could be read (an mkv,
    c2pa-python unavailable, a remote manifest not fetched).
    """

    found: bool
    ours: bool = False
    intact: bool = False
    trusted: bool = False
    generator: str | None = None
    signer: str | None = None
    issuer: str | None = None
    actions: tuple[str, ...] = ()
    digital_source_types: tuple[str, ...] = ()
    validation_state: str | None = None
    failures: tuple[str, ...] = ()
    provenance: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    ingredients: tuple[Mapping[str, Any], ...] = ()
    soft_binding: str | None = None
    derived_from_ours: bool = False
    note: str | None = None

    @property
    def ai_generated(self) -> bool:
        """An action of the active manifest declares ``trainedAlgorithmicMedia``."""
        return any(t.rstrip("/").endswith("trainedAlgorithmicMedia") for t in self.digital_source_types)

    @property
    def model(self) -> str | None:
        return self.provenance.get("model") if self.ours else None

    @property
    def watermark_payload(self) -> str | None:
        wm = self.provenance.get("watermark") if self.ours else None
        return wm.get("payload") if isinstance(wm, Mapping) else None

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.update(ai_generated=self.ai_generated, model=self.model, watermark_payload=self.watermark_payload)
        return d


def _trust_anchors() -> str | None:
    """PEM of the CAs whose signatures count as trusted: this installation's (if it has a key yet: none
    is made to read) and that of ``$TALKINGHEAD_C2PA_CERT``."""
    roots = []
    for path in (installation_key_path(), os.environ.get(CERT_ENV)):
        if path and os.path.isfile(path):
            try:
                roots.append(_pem_blocks(Path(path).read_bytes(), "CERTIFICATE")[-1])
            except (OSError, IndexError):
                continue
    return b"".join(roots).decode("ascii", "replace") if roots else None


def read_credentials(path: str | os.PathLike, media: str | None = None) -> ManifestReport:
    """Read and validate the C2PA manifest of ``path`` (offline: no remote manifest, no OCSP). ``media``:
    its media type (default: from the extension, else told from the content). Never raises for the
    content of the file: a damaged manifest is reported as found and not intact."""
    path = Path(path)
    mod, reason = _c2pa_or_reason()
    if mod is None:
        return ManifestReport(False, note=f"c2pa-python cannot read manifests here ({reason})")
    c2pa = mod
    media = media or media_type(path)
    settings: dict = {"verify": dict(_OFFLINE["verify"])}
    anchors = _trust_anchors()
    if anchors:
        settings["trust"] = {"user_anchors": anchors}
    try:
        with c2pa.Context.from_dict(settings) as ctx, open(path, "rb") as fh:
            with (c2pa.Reader(media, fh, context=ctx) if media else c2pa.Reader(fh, context=ctx)) as reader:
                store = json.loads(reader.json())
    except c2pa.C2paError.ManifestNotFound:
        return ManifestReport(False)
    except c2pa.C2paError.NotSupported:
        return ManifestReport(False, note=f"{path.suffix or 'this'} files cannot carry C2PA manifests")
    except c2pa.C2paError.RemoteManifest as exc:
        return ManifestReport(False, note=f"it refers to a remote manifest, not fetched ({_one_line(exc)})")
    except c2pa.C2paError as exc:
        if not _holds_c2pa_data(path):  # a damaged file that never had a manifest
            return ManifestReport(False, note=f"no manifest could be looked for ({_one_line(exc)})")
        # C2PA data that does not parse: changed after it was written
        return ManifestReport(True, failures=(f"manifest unreadable: {_one_line(exc)}",),
                              validation_state="Invalid")
    return _report(store)


def _holds_c2pa_data(path: Path) -> bool:
    """Whether the file holds a JUMBF box labelled ``c2pa`` (a manifest store), by its bytes alone."""
    tail = b""
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            data = tail + block
            at = data.find(b"jumb")
            while at >= 0:  # every JUMBF box, not only the first: an mp4 may hold others before the store
                if b"c2pa" in data[at:at + 64]:
                    return True
                at = data.find(b"jumb", at + 4)
            tail = data[-64:]
    return False


def _report(store: dict) -> ManifestReport:
    manifests = store.get("manifests") or {}
    label = store.get("active_manifest")
    active = manifests.get(label) if label else None
    if not isinstance(active, dict):
        codes = tuple(s.get("code", "?") for s in store.get("validation_status") or [])
        return ManifestReport(True, failures=codes or ("no active manifest",), validation_state="Invalid")
    results = (store.get("validation_results") or {}).get("activeManifest") or {}
    failures = [s.get("code", "?") for s in results.get("failure") or []]
    if not results:  # older readers: validation_status only
        failures = [s.get("code", "?") for s in store.get("validation_status") or []]
    state = store.get("validation_state")
    changed = [c for c in failures if not c.startswith(_CREDENTIAL_CODES)]
    actions, sources, provenance, soft = [], [], {}, None
    for a in active.get("assertions") or []:
        lab, data = a.get("label", ""), a.get("data") or {}
        if lab.startswith("c2pa.actions"):
            for act in data.get("actions") or []:
                actions.append(str(act.get("action")))
                if act.get("digitalSourceType"):
                    sources.append(str(act["digitalSourceType"]))
        elif lab == ASSERTION and isinstance(data, dict):
            provenance = data
        elif lab.startswith("c2pa.soft-binding") and data.get("alg") == SOFT_BINDING_ALG:
            soft = _soft_payload(data)
    info = (active.get("claim_generator_info") or [{}])[0] or {}
    generator = (f"{info.get('name')}/{info.get('version')}" if info.get("version") else info.get("name")) \
        or active.get("claim_generator")
    ours = info.get("name") == GENERATOR and bool(provenance)
    sig = active.get("signature_info") or {}
    derived = not ours and any(_is_ours(m) for k, m in manifests.items() if k != label)
    ingredients = tuple({k: v for k, v in i.items() if k in ("title", "format", "instance_id", "relationship",
                                                             "description")} for i in active.get("ingredients") or [])
    return ManifestReport(True, ours=ours, intact=state != "Invalid" and not changed, trusted=state == "Trusted",
                          generator=str(generator) if generator else None, signer=sig.get("common_name"),
                          issuer=sig.get("issuer"), actions=tuple(actions), digital_source_types=tuple(sources),
                          validation_state=state, failures=tuple(failures), provenance=provenance,
                          ingredients=ingredients, soft_binding=soft, derived_from_ours=derived)


def _is_ours(manifest: Any) -> bool:
    info = ((manifest or {}).get("claim_generator_info") or [{}])[0] or {}
    return info.get("name") == GENERATOR and any(a.get("label") == ASSERTION for a in manifest.get("assertions") or [])


def _soft_payload(data: dict) -> str | None:
    import base64
    import binascii

    for block in data.get("blocks") or []:
        try:
            return base64.b64decode(str(block.get("value", "")), validate=True).decode("ascii")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            continue
    return None


# ------------------------------------------------------------------------------------ verdicts


def verdict(watermark_found: bool, report: ManifestReport | None) -> tuple[int, str]:
    """``(exit status, verdict)`` of a file from its two marks (see the STATUS_ constants)."""
    wm = "talkinghead watermark found" if watermark_found else "no talkinghead watermark"
    if report is not None and report.found and not report.intact:
        whose = "talkinghead's" if report.ours else (f"{report.generator}'s" if report.generator else "its")
        return STATUS_CHANGED, f"content changed after signing ({whose} manifest no longer matches; {wm})"
    if report is not None and report.found and report.ours:
        off = report.watermark_payload is None
        return STATUS_VALID, "talkinghead output: content credentials valid" + (
            "" if watermark_found else " (its watermark was turned off, as the manifest records)" if off
            else " (the watermark is not found)")
    if report is not None and report.found:
        extra = "; its ingredients include a talkinghead manifest" if report.derived_from_ours else ""
        return STATUS_FOREIGN, f"foreign manifest from {report.generator or 'another generator'}, not talkinghead's ({wm}{extra})"
    if watermark_found:
        why = f" ({report.note})" if report is not None and report.note else ""
        return STATUS_STRIPPED, f"manifest stripped, watermark found{why}"
    return STATUS_NOT_MARKED, "not marked"


def combined_status(statuses: Iterable[int]) -> int:
    """The exit status of several files: theirs when they all agree; else 2 when one was unreadable,
    else 1 (not every file is intact talkinghead output)."""
    s = set(statuses)
    if len(s) == 1:
        return s.pop()
    return STATUS_UNREADABLE if STATUS_UNREADABLE in s else STATUS_NOT_MARKED


def describe(report: ManifestReport) -> str:
    """One line on a manifest: generator, signer and trust, actions, model, binding."""
    if not report.found:
        return "manifest: none" + (f" ({report.note})" if report.note else "")
    parts = [f"manifest: {report.generator or 'unknown generator'}"]
    if report.signer:
        trust = ("trusted here: it chains to this installation's CA or $TALKINGHEAD_C2PA_CERT's" if report.trusted
                 else "untrusted: not on a trust list" + (", e.g. a self-signed installation key" if report.ours else ""))
        parts.append(f"signed by {report.signer!r} ({trust})")
    if report.actions:
        kinds = ", ".join(a + (" (trainedAlgorithmicMedia)" if a == "c2pa.created" and report.ai_generated else "")
                          for a in report.actions)
        parts.append(f"actions {kinds}")
    if report.ours:
        digest = report.provenance.get("model_weights_sha256")
        parts.append(f"model {report.model}" + (f" (weights sha256 {digest[:12]}...)" if digest else ""))
        if report.watermark_payload:
            parts.append(f"watermark payload {report.watermark_payload!r}")
    if report.validation_state:
        parts.append(f"validation {report.validation_state}")
    parts.append("hard binding matches the bytes" if report.intact
                 else "FAILED: " + ", ".join(report.failures or ("invalid",)))
    return "; ".join(parts)
