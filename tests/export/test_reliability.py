"""Reliability round 3: the dub, the bundle and publishing never lose or leak anything.

Each severe defect found by adversarial testing is a test here: an output folder holding other
files is never emptied or overwritten; publish never stages a file from outside the bundle; a
network of the wrong kind is one line naming what it is; the .srt gate; nothing a dub needs is
checked after work began."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys

import pytest

from cards.facts import CardError
from cards.publish import PublishConfig, publish
from export.bundle import BundleConfig, BundleError, build_bundle, load_bundle
from export.dub import DubConfig, DubError, dub, translation_segments
from export.pipeline import Work
from shqip_av.files import OWNER_RECORD
from tests.conftest import REPO, shared_video

CLIP = "sadtalker_WDA_AlexandriaOcasioCortez_000.mp4"  # 8 s, 512×512, 25 fps, one face
SRT = (
    "1\n00:00:00,300 --> 00:00:03,500\nGood morning, this is a test.\n\n"
    "2\n00:00:04,000 --> 00:00:07,600\nThe mouth should follow.\n"
)
OURS = ["generator=apache-2.0", "expert=apache-2.0", "asr=apache-2.0"]


def _tree(folder) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _user_files(folder):
    """A folder as a user has it: their own files, a hidden .work/ of theirs among them."""
    (folder / ".work").mkdir(parents=True)
    (folder / ".work" / "important.txt").write_text("mine\n")
    (folder / "notes.txt").write_text("also mine\n")
    (folder / "raw").mkdir()
    (folder / "raw" / "manifest.jsonl").write_text('{"video_id": "x"}\n')
    return _tree(folder)


@pytest.fixture(scope="module")
def bundle(demo_run, demo_expert, generator_folder, tmp_path_factory):
    base = tmp_path_factory.mktemp("rel-bundle")
    return build_bundle(
        BundleConfig(
            out=str(base / "bundle"),
            asr=str(demo_run),
            generator=str(generator_folder),
            expert=str(demo_expert[0]),
            tts="espeak:en",
            license=OURS,
        )
    )


@pytest.fixture
def srt(tmp_path):
    path = tmp_path / "en.srt"
    path.write_text(SRT)
    return path


# ------------------------------------------------------------------------------ output folders
def test_a_bundle_never_replaces_a_folder_it_did_not_write(bundle, demo_run, demo_expert, generator_folder, tmp_path):
    root = tmp_path / "data"
    before = _user_files(root)
    cfg = BundleConfig(
        out=str(root),
        asr=str(demo_run),
        generator=str(generator_folder),
        expert=str(demo_expert[0]),
        tts="espeak:en",
        license=OURS,
    )
    with pytest.raises(BundleError, match="already holds files that export bundle did not write") as error:
        build_bundle(cfg)
    assert "\n" not in str(error.value)
    assert _tree(root) == before and not list(tmp_path.glob(".*"))
    # its own bundle it replaces; a file added to it since stops the rebuild, untouched
    out = tmp_path / "b"
    build_bundle(BundleConfig(**{**cfg.__dict__, "out": str(out)}))
    build_bundle(BundleConfig(**{**cfg.__dict__, "out": str(out)}))
    (out / "my-notes.txt").write_text("keep me")
    with pytest.raises(BundleError, match="my-notes.txt was not written by export bundle"):
        build_bundle(BundleConfig(**{**cfg.__dict__, "out": str(out)}))
    assert (out / "my-notes.txt").read_text() == "keep me" and load_bundle(str(out))


def test_a_dub_leaves_every_other_file_in_its_folder_byte_identical(bundle, srt, tmp_path):
    """And keeps the source's sample rate and channels; says which face it regenerated, with units."""
    video = tmp_path / "stereo.mp4"  # the clip with 48 kHz stereo sound
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-y",
            "-i",
            str(shared_video(CLIP)),
            "-map",
            "0:v",
            "-map",
            "0:a",
            "-c:v",
            "copy",
            "-c:a",
            "aac",
            "-ar",
            "48000",
            "-ac",
            "2",
            str(video),
        ],
        check=True,
    )
    out = tmp_path / "out"
    before = _user_files(out)
    report = dub(
        DubConfig(input=str(video), bundle=str(bundle), translation=str(srt), out=str(out), visible_mark=False)
    )
    after = _tree(out)
    assert {k: after[k] for k in before} == before
    assert set(after) - set(before) == {"stereo.dub.mp4", "stereo.dub.srt", "report.json", OWNER_RECORD}
    from shqip_av.media import probe

    got = probe(out / "stereo.dub.mp4")
    assert (got.audio_rate, got.audio_channels) == (48000, 2)
    assert report["audio"] == {"sample_rate": 48000, "channels": 2}
    assert report["lip_synced_frames"] <= report["frames"] and report["faces"]
    assert all(s["face"]["track"] == report["faces"][0]["track"] for s in report["segments"] if s["lip_synced"])
    assert "units" in report and "higher is better" in report["sync_metrics"]["lse_c"]
    # an existing .srt (or video) that no dub wrote is never overwritten
    (out / "other.dub.srt").write_text("1\n00:00:00,000 --> 00:00:01,000\nmine\n")
    shutil.copy(video, tmp_path / "other.mp4")
    with pytest.raises(DubError, match="already has other.dub.srt, which no dub wrote"):
        dub(DubConfig(input=str(tmp_path / "other.mp4"), bundle=str(bundle), translation=str(srt), out=str(out)))
    assert _tree(out) == {**after, "other.dub.srt": _tree(out)["other.dub.srt"]}


def test_a_second_dub_of_the_same_video_into_the_same_folder_is_refused(bundle, srt, tmp_path):
    video = shared_video(CLIP)
    out = tmp_path / "out"
    out.mkdir()
    held = Work.open(out / f".{video.stem}.dub-work")  # as a running dub holds it
    try:
        with pytest.raises(DubError, match="another dub of this video is writing"):
            dub(DubConfig(input=str(video), bundle=str(bundle), translation=str(srt), out=str(out)))
        assert (held.folder / "work.json").is_file()  # the running dub's folder is untouched
    finally:
        held.remove()
    assert list(out.iterdir()) == []


def test_a_dub_refused_midway_leaves_nothing(bundle, srt, tmp_path, monkeypatch):
    import export.dub as dubbing

    def refuse(*args, **kwargs):
        raise DubError("refused in the speech step")

    monkeypatch.setattr(dubbing, "speak_segments", refuse)
    video = shared_video(CLIP)
    with pytest.raises(DubError, match="refused in the speech step"):
        dub(DubConfig(input=str(video), bundle=str(bundle), translation=str(srt), out=str(tmp_path / "new")))
    assert not (tmp_path / "new").exists()  # not even a copy of the speaker's voice
    existing = tmp_path / "existing"
    before = _user_files(existing)
    with pytest.raises(DubError):
        dub(DubConfig(input=str(video), bundle=str(bundle), translation=str(srt), out=str(existing)))
    assert _tree(existing) == before and sorted(p.name for p in existing.iterdir()) == [".work", "notes.txt", "raw"]


# ------------------------------------------------------------------------------ the .srt gate
def test_the_srt_gate_cleans_sorts_and_limits_before_any_work(tmp_path):
    def gate(text: str | bytes, duration: float = 8.0):
        path = tmp_path / "t.srt"
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        return translation_segments(str(path), duration)

    segments, notes = gate(
        "2\n00:00:04,000 --> 00:00:05,000\nB &amp; <i>b</i>\x00\u200b!\n\n"
        "1\n00:00:01,000 --> 00:00:02,000\n<b></b>\n\n"
        "3\n00:00:00,500 --> 00:00:01,500\nA&nbsp;a\x07\n"
    )
    assert [s.translation for s in segments] == ["A a", "B & b !"] and [s.start for s in segments] == [0.5, 4.0]
    assert any("sorted" in n for n in notes) and any("no text" in n for n in notes)
    # a terminal colour, a script and a tag between words: the words alone, apart
    hostile = "\x1b[31mred\x1b[0m <script>alert(1)</script>world<br>again<style>p{}</style>"
    segments, _ = gate(f"1\n00:00:01,000 --> 00:00:02,000\n{hostile}\n")
    assert [s.translation for s in segments] == ["red world again"]
    with pytest.raises(DubError, match="no cue has any text"):
        gate("1\n00:00:01,000 --> 00:00:02,000\n<i> </i>\n\n2\n00:00:03,000 --> 00:00:04,000\n&#x200b;\n")

    def stamp(ms: int) -> str:
        return f"00:00:{ms // 1000:02d},{ms % 1000:03d}"

    many = "".join(f"{i}\n{stamp(2 * i)} --> {stamp(2 * i + 1)}\nx\n\n" for i in range(1, 4001))
    with pytest.raises(DubError, match="4000 cues; a translation of one video has at most 2000"):
        gate(many)
    with pytest.raises(DubError, match="lasts 0.001 s"):
        gate("1\n00:00:01,000 --> 00:00:01,001\nx\n")
    with pytest.raises(DubError, match="overlap"):
        gate("1\n00:00:01,000 --> 00:00:03,000\nx\n\n2\n00:00:02,000 --> 00:00:04,000\ny\n")
    with pytest.raises(DubError, match="not UTF-8"):
        gate(b"1\n00:00:01,000 --> 00:00:02,000\ncaf\xe9\n")
    with pytest.raises(DubError, match="no such file"):
        translation_segments(str(tmp_path / "missing.srt"), 8)
    with pytest.raises(DubError, match="not a file"):
        translation_segments(str(tmp_path), 8)


# ------------------------------------------------------------------------------ kinds and paths
def test_a_network_of_the_wrong_kind_is_one_line_naming_both(generator_folder, demo_expert, demo_run, tmp_path):
    from shqip_av.components.sync_expert import load_expert
    from filter.sync import load_sync_scorer
    from filter.config import ConfigurationError, SyncConfig, TranscriptsConfig
    from filter.transcripts import check_recognizer
    from shqip_av.components import KindError
    from shqip_av.components.lipsync_generator import load_generator

    expert = str(demo_expert[0])
    with pytest.raises(KindError, match=r"is a lip-sync generator, not a sync expert"):
        load_expert(str(generator_folder))
    with pytest.raises(KindError, match=r"is a sync expert, not a lip-sync generator"):
        load_generator(expert)
    with pytest.raises(ConfigurationError, match=r"sync.method .* is a lip-sync generator, not a sync expert"):
        load_sync_scorer(SyncConfig(method=str(generator_folder)))
    with pytest.raises(ConfigurationError, match=r"transcripts.model .* is a lip-sync generator, not a Whisper"):
        check_recognizer(TranscriptsConfig(model=str(generator_folder)))
    with pytest.raises(BundleError, match=r"--generator .* is a sync expert, not a lip-sync generator"):
        build_bundle(
            BundleConfig(
                out=str(tmp_path / "swapped"),
                asr=str(demo_run),
                generator=expert,
                expert=str(generator_folder),
                tts="espeak:en",
            )
        )
    assert not (tmp_path / "swapped").exists()
    # a weights file that lacks tensors the network has is refused, not loaded half random
    partial = tmp_path / "partial"
    shutil.copytree(generator_folder, partial)
    from safetensors.torch import load_file, save_file

    tensors = load_file(partial / "model.safetensors")
    save_file({k: v for i, (k, v) in enumerate(tensors.items()) if i % 2}, partial / "model.safetensors")
    with pytest.raises(KindError, match="cannot load the lip-sync generator"):
        load_generator(str(partial))
    # evaluate's --expert and training's loss.expert: the same line, through their commands
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "train.lipsync.evaluate",
            "--expert",
            str(generator_folder),
            "--video",
            str(shared_video(CLIP)),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2 and "is a lip-sync generator, not a sync expert" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_bundle_loads_components_only_from_inside_itself(bundle, srt, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(bundle, copy)
    index = json.loads((copy / "model_index.json").read_text())
    # model_index.json read into typed components
    typed = load_bundle(str(copy))
    assert typed.entry("generator").included and typed.entry("generator").cls == "LipSyncGenerator"
    assert typed.entry("tts").backend == "espeak" and typed.entry("asr").adapter == "peft-lora"
    assert typed.entry("asr").base is not None and typed.entry("asr").base.included
    (copy / "model_index.json").write_text(json.dumps({**index, "expert": {**index["expert"], "source": 5}}))
    with pytest.raises(BundleError, match="expert.source in model_index.json is not a string"):
        load_bundle(str(copy))
    assert not index["generator"]["trained_from"].startswith("/") and not index["expert"]["trained_from"].startswith(
        "/"
    )
    assert str(tmp_path.parent) not in (copy / "model_index.json").read_text()  # no builder's absolute path
    for source in ("../../outside/gen", str(bundle / "generator"), "generator/../../x"):
        (copy / "model_index.json").write_text(
            json.dumps({**index, "generator": {**index["generator"], "source": source}})
        )
        with pytest.raises(BundleError, match="points outside the bundle"):
            load_bundle(str(copy))
    (copy / "model_index.json").write_text(
        json.dumps({**index, "generator": {**index["generator"], "included": False, "source": "/etc/passwd"}})
    )
    with pytest.raises(BundleError, match="neither included in the bundle nor a Hub id"):
        load_bundle(str(copy))
    # generator and expert swapped by hand: named now, not a size mismatch after 20 s of work
    (copy / "model_index.json").write_text(
        json.dumps({**index, "generator": {**index["generator"], "source": "expert"}})
    )
    with pytest.raises(BundleError, match="the bundle's generator .* is a sync expert, not a lip-sync generator"):
        load_bundle(str(copy))
    # a generator referenced by a Hub id that is not in the cache (offline): one line before any work
    (copy / "model_index.json").write_text(
        json.dumps(
            {**index, "generator": {**index["generator"], "included": False, "source": "someone/no-such-generator"}}
        )
    )
    from shqip_av import ShqipError

    with pytest.raises(ShqipError, match="cannot load the lip-sync generator") as error:
        dub(
            DubConfig(
                input=str(shared_video(CLIP)),
                bundle=str(copy),
                translation=str(tmp_path / "en.srt"),
                out=str(tmp_path / "never"),
            )
        )
    assert "\n" not in str(error.value) and not (tmp_path / "never").exists()
    # a pickle where weights belong: nothing of it runs, and the refusal is one line
    (copy / "model_index.json").write_text(json.dumps(index))
    base = copy / "asr-base"
    for weights in base.glob("*.safetensors"):
        weights.unlink()
    import pickle

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    (base / "pytorch_model.bin").write_bytes(pickle.dumps(Payload()))
    with pytest.raises(BundleError, match="the bundle's asr .* cannot be loaded|the bundle's asr") as error:
        load_bundle(str(copy)).load_asr()
    assert "\n" not in str(error.value) and not (tmp_path / "pwned").exists()
    (copy / "model_index.json").write_text(json.dumps(index)[:-20])
    with pytest.raises(BundleError, match="not readable JSON"):
        load_bundle(str(copy))


def test_publish_refuses_a_bundle_with_an_outward_symlink_and_bad_repo_ids(bundle, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(bundle, copy)
    (copy / "passwd.txt").symlink_to("/etc/passwd")
    with pytest.raises(CardError, match="passwd.txt is a symlink to a file outside the folder") as error:
        publish(PublishConfig(root=str(tmp_path), repo="someone/b", bundle=str(copy), dry_run=True))
    assert "\n" not in str(error.value)
    assert not list((tmp_path / ".upload").rglob("passwd.txt")) if (tmp_path / ".upload").exists() else True
    (copy / "passwd.txt").unlink()
    summary = publish(PublishConfig(root=str(tmp_path), repo="someone/b", bundle=str(copy), dry_run=True))
    assert OWNER_RECORD not in {name for name, _ in summary["files"]}
    for repo in ("/", "me/..", "me/" + "x" * 300, "a/b/c", "-me/x", "me/x.git"):
        with pytest.raises(CardError, match="give the Hub repo as user/name"):
            publish(PublishConfig(root=str(tmp_path), repo=repo, bundle=str(copy), dry_run=True))


def test_a_bundle_that_cannot_speak_is_not_built(demo_run, demo_expert, generator_folder, tmp_path):
    with pytest.raises(BundleError, match="espeak-ng has no voice for language 'xx'"):
        build_bundle(
            BundleConfig(
                out=str(tmp_path / "b"),
                asr=str(demo_run),
                generator=str(generator_folder),
                expert=str(demo_expert[0]),
                tts="espeak:xx",
            )
        )
    assert not (tmp_path / "b").exists()


# ------------------------------------------------------------------------------ small things
def test_a_file_name_starting_with_a_dash_is_read_as_a_file(tmp_path):
    from shqip_av.media import probe

    shutil.copy(shared_video(CLIP), tmp_path / "-i.mp4")
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        assert probe("-i.mp4").has_video
    finally:
        os.chdir(cwd)


def test_a_mistyped_export_command_is_one_error_line():
    proc = subprocess.run(
        [sys.executable, "-m", "export", "dubb"], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2 and "error: unknown command 'dubb' (did you mean 'dub'?)" in proc.stderr


def test_c2pa_credentials_are_tried_before_any_work(tmp_path):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from datetime import datetime, timedelta, timezone

    from export.disclose import C2paSigning, DisclosureError
    from tests.export.c2pa_certs import make_test_credentials

    chain, key, _ = make_test_credentials(tmp_path)
    # the same key as `openssl ecparam -genkey` writes it (SEC1, "EC PRIVATE KEY"): accepted
    sec1 = tmp_path / "sec1.pem"
    private = serialization.load_pem_private_key(key.read_bytes(), None)
    sec1.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        )
    )
    assert b"EC PRIVATE KEY" in sec1.read_bytes()
    assert C2paSigning.load(str(chain), str(sec1)).algorithm == "es256"
    # a self-signed certificate: refused now, with what to do
    own = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "me")])
    now = datetime.now(timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(own.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .sign(own, hashes.SHA256())
    )
    (tmp_path / "self.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "self.key").write_bytes(
        own.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    with pytest.raises(DisclosureError, match="self-signed"):
        C2paSigning.load(str(tmp_path / "self.pem"), str(tmp_path / "self.key"))
