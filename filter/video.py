"""One video through filter (DESIGN.md §3): a pure function from a raw-manifest record and a
config to accepted samples and rejection records. Nothing here knows about other videos, so a
process pool (or a distributed engine) can run it at scale."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from filter.config import FilterConfig
from shqip_av.components.face_tracker import FaceTrack, scan_faces
from filter.speech import (
    Utterance,
    diarize,
    label_utterances,
    load_diarization,
    utterances_from_captions,
    utterances_from_regions,
)
from filter.sync import SyncInput, SyncResult, load_sync_scorer
from shqip_av.components.voice_activity import silero_vad
from filter.transcripts import check_transcripts
from shqip_av import __version__, geometry, schema
from shqip_av.files import DatasetRoot, atomic_write_bytes, atomic_write_text, sha256_file
from shqip_av.log import StepTimes, get_logger
from shqip_av.manifest import dumps
from shqip_av.media import (
    AUDIO_RATE,
    BackgroundVideoWriter,
    MediaError,
    check_decodes,
    iter_frames,
    open_audio,
    probe,
    write_wav,
)
from shqip_av.records import RawVideo, Rejection

log = get_logger(__name__)


@dataclass
class VideoResult:
    video_id: str
    fingerprint: str
    accepted: list[dict] = field(default_factory=list)  # clips/manifest.jsonl records
    rejected: list[dict] = field(default_factory=list)  # clips/rejected.jsonl records
    stats: dict = field(default_factory=dict)
    error: str | None = None  # the video crashed: reported, not marked done, retried next run

    def to_dict(self) -> dict:
        return {
            "video_id": self.video_id,
            "fingerprint": self.fingerprint,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "stats": self.stats,
        }


@dataclass
class _Job:
    """An accepted (utterance, track) waiting for its crops."""

    utterance: Utterance
    track: FaceTrack
    first: int  # frame range [first, last)
    last: int
    eye_distance: float
    sync: SyncResult | None
    key: str
    correction: int = 0  # frames the audio is shifted by to meet the video (sync.correct_offset)


@dataclass
class _Candidate:
    """An (utterance, track) that passed size, coverage and pose, waiting for its sync score,
    measured on frames [s0, s1) with pad_before/pad_after frames of audio either side."""

    job: _Job
    decision: dict
    s0: int
    s1: int
    pad_before: int
    pad_after: int


def _sync_limits(cfg: FilterConfig, scorer):
    """The confidence limits of the configured method → a function giving (reason, detail, value) or None."""
    q = cfg.sync

    def unjudged(sync: SyncResult):
        return (
            "sync-too-short",
            "the face track around the utterance is shorter than the sync judge's window: not judged",
            len(sync.curve),
        )

    if hasattr(scorer, "thresholds"):  # a trained judge or expert: its calibrated limit unless one is given
        calibrated = scorer.thresholds
        low = q.expert_min_confidence if q.expert_min_confidence >= 0 else calibrated.get("min_confidence", 0.0)
        high = q.expert_max_distance
        measure = "LSE-C" if scorer.needs_crops else "sync confidence"

        def expert(sync: SyncResult):
            if not sync.judged:
                return unjudged(sync)
            if sync.confidence < low:
                return (
                    "sync-low-confidence",
                    f"{measure} below {low} (best offset {sync.offset_frames} frames)",
                    sync.confidence,
                )
            if sync.distance is not None and sync.distance > high:
                return (
                    "sync-low-confidence",
                    f"{'LSE-D' if scorer.needs_crops else 'sync distance'} above {high} (best offset {sync.offset_frames} frames)",
                    sync.distance,
                )
            return None

        return expert

    def energy(sync: SyncResult):
        if not sync.judged:
            return unjudged(sync)
        if sync.confidence < q.min_confidence:
            return (
                "sync-low-confidence",
                f"confidence below {q.min_confidence} (best offset {sync.offset_frames} frames)",
                sync.confidence,
            )
        return None

    return energy


def stream_crops(video, info, fps: float, spans: list, size: int, times: StepTimes | None = None, each=None):
    """One pass over the frames: the canonical crops and frame→crop transforms of each span
    (item, track, first, last) are collected and yielded as (item, crops, affines) as soon as the
    span ends, or, when the video ends early, with what it had. Memory holds only the open spans.
    Only the region of the frame that the crops read is decoded; ``each(item, crop)``, when
    given, sees every crop as it is made. filter's sync scoring and rendering, and
    train.lipsync.evaluate, all crop through here."""
    template = geometry.template(size)
    pending = sorted(
        (
            (
                item,
                track,
                first,
                last,
                [geometry.fit_similarity(p, template) for p in track.align[first - track.start : last - track.start]],
            )
            for item, track, first, last in spans
        ),
        key=lambda span: span[2],
    )
    every = [a for span in pending for a in span[4]]
    if not every:
        for item, *_ in pending:
            yield item, [], []
        return
    region = geometry.crop_region(np.array(every), size, info.width, info.height)
    offset = region[:2]
    active: list[tuple] = []
    end = max(span[3] for span in pending)
    frames = iter_frames(video, fps=fps, info=info, region=region)
    if times is not None:
        frames = times.iterate(frames, "decode")
    try:
        for index, frame in enumerate(frames):
            while pending and pending[0][2] <= index:
                item, _, first, last, affines = pending.pop(0)
                active.append((item, first, last, affines, []))
            for item, first, _, affines, crops in active:
                crops.append(geometry.warp_crop(frame, affines[index - first], size, offset))
                if each is not None:
                    each(item, crops[-1])
            for span in [a for a in active if a[2] <= index + 1]:
                active.remove(span)
                yield span[0], span[4], span[3]
            if index + 1 >= end:
                break
    finally:
        frames.close()
    for item, _, _, affines, crops in active:  # the video ended early
        yield item, crops, affines[: len(crops)]
    for item, *_ in pending:
        yield item, [], []


def _score_from_crops(
    video, info, fps: float, candidates: list[_Candidate], cfg: FilterConfig, score, times: StepTimes
) -> None:
    """Each candidate is scored on its canonical crops over [s0, s1) as soon as they are complete."""
    spans = [(c, c.job.track, c.s0, c.s1) for c in candidates]
    for c, crops, _ in stream_crops(video, info, fps, spans, cfg.crop.size, times):
        c.job.sync = score(c, np.stack(crops)) if crops else SyncResult(0.0, 0, "none", [])


def speaker_of(raw: RawVideo) -> str:
    """Who the sample shows, for speaker-disjoint splits: the collector's speaker, the consent
    subject, the channel, and only as a last resort the video itself."""
    consent = raw.rights.consent
    return (
        raw.source.speaker
        or (consent.subject if consent else None)
        or raw.source.channel_id
        or raw.source.channel
        or raw.video_id
    )


class ShiftedAudio:
    """A recording's samples read ``shift`` samples later (positive: the audio was late, so sample
    i of the corrected audio is sample i + shift of the recording), silence past either end; the
    same length and slicing as the PCM reader it wraps."""

    def __init__(self, audio, shift: int):
        self.audio, self.shift = audio, int(shift)

    def __len__(self) -> int:
        return len(self.audio)

    def __getitem__(self, item: slice) -> np.ndarray:
        start, stop, _ = item.indices(len(self))
        a, b = start + self.shift, stop + self.shift
        n = len(self.audio)
        piece = np.asarray(self.audio[max(0, min(a, n)) : max(0, min(b, n))], np.float32)
        before, after = max(0, -a) if a < 0 else 0, max(0, (b - a) - len(piece) - (max(0, -a) if a < 0 else 0))
        return np.concatenate([np.zeros(min(before, b - a), np.float32), piece, np.zeros(after, np.float32)])


class _Rejector:
    def __init__(self, raw: RawVideo, result: VideoResult):
        self.raw, self.result = raw, result

    def __call__(self, stage: str, reason: str, detail: str, value=None, key: str | None = None) -> None:
        r = Rejection(
            key or self.raw.video_id,
            f"filter.{stage}",
            reason,
            detail,
            value if not isinstance(value, float) else round(value, 4),
            video_id=self.raw.video_id,
            url=self.raw.source.url,
        ).to_dict()
        r.pop("at")  # the done marker holds the time; records stay identical across reruns
        self.result.rejected.append(r)


def process_video(record: dict, root: str, cfg: FilterConfig) -> VideoResult:
    """Filter one collected video: returns its accepted samples (files staged under
    clips/<video_id>.partial/, moved into place by the caller) and its rejections. The wall time
    of each step goes to stats["seconds"]."""
    raw = RawVideo.from_dict(record)
    result = VideoResult(raw.video_id, cfg.fingerprint())
    times = StepTimes()
    try:
        _process(raw, DatasetRoot(root), cfg, result, times)
    finally:
        result.stats["seconds"] = times.rounded()
    return result


def _process(raw: RawVideo, droot: DatasetRoot, cfg: FilterConfig, result: VideoResult, times: StepTimes) -> None:
    """One video through filter's named steps (DESIGN.md §3); a step that rejects the whole video
    ends it."""
    video = _VideoSteps(raw, droot, cfg, result, times)
    for step in (video.probe, video.speech, video.diarization, video.transcripts, video.faces, video.video_sync,
                 video.candidates, video.sync, video.crops):  # fmt: skip
        if not step():
            return
    result.accepted.sort(key=lambda r: (r["meta"]["start"], r["key"]))


class _VideoSteps:
    """The steps of one video, each a method that returns False when the video is done with
    (rejected whole), sharing what earlier steps found as attributes."""

    def __init__(self, raw: RawVideo, droot: DatasetRoot, cfg: FilterConfig, result: VideoResult, times: StepTimes):
        self.raw, self.droot, self.cfg, self.result, self.times = raw, droot, cfg, result, times
        self.vid = raw.video_id
        self.reject = _Rejector(raw, result)
        self.work = droot.path("work", self.vid)
        self.staging = droot.path("clips", f"{self.vid}.partial")
        shutil.rmtree(self.staging, ignore_errors=True)
        self.work.mkdir(parents=True, exist_ok=True)
        self.fps = cfg.probe.fps
        self.video = droot.path(raw.files.video)
        self.unheard: list[Utterance] = []  # rejected by the transcripts step, kept in decisions.json

    def probe(self) -> bool:
        """The file decodes, has picture and sound, a sane size, rate and length."""
        cfg, reject, video, raw = self.cfg, self.reject, self.video, self.raw
        try:
            with self.times("probe"):
                info = probe(video)
                if info.has_video and info.has_audio and not _as_collected(video, raw):
                    check_decodes(video)
        except MediaError as e:
            reject("probe", "does-not-decode", str(e))
            return False
        if not info.has_video:
            reject("probe", "no-video-stream", "the file has no video stream")
            return False
        if not info.has_audio:
            reject("probe", "no-audio-stream", "the file has no audio stream")
            return False
        short, long = sorted((info.width, info.height))
        if short < cfg.probe.min_side or long > cfg.probe.max_side or long > cfg.probe.max_aspect * short:
            reject(
                "probe",
                "absurd-resolution",
                f"{info.width}x{info.height} is outside {cfg.probe.min_side}..{cfg.probe.max_side} px "
                f"or wider than {cfg.probe.max_aspect}:1",
                f"{info.width}x{info.height}",
            )
            return False
        if info.fps < cfg.probe.min_fps:
            reject("probe", "low-frame-rate", f"average frame rate below {cfg.probe.min_fps}", info.fps)
            return False
        if info.duration < cfg.speech.min_utterance:
            reject(
                "probe",
                "too-short",
                f"shorter than the minimum utterance ({cfg.speech.min_utterance} s)",
                info.duration,
            )
            return False
        self.result.stats.update(
            duration=round(info.duration, 3),
            source_fps=round(info.fps, 3),
            width=info.width,
            height=info.height,
            variable_frame_rate=info.variable_frame_rate,
            rotation=info.rotation,
        )
        self.info = info
        return True

    def speech(self) -> bool:
        """Utterances from the captions or voice activity (cheap, and without speech there is
        nothing to look at). The audio is read on demand, never whole: memory stays bounded however
        long the video is."""
        cfg, raw, droot, reject = self.cfg, self.raw, self.droot, self.reject
        if (raw.sync or {}).get("truth") == "silent":  # measured before collect: no speech, no sync work
            self.result.stats["video_sync"] = {"truth": "silent", "verdict": "silent"}
            reject("speech", "silent-recording", "the recording carries no speech (its table says silent)")
            return False
        audio_path = droot.path(raw.files.audio)
        self.audio = open_audio(audio_path if audio_path.is_file() else self.work / "audio.wav", fallback=self.video)
        self.total = len(self.audio) / AUDIO_RATE
        captions = raw.files.captions.get(raw.source.language or "sq") or next(iter(raw.files.captions.values()), None)
        if cfg.speech.use_captions and captions:
            utterances, unusable = utterances_from_captions(droot.path(captions), self.total, cfg.speech)
            for u in utterances:
                u.transcript_source = "captions" if u.text else None
        else:
            with self.times("vad"):
                regions = silero_vad(cfg.speech.vad_model).speech_regions(self.audio, cfg.speech)
            utterances, unusable = utterances_from_regions(regions, cfg.speech)
        for u in unusable:
            reason = "utterance-too-short" if u.duration < cfg.speech.min_utterance else "utterance-too-long"
            reject(
                "speech",
                reason,
                f"utterance {u.start:.2f}–{u.end:.2f} s",
                u.duration,
                key=schema.sample_key(self.vid, "u", u.start),
            )
        self.result.stats["transcripts"] = "captions" if any(u.text for u in utterances) else "none"
        if not utterances:
            if not unusable:
                reject("speech", "no-speech", "no speech found (captions or voice activity)", 0.0)
            return False
        self.utterances = utterances
        return True

    def diarization(self) -> bool:
        """Who speaks when (pyannote), when a pipeline is configured."""
        cfg = self.cfg
        pipeline = load_diarization(cfg.diarization)
        with self.times("diarization"):  # pyannote takes the whole waveform
            turns = diarize(pipeline, self.audio[:]) if pipeline is not None else None
        label_utterances(self.utterances, turns)
        self.result.stats["diarization"] = (
            cfg.diarization.pipeline
            if pipeline is not None
            else "none: no pyannote pipeline configured, one speaker per video assumed"
        )
        return True

    def transcripts(self) -> bool:
        """Language, caption check, pseudo-labels (utterances about to be dropped for overlapping
        speech are not worth a recognizer pass)."""
        cfg = self.cfg
        if not cfg.transcripts.model:
            return True
        heard = [u for u in self.utterances if u.overlap <= cfg.diarization.max_overlap]
        with self.times("transcripts"):
            outcomes, step = check_transcripts(
                heard, self.audio, cfg.transcripts, min_duration=cfg.speech.min_utterance
            )
        self.result.stats["transcript_step"] = step.to_dict()
        for i, outcome in outcomes.items():
            heard[i].transcript_check = outcome.check
            if outcome.rejection:
                self.reject("transcripts", *outcome.rejection, key=schema.sample_key(self.vid, "u", heard[i].start))
                self.unheard.append(heard[i])
        self.utterances = [u for u in self.utterances if not any(u is x for x in self.unheard)]
        return True

    def faces(self) -> bool:
        """Face tracks over the whole video (MediaPipe), landmarks kept in the work folder."""
        with self.times.excluding("landmarks", "decode"):
            scan = scan_faces(self.video, self.info, self.cfg.faces, self.fps, folder=self.work, times=self.times)
        scan.save(self.work / "faces.npz")
        self.result.stats.update(
            frames=scan.num_frames,
            tracks=len(scan.tracks),
            face_frames=round(float((scan.faces_per_frame > 0).mean()) if scan.num_frames else 0.0, 4),
        )
        if not scan.tracks:
            self.reject("faces", "no-face", "no face track in the video", self.result.stats["face_frames"])
            return False
        self.scan = scan
        return True

    def video_sync(self) -> bool:
        """One audio offset for the whole video, before any utterance is judged (DESIGN.md §7.2):
        measured without a model on the longest face track over all the speech; corrected when
        clear (the audio every later step reads is shifted, the utterances with it), flagged and
        left alone when its halves drift; a verdict from collect (a table's) wins over the
        measurement, and a disagreement is noted. Recorded as stats["video_sync"]."""
        from shqip_av.av_offset import estimate_video_offset
        from shqip_av.components.audio_frontend import speech_loudness

        cfg, raw, fps = self.cfg.sync, self.raw, self.fps
        known = raw.sync or {}
        record: dict = {"truth": known.get("truth", "unknown")}
        if known.get("corrected_frames"):
            record["corrected_at_collect_frames"] = known["corrected_frames"]
        self.result.stats["video_sync"] = record
        if not self.utterances:
            record["verdict"] = "no-speech"  # nothing to measure: no sync work
            return True
        if not cfg.video_offset:
            return True
        with self.times("video sync"):
            # the face that speaks: of the three longest tracks, the one whose mouth follows the
            # loudness best (a listener's face next to the speaker's would give a wrong offset)
            tracks = sorted(self.scan.tracks, key=lambda t: -len(t.landmarks))[:3]
            end = max(t.start + len(t.landmarks) for t in tracks)
            audio = np.asarray(self.audio[0 : min(len(self.audio), int(round(end * AUDIO_RATE / fps)))], np.float64)
            loud = speech_loudness(audio, end, fps)
            estimates = []
            for track in tracks:
                marks = np.asarray(track.landmarks[0 : len(track.landmarks)], np.float64)
                found = estimate_video_offset(
                    marks, loud[track.start : track.start + len(marks)], max_lag=cfg.max_offset,
                    min_agree=cfg.video_min_agree,
                )  # fmt: skip
                estimates.append((found.verdict not in ("too-short", "silent"), found.r, track.track_id, found))
            _, _, track_id, estimate = max(estimates, key=lambda e: (e[0], e[1]))
        record.update(measured=estimate.to_dict(), verdict=estimate.verdict, track=track_id)
        if "table_offset_frames" in known:
            # the audio was corrected by the table's offset at collect: what is left should be ~0
            if estimate.clear and abs(estimate.offset) > 1:
                record["note"] = (
                    f"measured {estimate.offset:+d} frames after the table's correction of "
                    f"{known['table_offset_frames']:+d}: the table's offset is used"
                )
                log.info("%s: %s", self.vid, record["note"])
            record["corrected_frames"] = 0
            return True
        if estimate.verdict == "drifting":
            record["corrected_frames"] = 0  # one constant correction would be wrong for part of it
            log.info("%s: the audio offset drifts (halves %s): not corrected", self.vid, estimate.halves)
            return True
        shift = estimate.offset if estimate.clear and abs(estimate.offset) <= cfg.video_max_correction else 0
        record["corrected_frames"] = shift
        if shift:
            self.audio = ShiftedAudio(self.audio, int(round(shift * AUDIO_RATE / fps)))
            moved = shift / fps  # speech heard at t was said at t - shift/fps
            for u in self.utterances:
                u.start, u.end = max(0.0, u.start - moved), max(0.0, u.end - moved)
            self.utterances = [u for u in self.utterances if u.end - u.start > 0.05]
        return True

    def candidates(self) -> bool:
        """Per utterance, the face tracks that pass coverage, size and pose (sync comes next)."""
        cfg, reject, fps, vid, scan = self.cfg, self.reject, self.fps, self.vid, self.scan
        self.groups: list[list[_Candidate]] = []  # per utterance, the tracks that passed the checks before sync
        self.decisions: list[dict] = []  # every measurement, kept in work/<video_id>/decisions.json
        for u in self.utterances:
            if u.overlap > cfg.diarization.max_overlap:
                reject(
                    "speech",
                    "overlapping-speech",
                    f"{u.overlap:.2f} s with several speakers",
                    u.overlap,
                    key=schema.sample_key(vid, "u", u.start),
                )
                continue
            first, last = int(round(u.start * fps)), min(int(round(u.end * fps)), scan.num_frames)
            present = [t for t in scan.tracks if t.start < last and t.end > first]
            if not present or last - first < 2:
                reject(
                    "faces",
                    "no-face",
                    f"no face during {u.start:.2f}–{u.end:.2f} s",
                    0.0,
                    key=schema.sample_key(vid, "u", u.start),
                )
                continue
            group = [c for t in present if (c := self._candidate(u, t, first, last)) is not None]
            if group:
                self.groups.append(group)
        return True

    def _candidate(self, u: Utterance, t: FaceTrack, first: int, last: int) -> _Candidate | None:
        cfg, reject, fps = self.cfg, self.reject, self.fps
        key = schema.sample_key(self.vid, t.track_id, first / fps)  # the sample's start, as in its .json
        span = t.coverage(first, last)
        decision = {"key": key, "start": u.start, "end": u.end, "track": t.track_id, "coverage": round(span, 4)}
        self.decisions.append(decision)
        window = t.window(max(first, t.start), min(last, t.end))
        eye = float(np.median(geometry.eye_distance(t.landmarks[window])))
        decision["eye_distance_px"] = round(eye, 2)
        if eye < cfg.quality.min_eye_distance:  # checked first: small faces are also the ones tracking loses
            reject(
                "quality",
                "face-too-small",
                f"median eye distance below {cfg.quality.min_eye_distance} px",
                eye,
                key=key,
            )
            return None
        if span < cfg.quality.min_coverage:
            reject(
                "faces",
                "face-track-incomplete",
                "the face is not tracked through the whole utterance (it leaves the frame or is lost)",
                span,
                key=key,
            )
            return None
        problem = _pose_problem(t, window, cfg, decision)
        if problem:
            reject("quality", *problem, key=key)
            return None
        # short utterances are scored on a longer stretch of the same track: a second of
        # speech holds too few syllables for a reliable offset
        s0, s1 = _sync_window(first, last, t, int(round(cfg.sync.min_window * fps)))
        pad_before = min(cfg.sync.max_offset, s0)
        pad_after = max(0, min(cfg.sync.max_offset, int(self.total * fps) - s1))
        return _Candidate(_Job(u, t, first, last, eye, None, key), decision, s0, s1, pad_before, pad_after)

    def _sync_input(self, c: _Candidate, crops=None) -> SyncInput:
        fps = self.fps
        segment = self.audio[
            int((c.s0 - c.pad_before) * AUDIO_RATE / fps) : int((c.s1 + c.pad_after) * AUDIO_RATE / fps)
        ]
        track = c.job.track
        return SyncInput(track.landmarks[track.window(c.s0, c.s1)], segment, AUDIO_RATE, fps, c.pad_before,
                         c.pad_after, crops)  # fmt: skip

    def sync(self) -> bool:
        """Audio-visual sync of each candidate, from landmarks right away or (a trained expert) from
        canonical crops in one more pass; the limits; one face per utterance, the best in sync."""
        cfg, reject = self.cfg, self.reject
        scorer = load_sync_scorer(cfg.sync, cfg.probe.fps)
        candidates = [c for group in self.groups for c in group]
        with self.times.excluding("sync", "decode"):
            if scorer.needs_crops:
                score = lambda c, crops: scorer.score(self._sync_input(c, crops))  # noqa: E731
                _score_from_crops(self.video, self.info, self.fps, candidates, cfg, score, self.times)
            else:
                for c in candidates:
                    c.job.sync = scorer.score(self._sync_input(c))
        limits = _sync_limits(cfg, scorer)
        self.jobs: list[_Job] = []
        for group in self.groups:
            qualified = []
            for c in group:
                sync, key = c.job.sync, c.job.key
                c.decision.update(
                    sync_confidence=sync.confidence,
                    sync_offset_frames=sync.offset_frames,
                    sync_curve=sync.curve,
                    sync_method=sync.method,
                )
                if sync.distance is not None:
                    c.decision["sync_distance"] = sync.distance
                problem = limits(sync)
                if problem:
                    reject("sync", *problem, key=key)
                    continue
                if (
                    sync.offset_frames
                    and cfg.sync.correct_offset
                    and abs(sync.offset_frames) <= cfg.sync.max_correction
                ):
                    c.job.correction = sync.offset_frames  # the audio is shifted onto the video when written
                    c.decision["sync_correction_frames"] = sync.offset_frames
                elif abs(sync.offset_frames) > cfg.sync.max_abs_offset:
                    reject(
                        "sync",
                        "sync-offset",
                        f"audio is {sync.offset_frames} frames off the video "
                        f"(positive: audio late; limit ±{cfg.sync.max_abs_offset})",
                        sync.offset_frames,
                        key=key,
                    )
                    continue
                qualified.append(c.job)
            qualified.sort(key=lambda j: -j.sync.confidence)
            for other in qualified[1:]:
                reject(
                    "sync",
                    "other-face-selected",
                    f"{len(qualified)} faces qualify; the one with the best sync "
                    f"(track {qualified[0].track.track_id}) was kept",
                    other.sync.confidence,
                    key=other.key,
                )
            self.jobs.extend(qualified[:1])
        decisions = {
            "utterances": [vars(u) for u in self.utterances],
            "rejected_utterances": [vars(u) for u in self.unheard],
            "tracks": self.decisions,
            "video_sync": self.result.stats.get("video_sync"),
        }
        atomic_write_text(self.work / "decisions.json", dumps(decisions) + "\n")
        return True

    def crops(self) -> bool:
        """The accepted samples' canonical crops, audio, transcript and metadata, staged."""
        if self.jobs:
            with self.times.excluding("crops", "decode", "encode"):
                _render(self.video, self.info, self.fps, self.jobs, self.raw, self.cfg, self.staging, self.work,
                        self.reject, self.result, self.audio, self.times)  # fmt: skip
        return True


def sync_truth(video_sync: dict) -> str:
    """How far a sample's sync can serve as truth (what the sync judge may learn from):
    "verified" when a table measured the recording in sync or its offset was corrected at collect,
    "measured" when filter's whole-video measurement was clear (and corrected), "unclear" when the
    table or the measurement could not tell, "drifting" when the offset changes within the video."""
    truth, verdict = video_sync.get("truth", "unknown"), video_sync.get("verdict")
    if truth in ("in-sync", "late", "early"):
        return "verified"
    if truth == "unclear":
        return "unclear"
    if verdict == "drifting":
        return "drifting"
    return "measured" if verdict == "clear" else "unclear"


def _video_sync_quality(video_sync: dict) -> dict:
    if not video_sync:
        return {}
    return {
        "sync_truth": sync_truth(video_sync),
        "video_offset_frames": int(
            video_sync.get("corrected_at_collect_frames") or video_sync.get("corrected_frames") or 0
        ),
    }


def _as_collected(video: Path, raw: RawVideo) -> bool:
    """The file is the one collect checked (same sha256): its decode check need not be repeated.
    Hashing reads the file once at disk speed; decoding the tail of a long-GOP video takes
    longer (1.6 s on a 10 s HEVC clip)."""
    return bool(raw.media.sha256) and sha256_file(video) == raw.media.sha256


def _pose_problem(track: FaceTrack, window: slice, cfg: FilterConfig, decision: dict) -> tuple | None:
    """(reason, detail, value) when the head is turned too far, or when the canonical alignment
    fails in some frame (eyes and nose cannot be brought onto the template by a similarity:
    tracking jumped, or the landmarks are wrong); None when the face is usable."""
    q = cfg.quality
    if track.pose is not None:
        yaw, pitch, roll = np.percentile(np.abs(track.pose[window]), 90, axis=0)
        decision.update(yaw=round(float(yaw), 1), pitch=round(float(pitch), 1), roll=round(float(roll), 1))
        for name, value, limit in (("roll", roll, q.max_roll), ("yaw", yaw, q.max_yaw), ("pitch", pitch, q.max_pitch)):
            if value > limit:
                hint = (
                    " (a face lying sideways: is the video's rotation tag wrong?)"
                    if name == "roll" and value > 60
                    else ""
                )
                return "head-pose", f"|{name}| {value:.0f}° exceeds {limit:g}°{hint}", float(value)
    target = geometry.template(cfg.crop.size)
    eye_gap = float(np.linalg.norm(target[1] - target[0]))
    points = track.align[window]
    worst = (
        max(float(np.abs(geometry.apply_affine(geometry.fit_similarity(p, target), p) - target).max()) for p in points)
        / eye_gap
        if len(points)
        else 0.0
    )
    decision["alignment_error"] = round(worst, 4)
    if worst > q.max_alignment_error:
        return (
            "alignment-failed",
            (
                f"eye/nose points {worst:.2f} eye distances off the crop template after "
                f"alignment (limit {q.max_alignment_error:g})"
            ),
            worst,
        )
    return None


def _sync_window(first: int, last: int, track: FaceTrack, min_frames: int) -> tuple[int, int]:
    """The utterance's frames, widened evenly to ``min_frames`` within the track when shorter."""
    if last - first >= min_frames:
        return first, last
    lo = max(track.start, first - (min_frames - (last - first)) // 2)
    hi = min(track.end, lo + min_frames)
    return max(track.start, min(lo, hi - min_frames)), hi


def sharpness(crop: np.ndarray) -> float:
    """Variance of the Laplacian of the grey crop: low for blurred or over-compressed faces."""
    grey = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def _render(
    video,
    info,
    fps,
    jobs: list[_Job],
    raw: RawVideo,
    cfg: FilterConfig,
    staging: Path,
    work: Path,
    reject,
    result: VideoResult,
    audio,
    times: StepTimes,
) -> None:
    """Second pass over the frames: canonical crops for the accepted jobs, encoded while the pass
    goes on (in work/, moved into staging only if the sample is kept), then the samples."""
    spans = [(job, job.track, job.first, job.last) for job in jobs]
    writers: dict[int, BackgroundVideoWriter] = {}

    def each(job: _Job, crop: np.ndarray) -> None:
        if id(job) not in writers:
            writers[id(job)] = BackgroundVideoWriter(
                work / "encoding" / f"{job.key}.mp4", fps=fps, crf=cfg.crop.crf, extra_video_args=["-threads", "1"]
            )
        with times("encode"):  # waiting for a full encoder queue
            writers[id(job)].write(crop)

    try:
        for job, crops, affines in stream_crops(video, info, fps, spans, cfg.crop.size, times, each):
            writer = writers.pop(id(job), None)
            if len(crops) < 2:  # the video ended (fewer frames than the audio) before this job had any
                if writer is not None:
                    writer.abort()
                continue
            job.last = job.first + len(crops)
            with times("encode"):  # what the encoder has left once the pass reaches the span's end
                mp4 = writer.finish()
            _write_sample(
                job, crops, np.array(affines, dtype=np.float64), mp4, raw, cfg, staging, reject, result, audio, fps
            )
    finally:
        for writer in writers.values():  # a failed pass leaves no encoder running and no file
            writer.abort()
        with contextlib.suppress(OSError):
            (work / "encoding").rmdir()


def _write_sample(
    job: _Job,
    crops: list,
    affines: np.ndarray,
    mp4: Path,
    raw: RawVideo,
    cfg: FilterConfig,
    staging: Path,
    reject,
    result: VideoResult,
    audio,
    fps: float,
) -> None:
    """The sample's files into staging; ``mp4`` (its crops, already encoded) is moved there, or
    removed when the sample is rejected."""
    try:
        _stage_sample(job, crops, affines, mp4, raw, cfg, staging, reject, result, audio, fps)
    finally:
        mp4.unlink(missing_ok=True)


def _stage_sample(
    job: _Job,
    crops: list,
    affines: np.ndarray,
    mp4: Path,
    raw: RawVideo,
    cfg: FilterConfig,
    staging: Path,
    reject,
    result: VideoResult,
    audio,
    fps: float,
) -> None:
    sharp = float(np.median([sharpness(c) for c in crops[::5]]))
    if sharp < cfg.quality.min_sharpness:
        reject("quality", "blurry", f"median Laplacian variance below {cfg.quality.min_sharpness}", sharp, key=job.key)
        return
    staging.mkdir(parents=True, exist_ok=True)
    key = job.key
    start, end = job.first / fps, job.last / fps
    num_frames = job.last - job.first
    lm = geometry.apply_affine(affines, job.track.landmarks[job.track.window(job.first, job.last)])
    arrays = {"landmarks": lm.astype(np.float32), "affine": affines.astype(np.float32)}
    try:
        schema.check_arrays(arrays["landmarks"], arrays["affine"], num_frames, cfg.crop.size)
    except schema.SchemaError as e:  # checked before anything of the sample is written
        reject("crop", "invalid-sample", str(e), key=key)
        return
    for name, array in arrays.items():
        atomic_write_bytes(staging / f"{key}.{name}.npy", _npy_bytes(array))
    os.replace(mp4, staging / f"{key}.mp4")
    a0, a1 = int(round(start * AUDIO_RATE)), int(round(end * AUDIO_RATE))
    shift = int(round(job.correction * AUDIO_RATE / fps))  # late audio (+) is taken from later on
    piece = audio[max(0, a0 + shift) : max(0, a1 + shift)]
    if len(piece) < a1 - a0:  # shifted past an end of the recording: silence fills in
        before = max(0, -(a0 + shift))
        piece = np.concatenate(
            [np.zeros(before, np.float32), piece, np.zeros(a1 - a0 - before - len(piece), np.float32)]
        )
    write_wav(staging / f"{key}.wav", piece)
    text = job.utterance.text
    if text:
        atomic_write_text(staging / f"{key}.txt", unicodedata.normalize("NFC", text))
    consent = raw.rights.consent
    meta = {
        "schema_version": schema.SCHEMA_VERSION,
        "video_id": raw.video_id,
        "source_url": raw.source.url,
        "license": raw.rights.license,
        "consent": consent.reference if consent else (raw.rights.license and f"licence: {raw.rights.license}"),
        "speaker": speaker_of(raw),
        "diarization_label": job.utterance.speaker,
        "start": round(start, 3),
        "end": round(end, 3),
        "fps": fps,
        "num_frames": num_frames,
        "transcript_source": job.utterance.transcript_source if text else None,
        "quality": {
            "eye_distance_px": round(job.eye_distance, 2),
            "sharpness": round(sharp, 2),
            "sync_confidence": job.sync.confidence,
            "sync_offset_frames": job.sync.offset_frames,
            "sync_method": job.sync.method,
            "sync_correction_frames": job.correction,
            **({"sync_distance": job.sync.distance} if job.sync.distance is not None else {}),
            **_video_sync_quality(result.stats.get("video_sync") or {}),
        },
        "track": job.track.track_id,
        **(
            {"transcript_check": _sample_check(job.utterance.transcript_check)}
            if job.utterance.transcript_check
            else {}
        ),
        "producer": f"shqip-av {__version__}",
    }
    schema.check_meta_values(meta)
    atomic_write_text(staging / f"{key}.json", dumps(meta) + "\n")
    members = ["mp4", "wav", "json", "landmarks.npy", "affine.npy"] + (["txt"] if text else [])
    result.accepted.append(
        {
            "key": key,
            "video_id": raw.video_id,
            "speaker": meta["speaker"],
            "url": raw.source.url,
            "files": {m: f"clips/{raw.video_id}/{key}.{m}" for m in members},
            "duration": round(end - start, 3),
            "meta": meta,
        }
    )


def _sample_check(check: dict) -> dict:
    """The transcripts step's measurements a sample carries (the recognizer's text stays in
    decisions.json: for a caption it would be a second, unverified transcript)."""
    return {k: v for k, v in check.items() if k != "text"}


def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()
