"""C2PA signing with c2pa-python on a real MP4, with a certificate chain made in the test: the
manifest validates (and is trusted against the test's root), says the video is AI-edited, and
breaks when the video is altered; bad credentials are one clear line before any work."""

from __future__ import annotations

import shutil

import pytest

from export.disclose import SOURCE_TYPE, C2paSigning, DisclosureError, read_manifest
from tests.conftest import shared_video
from tests.export.c2pa_certs import make_test_credentials

CLIP = "sadtalker_WDA_AlexandriaOcasioCortez_000.mp4"


@pytest.fixture(scope="module")
def credentials(tmp_path_factory):
    return make_test_credentials(tmp_path_factory.mktemp("c2pa"))


def test_a_signed_manifest_validates_and_says_what_was_generated(credentials, tmp_path):
    chain, key, root = credentials
    video = shared_video(CLIP)
    copy = tmp_path / "dub.mp4"
    shutil.copy(video, copy)
    assert read_manifest(copy) == (None, None)
    signed = tmp_path / "signed.mp4"
    C2paSigning.load(str(chain), str(key)).sign(copy, signed, video, "dub.mp4", {"target_language": "en"})
    state, manifest = read_manifest(signed, trust_anchors=root)
    assert state == "Trusted"
    labels = {a["label"]: a["data"] for a in manifest["assertions"]}
    opened, action = labels["c2pa.actions.v2"]["actions"]
    assert opened["action"] == "c2pa.opened"
    assert action["action"] == "c2pa.edited" and action["digitalSourceType"] == SOURCE_TYPE
    assert labels["org.shqip-av.dub"] == {"target_language": "en"}
    assert manifest["ingredients"][0]["title"] == CLIP
    # without the test's root the signature still verifies (the chain is just not trusted)
    assert read_manifest(signed)[0] == "Valid"
    # one byte of the picture changed: the manifest no longer validates
    data = bytearray(signed.read_bytes())
    data[len(data) // 2] ^= 0xFF
    tampered = tmp_path / "tampered.mp4"
    tampered.write_bytes(bytes(data))
    assert read_manifest(tampered, trust_anchors=root)[0] == "Invalid"


def test_bad_credentials_are_one_clear_line(credentials, tmp_path):
    chain, key, _ = credentials
    with pytest.raises(DisclosureError, match="needs both"):
        C2paSigning.load(str(chain), "")
    with pytest.raises(DisclosureError, match="no such file"):
        C2paSigning.load(str(chain), str(tmp_path / "missing.pem"))
    with pytest.raises(DisclosureError, match="not a PEM certificate chain"):
        C2paSigning.load(str(key), str(key))
    with pytest.raises(DisclosureError, match="not an unencrypted PEM private key"):
        C2paSigning.load(str(chain), str(chain))
    other_chain, _, _ = make_test_credentials(tmp_path)  # a key that does not belong to the certificate
    with pytest.raises(DisclosureError, match="is not the private key of the first certificate"):
        C2paSigning.load(str(other_chain), str(key))
