"""Sync truth (DESIGN.md §7.2): a whole video's offset is measured and corrected before its
utterances are judged; a drifting video is flagged, not corrected; a silent one does no sync work;
collect.table applies a table's offset at collect and refuses a malformed one. On a real clip of
../shared (an in-sync VoxCeleb2 crop whose table verdict is in-sync)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import SHARED, ffmpeg

pytestmark = pytest.mark.slow

TABLE = SHARED / "testdata" / "speakers.tsv"
CLIP = "realpool/Hangz-nju-cuhk__Talking-Face_PC-AVS__Audio_Source_681100216.mp4"  # 9.8 s, in sync
SILENT = "realpool/jixinya__EAMM__surprised.mp4"  # a table verdict: silent
FRAME = 640  # audio samples per 25 fps frame at 16 kHz


def _clip() -> Path:
    path = SHARED / "testdata" / CLIP
    if not path.is_file():
        pytest.skip(f"{path} is missing")
    return path


def _with_audio(video: Path, audio: np.ndarray, out: Path) -> Path:
    from shqip_av.media import write_wav

    wav = write_wav(out.with_suffix(".wav"), audio)
    ffmpeg("-i", str(video), "-i", str(wav), "-map", "0:v", "-map", "1:a", "-c:v", "copy", "-c:a", "aac",
           "-shortest", str(out))  # fmt: skip
    wav.unlink()
    return out


def _filter(tmp_path: Path, videos: dict[str, Path]) -> tuple[Path, dict[str, str]]:
    """Collect (as own footage) and filter the videos; (root, {title: video id})."""
    from collect.pipeline import CollectConfig, prepare_raw
    from filter.config import FilterConfig
    from filter.pipeline import prepare_clips
    from shqip_av.manifest import read_jsonl

    root = tmp_path / "data"
    root.mkdir()
    consent = "{kind: release, subject: test speaker, reference: test input, granted: 2026-01-01}"
    (root / "sources.yaml").write_text(
        "sources:\n"
        + "".join(
            f"  - path: {path}\n    title: {title}\n    captions: false\n    consent: {consent}\n"
            for title, path in videos.items()
        )
    )
    prepare_raw(CollectConfig(root=str(root)))
    cfg = FilterConfig(root=str(root), workers=1)
    cfg.quality.min_eye_distance = 28
    prepare_clips(cfg)
    ids = {r["source"]["title"]: r["video_id"] for r in read_jsonl(root / "raw" / "manifest.jsonl")}
    return root, ids


def _decisions(root: Path, video_id: str) -> dict:
    return json.loads((root / "work" / video_id / "decisions.json").read_text())


def test_a_planted_offset_is_found_and_corrected_before_the_utterances_are_judged(tmp_path):
    from shqip_av.manifest import read_jsonl
    from shqip_av.media import read_audio

    clip = _clip()
    audio = read_audio(clip)
    late = _with_audio(
        clip, np.concatenate([np.zeros(4 * FRAME, np.float32), audio])[: len(audio)], tmp_path / "late.mp4"
    )
    # the drifting copy: in sync for the first half, 8 frames late for the second
    half = len(audio) // 2
    drift = np.concatenate([audio[:half], np.zeros(8 * FRAME, np.float32), audio[half:]])[: len(audio)]
    drifting = _with_audio(clip, drift, tmp_path / "drifting.mp4")
    root, ids = _filter(tmp_path, {"late": late, "drifting": drifting})

    found = _decisions(root, ids["late"])["video_sync"]
    assert found["verdict"] == "clear" and abs(found["measured"]["offset"] - 4) <= 1, found
    assert found["corrected_frames"] == found["measured"]["offset"]
    scored = [d for d in _decisions(root, ids["late"])["tracks"] if "sync_offset_frames" in d]
    assert scored and all(abs(d["sync_offset_frames"]) <= 1 for d in scored), scored  # judged after the correction
    kept = [r for r in read_jsonl(root / "clips" / "manifest.jsonl") if r["video_id"] == ids["late"]]
    assert kept and all(r["meta"]["quality"]["video_offset_frames"] == found["corrected_frames"] for r in kept)
    assert all(r["meta"]["quality"]["sync_truth"] == "measured" for r in kept)

    flagged = _decisions(root, ids["drifting"])["video_sync"]
    assert flagged["verdict"] == "drifting" and flagged["corrected_frames"] == 0, flagged
    halves = [h["offset"] for h in flagged["measured"]["halves"]]
    assert abs(halves[0]) <= 1 and abs(halves[1] - 8) <= 1, halves
    for r in read_jsonl(root / "clips" / "manifest.jsonl"):
        if r["video_id"] == ids["drifting"]:
            assert r["meta"]["quality"]["sync_truth"] == "drifting"  # the judge never learns from it


def _table(tmp_path: Path, rows: list[tuple[str, str, str]]) -> Path:
    """A slice of speakers.tsv with its sync columns replaced: rows of (file, sync, av_offset)."""
    lines = TABLE.read_text(encoding="utf-8").splitlines()
    header = lines[0].split("\t")
    by_file = {line.split("\t")[0]: line.split("\t") for line in lines[1:]}
    out = ["\t".join(header)]
    for file, sync, offset in rows:
        row = dict(zip(header, by_file[file]))
        row.update(file=str(SHARED / "testdata" / file), sync=sync, av_offset=offset)
        out.append("\t".join(row[h] for h in header))
    path = tmp_path / "table.tsv"
    path.write_text("\n".join(out) + "\n")
    return path


def test_collect_table_applies_the_offset_and_a_silent_clip_does_no_sync_work(tmp_path):
    import yaml

    from collect.pipeline import CollectConfig, prepare_raw
    from collect.table import prepare_sources
    from filter.config import FilterConfig
    from filter.pipeline import prepare_clips
    from shqip_av.manifest import read_jsonl
    from shqip_av.media import read_audio

    _clip()
    if not (SHARED / "testdata" / SILENT).is_file():
        pytest.skip(f"{SILENT} is missing")
    root = tmp_path / "data"
    root.mkdir()
    table = _table(tmp_path, [(CLIP, "late", "3"), (SILENT, "silent", "")])
    (root / "sources.yaml").write_text(yaml.safe_dump(prepare_sources(table, "third-party test footage")))
    prepare_raw(CollectConfig(root=str(root)))
    records = {r["source"]["title"]: r for r in read_jsonl(root / "raw" / "manifest.jsonl")}
    late = records[Path(CLIP).stem]
    assert late["sync"]["truth"] == "late" and late["sync"]["corrected_frames"] == 3
    stored, original = read_audio(root / late["files"]["audio"]), read_audio(SHARED / "testdata" / CLIP)
    shift = 3 * FRAME  # the audio was 3 frames late: it now starts 3 frames on, silence at the end
    assert len(stored) == len(original)
    assert np.abs(stored[: -shift - 100] - original[shift:-100]).max() < 2e-3
    assert np.abs(stored[-shift + 50 :]).max() < 1e-3

    cfg = FilterConfig(root=str(root), workers=1)
    cfg.quality.min_eye_distance = 28
    prepare_clips(cfg)
    silent = records[Path(SILENT).stem]["video_id"]
    rejected = [r for r in read_jsonl(root / "clips" / "rejected.jsonl") if r["video_id"] == silent]
    assert [r["reason"] for r in rejected] == ["silent-recording"]
    assert not (root / "work" / silent / "decisions.json").exists()  # no utterance was judged
    kept = [r for r in read_jsonl(root / "clips" / "manifest.jsonl") if r["video_id"] == late["video_id"]]
    assert kept and all(r["meta"]["quality"]["sync_truth"] == "verified" for r in kept)
    assert all(r["meta"]["quality"]["video_offset_frames"] == 3 for r in kept)


@pytest.mark.parametrize(
    "sync, offset, message",
    [
        ("late", "three", "av_offset 'three' is not a whole number of frames"),
        ("late", "400", "is not shorter than the clip"),
        ("unclear", "2", "an offset needs a clear verdict"),
        ("sideways", "", "sync 'sideways' is not one of in-sync, late, early, unclear, silent"),
    ],
)
def test_collect_table_refuses_a_malformed_offset_naming_the_row(tmp_path, sync, offset, message):
    from collect.table import prepare_sources
    from shqip_av import ShqipError

    _clip()
    table = _table(tmp_path, [(CLIP, sync, offset)])
    with pytest.raises(ShqipError, match=message) as error:
        prepare_sources(table)
    assert "line 2" in str(error.value) and "\n" not in str(error.value)
