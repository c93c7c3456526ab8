"""How a dub says it is synthetic (DESIGN.md §8): container metadata (always), a visible mark
(by default) and, when the user gives a certificate and its key, a signed C2PA manifest.

The C2PA manifest records one ``c2pa.edited`` action whose digital source type is IPTC's
"composite with trained algorithmic media" (real footage whose speech and mouth were generated),
the source video as the parent ingredient, and a ``org.shqip-av.dub`` assertion naming the
bundle, the languages and the source's sha256. Signing uses ``c2pa-python`` (the Content
Authenticity Initiative's library); the signature can be checked by any C2PA reader, e.g.
``c2patool dub.mp4`` or ``c2pa.Reader``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shqip_av import ShqipError

MARK_TEXT = "AI-dubbed: synthetic speech and lips"
SOURCE_TYPE = "http://cv.iptc.org/newscodes/digitalsourcetype/compositeWithTrainedAlgorithmicMedia"


class DisclosureError(ShqipError):
    pass


def container_metadata(version: str, bundle_name: str, source_sha256: str) -> list[str]:
    """ffmpeg arguments for the MP4's comment and description tags."""
    return [
        "-metadata",
        f"comment=synthetic: dubbed by shqip-av {version} (speech and lips generated); "
        f"bundle {bundle_name}; source sha256 {source_sha256}",
        "-metadata",
        "description=AI-generated dub (synthetic media)",
    ]


def draw_mark(frame: np.ndarray) -> np.ndarray:
    """The visible mark: white text on a black box in the lower left corner."""
    import cv2

    h, w = frame.shape[:2]
    scale = max(0.4, min(w, h) / 720)
    (tw, th), base = cv2.getTextSize(MARK_TEXT, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    x, y = int(0.02 * w), h - int(0.03 * h)
    out = frame.copy()
    cv2.rectangle(out, (x - 4, y - th - 6), (x + tw + 4, y + base + 2), (0, 0, 0), -1)
    cv2.putText(out, MARK_TEXT, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def _algorithm(key_pem: bytes, path: str) -> str:
    """The C2PA signing algorithm that fits the private key."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        key = load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as e:
        raise DisclosureError(f"{path}: not an unencrypted PEM private key ({e})") from None
    if isinstance(key, ec.EllipticCurvePrivateKey):
        algs = {"secp256r1": "es256", "secp384r1": "es384", "secp521r1": "es512"}
        if key.curve.name not in algs:
            raise DisclosureError(
                f"{path}: elliptic curve {key.curve.name} is not one C2PA signs with ({', '.join(algs)})"
            )
        return algs[key.curve.name]
    if isinstance(key, rsa.RSAPrivateKey):
        return "ps256"
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "ed25519"
    raise DisclosureError(f"{path}: a {type(key).__name__} key cannot sign C2PA manifests (use EC, RSA or Ed25519)")


def _check_pair(chain: bytes, private: bytes, cert_path: str, key_path: str) -> None:
    """The chain's first certificate (the signer's) must carry the private key's public key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        signer = x509.load_pem_x509_certificates(chain)[0]
    except ValueError as e:
        raise DisclosureError(f"{cert_path}: not a PEM certificate chain ({e})") from None
    raw = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if signer.public_key().public_bytes(*raw) != load_pem_private_key(private, None).public_key().public_bytes(*raw):
        raise DisclosureError(f"{key_path} is not the private key of the first certificate in {cert_path}")


def _pkcs8(private: bytes) -> bytes:
    """The key as unencrypted PKCS#8 PEM, whatever PEM form it came in."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    return load_pem_private_key(private, None).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _check_not_self_signed(chain: bytes, cert_path: str) -> None:
    from cryptography import x509

    certs = x509.load_pem_x509_certificates(chain)
    if len(certs) == 1 and certs[0].issuer == certs[0].subject:
        raise DisclosureError(
            f"{cert_path}: a self-signed certificate cannot sign C2PA manifests; give a chain "
            "whose first certificate (yours) was issued by a certificate authority, then the CA's"
        )


@dataclass
class C2paSigning:
    """The user's signing credentials, read and checked before any work is done."""

    cert_chain: bytes
    private_key: bytes
    algorithm: str
    timestamp_url: str | None = None

    @classmethod
    def load(cls, cert: str, key: str, timestamp_url: str = "") -> "C2paSigning":
        if bool(cert) != bool(key):
            raise DisclosureError("C2PA signing needs both --c2pa-cert (the PEM certificate chain) and --c2pa-key")
        for path in (cert, key):
            if not Path(path).is_file():
                raise DisclosureError(f"{path}: no such file (C2PA signing)")
        chain, private = Path(cert).read_bytes(), Path(key).read_bytes()
        if b"-----BEGIN CERTIFICATE-----" not in chain:
            raise DisclosureError(f"{cert}: not a PEM certificate chain")
        algorithm = _algorithm(private, key)
        private = _pkcs8(private)  # `openssl ecparam -genkey` writes SEC1 ("EC PRIVATE KEY"); c2pa reads PKCS#8
        signing = cls(chain, private, algorithm, timestamp_url or None)
        _check_pair(chain, private, cert, key)  # a wrong key fails here, not after the render
        _check_not_self_signed(chain, cert)
        signing.signer()
        signing.trial(cert)  # whatever else C2PA refuses (usages, chain order): now, not after the render
        return signing

    def trial(self, cert: str) -> None:
        """Sign a two-frame video in a temporary folder: what the real signature will meet."""
        import tempfile

        from shqip_av.media import write_video

        with tempfile.TemporaryDirectory(prefix="shqip-av-c2pa-") as tmp:
            video = Path(tmp) / "trial.mp4"
            write_video(video, (np.zeros((32, 32, 3), np.uint8) for _ in range(2)), fps=25)
            try:
                self.sign(video, Path(tmp) / "signed.mp4", video, "trial", {})
            except DisclosureError as e:
                raise DisclosureError(f"{cert}: these credentials cannot sign a C2PA manifest ({e})") from None

    def signer(self):
        import c2pa

        try:
            return c2pa.Signer.from_info(
                c2pa.C2paSignerInfo(self.algorithm, self.cert_chain, self.private_key, self.timestamp_url)
            )
        except (c2pa.C2paError, ValueError) as e:
            raise DisclosureError(f"C2PA signer: {str(e).splitlines()[0]}") from None

    def sign(self, video: Path, dest: Path, source: Path, title: str, details: dict) -> None:
        """Write ``video`` with an embedded, signed manifest to ``dest``."""
        import c2pa

        import shqip_av

        manifest = {
            "claim_generator_info": [{"name": "shqip-av", "version": shqip_av.__version__}],
            "title": title,
            "format": "video/mp4",
            "assertions": [
                {
                    "label": "c2pa.actions",
                    "data": {
                        "actions": [
                            {
                                "action": "c2pa.opened",  # the source video, the parent ingredient
                                "parameters": {"ingredientIds": ["source"]},
                            },
                            {
                                "action": "c2pa.edited",
                                "digitalSourceType": SOURCE_TYPE,
                                "softwareAgent": {"name": "shqip-av", "version": shqip_av.__version__},
                                "description": "speech replaced by synthetic speech in another language; "
                                "the speaker's mouth regenerated to follow it",
                            },
                        ]
                    },
                },
                {"label": "org.shqip-av.dub", "data": details},
            ],
        }
        try:
            with c2pa.Builder(manifest) as builder:
                with open(source, "rb") as fh:
                    builder.add_ingredient(
                        {"title": source.name, "relationship": "parentOf", "label": "source", "format": "video/mp4"},
                        "video/mp4",
                        fh,
                    )
                with open(video, "rb") as src, open(dest, "wb") as out:
                    builder.sign(self.signer(), "video/mp4", src, out)
        except c2pa.C2paError as e:
            lines = [line.strip() for line in str(e).splitlines() if line.strip()]
            raise DisclosureError(f"C2PA signing failed: {' '.join(lines[:2])}") from None


def read_manifest(video: str | Path, trust_anchors: str | None = None) -> tuple[str | None, dict | None]:
    """(validation state, active manifest) of a video's C2PA manifest, or (None, None) without one.
    With ``trust_anchors`` (PEM), a chain ending in one of them reads as "Trusted"."""
    import c2pa

    context = None
    if trust_anchors:
        context = c2pa.Context(
            settings=c2pa.Settings.from_dict(
                {"trust": {"user_anchors": trust_anchors}, "verify": {"verify_trust": True}}
            )
        )
    reader = c2pa.Reader.try_create(str(video), context=context)
    if reader is None:
        return None, None
    with reader:
        return reader.get_validation_state(), reader.get_active_manifest()
