"""collect end to end with real yt-dlp against a local HTTP server on 127.0.0.1."""

import copy
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from collect.pipeline import CollectConfig, prepare_raw
from shqip_av.manifest import read_jsonl
from shqip_av.media import iter_frames, probe
from shqip_av.records import RawVideo
from tests.conftest import ffmpeg, shared_video

CONSENT = "{kind: release, subject: Test Speaker, reference: release form 1, granted: 2025-01-01}"
RECORDED = json.loads((Path(__file__).parents[1] / "fixtures" / "youtube_info.json").read_text())


def run(root, **kw):
    return prepare_raw(CollectConfig(root=str(root), retries=kw.pop("retries", 1), backoff_seconds=0, **kw))


def test_direct_link_and_html_page(tmp_path, http_root):
    www, base = http_root
    shutil.copy(shared_video("retalking_face_2.mp4"), www / "clip.mp4")
    shutil.copy(shared_video("sadtalker_WDA_KatieHill_000.mp4"), www / "talk.mp4")
    (www / "page.html").write_text(
        '<html><head><title>Fjalim</title></head><body><video controls src="talk.mp4"></video></body></html>'
    )
    root = tmp_path / "data"
    root.mkdir()
    (root / "sources.yaml").write_text(
        f"sources:\n  - url: {base}/clip.mp4\n    consent: {CONSENT}\n"
        f"  - url: {base}/page.html\n    consent: {CONSENT}\n"
    )
    stats = run(root)
    assert stats.collected == 2 and not stats.rejected
    records = [RawVideo.from_dict(r) for r in read_jsonl(root / "raw" / "manifest.jsonl")]
    assert {r.source.extractor for r in records} == {"generic", "html5mediaembed"}
    for rec in records:
        video = root / rec.files.video
        info = probe(video)
        assert rec.media.duration == pytest.approx(info.duration, abs=0.01)
        assert (rec.media.width, rec.media.height, rec.media.fps) == (info.width, info.height, info.fps)
        assert rec.media.sha256 and rec.rights.basis == "consent" and rec.rights.consent.subject == "Test Speaker"
        audio = probe(root / rec.files.audio)
        assert (audio.audio_rate, audio.audio_channels, audio.acodec) == (16000, 1, "pcm_s16le")
        assert json.loads((root / rec.files.info).read_text())["webpage_url"].startswith(base)
        assert rec.video_id.startswith("web-") and "." not in rec.video_id
    assert (root / "raw" / "collect.config.yaml").exists()


def test_bad_sources_become_rejections_not_crashes(tmp_path, http_root):
    www, base = http_root
    (www / "text.mp4").write_text("this is not a video at all")
    good = www / "good.mp4"
    shutil.copy(shared_video("retalking_face_5.mp4"), good)
    data = good.read_bytes()
    (www / "truncated.mp4").write_bytes(data[: len(data) // 2])
    ffmpeg("-i", str(good), "-an", "-c", "copy", str(www / "mute.mp4"))
    root = tmp_path / "data"
    root.mkdir()
    entries = [
        "http://127.0.0.1:9/down.mp4",
        f"{base}/text.mp4",
        f"{base}/truncated.mp4",
        f"{base}/mute.mp4",
        f"{base}/missing.mp4",
        f"{base}/good.mp4",
    ]
    (root / "sources.yaml").write_text(
        "sources:\n"
        + "".join(f"  - url: {u}\n    consent: {CONSENT}\n" for u in entries)
        + f"  - url: {base}/good.mp4?again\n"
    )
    stats = run(root, retries=0)
    reasons = {r["url"] or r["key"]: r["reason"] for r in read_jsonl(root / "raw" / "rejected.jsonl")}
    assert stats.collected == 1  # the good one; one bad video never stops the others
    assert reasons["http://127.0.0.1:9/down.mp4"] == "unreachable"
    assert reasons[f"{base}/text.mp4"] in ("not-a-video", "not-found")
    assert reasons[f"{base}/truncated.mp4"] in ("not-a-video", "does-not-decode")
    assert reasons[f"{base}/mute.mp4"] == "no-audio-stream"
    assert reasons[f"{base}/missing.mp4"] == "not-found"
    assert reasons[f"{base}/good.mp4?again"] == "no-consent"
    assert all(r["detail"] for r in read_jsonl(root / "raw" / "rejected.jsonl"))
    assert not any((root / "raw" / ".partial").iterdir())


def test_youtube_style_metadata_licence_and_uploader_captions_only(tmp_path, http_root, monkeypatch):
    """YouTube itself cannot be reached here: the listing step is replaced by recorded yt-dlp
    info dicts (mocked), whose formats and captions point at the local server; the real yt-dlp
    then downloads them."""
    www, base = http_root
    shutil.copy(shared_video("retalking_face_3.mp4"), www / "v.mp4")
    (www / "up.vtt").write_text("WEBVTT\n\n00:00:00.500 --> 00:00:02.000\nMirëdita të gjithëve.\n")
    (www / "auto.vtt").write_text("WEBVTT\n\n00:00:00.500 --> 00:00:02.000\nmire dita te gjitheve\n")
    infos = []
    for rec in RECORDED:
        info = copy.deepcopy(rec)
        info["formats"] = [
            {
                "format_id": "18",
                "url": f"{base}/v.mp4",
                "ext": "mp4",
                "vcodec": "h264",
                "acodec": "aac",
                "protocol": "http",
                "width": 590,
                "height": 590,
            }
        ]
        info["subtitles"] = {
            "sq": [{"ext": "vtt", "url": f"{base}/up.vtt"}],
            "en": [{"ext": "vtt", "url": f"{base}/up.vtt"}],
        }
        info["automatic_captions"] = {"sq": [{"ext": "vtt", "url": f"{base}/auto.vtt"}]}
        infos.append(info)
    monkeypatch.setattr(
        "collect.download.YtDlp.list_videos",
        lambda self, url, max_videos=0: ((i, i["webpage_url"], None) for i in infos),
    )
    root = tmp_path / "data"
    root.mkdir()
    (root / "sources.yaml").write_text("sources:\n  - url: https://www.youtube.com/@recorded\n")
    stats = run(root)
    assert stats.collected == 1 and stats.rejected == {"no-consent": 1, "license-not-allowed": 1}
    (rec,) = [RawVideo.from_dict(r) for r in read_jsonl(root / "raw" / "manifest.jsonl")]
    assert rec.video_id == "yt-ccBYvideo01" and rec.rights.license == "CC BY 3.0" and rec.rights.basis == "licence"
    assert rec.source.channel_id == "UCshkolla000000000000001" and rec.source.upload_date == "2024-05-01"
    assert set(rec.files.captions) == {"sq"}  # only the configured language
    assert "Mirëdita" in (root / rec.files.captions["sq"]).read_text()  # the uploader's, not the automatic one
    assert (root / "raw" / "download-archive.txt").read_text().strip() == "youtube ccBYvideo01"


def test_remote_ids_cannot_escape_the_root(tmp_path, http_root, monkeypatch):
    www, base = http_root
    shutil.copy(shared_video("retalking_face_5.mp4"), www / "v.mp4")
    info = {
        "id": "../../../../tmp/evil",
        "title": "x",
        "extractor_key": "Vimeo",
        "webpage_url": f"{base}/v",
        "license": "by",
        "formats": [{"format_id": "a", "url": f"{base}/v.mp4", "ext": "mp4", "protocol": "http"}],
    }
    monkeypatch.setattr("collect.download.YtDlp.list_videos", lambda self, url, max_videos=0: iter([(info, url, None)]))
    root = tmp_path / "data"
    root.mkdir()
    (root / "sources.yaml").write_text("sources:\n  - url: https://vimeo.com/x\n")
    assert run(root).collected == 1
    (rec,) = read_jsonl(root / "raw" / "manifest.jsonl")
    assert rec["video_id"] == "vimeo-tmp_evil"
    assert all(
        (root / p).resolve().is_relative_to(root.resolve()) for p in (rec["files"]["video"], rec["files"]["audio"])
    )


def test_sideways_local_video_is_stored_upright(tmp_path):
    src = shared_video("retalking_face_2.mp4")
    root = tmp_path / "data"
    (root / "own").mkdir(parents=True)
    sideways = tmp_path / "sideways.mp4"
    ffmpeg(
        "-i",
        str(src),
        "-vf",
        "crop=844:600:0:100,transpose=1",
        "-c:v",
        "libx264",
        "-crf",
        "14",
        "-c:a",
        "copy",
        str(sideways),
    )
    ffmpeg("-i", str(sideways), "-c", "copy", "-metadata:s:v:0", "rotate=90", str(root / "own" / "phone.mp4"))
    (root / "sources.yaml").write_text(f"sources:\n  - path: own\n    consent: {CONSENT}\n")
    assert run(root).collected == 1
    (rec,) = [RawVideo.from_dict(r) for r in read_jsonl(root / "raw" / "manifest.jsonl")]
    assert rec.media.source_rotation in (90, 270) and rec.media.rotation == 0
    assert (rec.media.width, rec.media.height) == (844, 600)
    assert rec.source.url == "local:own/phone.mp4"
    frame = next(iter_frames(root / rec.files.video))
    reference = next(iter_frames(src))[100:700]
    assert np.abs(frame.astype(int) - reference).mean() < 5


def test_collect_on_ray_and_on_the_pool_give_the_same_raw_files(tmp_path, http_root):
    """The downloads run on a local Ray (started here: 2 CPUs, no dashboard) and on a 2-process
    pool; both write the manifests in sources.yaml order, so the files are the same bytes."""
    ray = pytest.importorskip("ray")
    www, base = http_root
    for name, clip in (
        ("a.mp4", "retalking_face_2.mp4"),
        ("b.mp4", "retalking_face_5.mp4"),
        ("c.mp4", "retalking_face_3.mp4"),
    ):
        shutil.copy(shared_video(clip), www / name)
    (www / "page.html").write_text('<html><body><video src="c.mp4"></video></body></html>')
    sources = "sources:\n" + "".join(
        f"  - url: {base}/{name}\n    consent: {CONSENT}\n" for name in ("a.mp4", "missing.mp4", "page.html", "b.mp4")
    )
    roots = {}
    for engine in ("pool", "ray"):
        root = roots[engine] = tmp_path / engine
        root.mkdir()
        (root / "sources.yaml").write_text(sources)
        try:
            stats = run(root, workers=2, engine=engine)
        finally:
            ray.shutdown()
        assert stats.collected == 3 and stats.rejected == {"not-found": 1}

    def files(root):
        out = {}
        for p in sorted((root / "raw").rglob("*")):
            if not p.is_file() or p.name == "collect.config.yaml":  # the resolved config names the engine
                continue
            if p.suffix == ".jsonl":  # the time of collection differs, nothing else may
                rows = [{k: v for k, v in r.items() if k not in ("collected_at", "at")} for r in read_jsonl(p)]
                out[p.relative_to(root).as_posix()] = rows
            elif p.name == "download-archive.txt":  # yt-dlp's own bookkeeping, appended as downloads finish
                out[p.relative_to(root).as_posix()] = sorted(p.read_text().splitlines())
            elif p.name == "info.json":
                out[p.relative_to(root).as_posix()] = {
                    k: v for k, v in json.loads(p.read_text()).items() if k != "epoch"
                }
            else:
                out[p.relative_to(root).as_posix()] = p.read_bytes()
        return out

    pool, on_ray = files(roots["pool"]), files(roots["ray"])
    assert pool.keys() == on_ray.keys() and len([k for k in pool if k.endswith("audio.wav")]) == 3
    assert pool == on_ray
    urls = [r["source"]["url"] for r in pool["raw/manifest.jsonl"]]
    assert urls == [f"{base}/a.mp4", f"{base}/page.html", f"{base}/b.mp4"]  # in sources.yaml order
