"""The dub as a pipeline (DESIGN.md §8), as diffusers has them:

    from export.pipeline import DubbingPipeline

    pipe = DubbingPipeline.from_pretrained("exports/sq-en")          # a bundle folder or Hub id
    result = pipe("in.mp4", to="en", translation="en.srt", out="dubs/x")
    print(result.video, result.report["lip_synced_frames"])

``from_pretrained`` reads model_index.json into typed components and loads each one (its kind
checked): the recogniser, the translator, the speech synthesizer, the generator and the expert.
Calling the pipeline checks the call's inputs, claims the output folder, then runs short, named
steps (audio → segments → speech → faces → render → report). Each step that has a result worth
keeping stores it in the dub's work folder through one mechanism (``Work.step``), so a killed dub
rerun redoes only what was not finished. ``python -m export dub`` is a thin CLI over it.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from export import dub as steps
from export.dub import OWNER_KIND, DubConfig, DubError, Segment
from shqip_av import ShqipError
from shqip_av.files import atomic_output, atomic_write_text, sha256_file
from shqip_av.log import StepTimes, get_logger
from shqip_av.media import AUDIO_RATE

log = get_logger(__name__)

MAX_ADAPT_SECONDS = 30.0  # of speaking face adaptation learns from: memory holds these crops

LSE_HINT = {
    "lse_c": "sync confidence of the bundle's expert over the span: higher is better (near 0: the mouth does "
    "not follow the speech); compare with the expert's calibration in expert_thresholds",
    "lse_d": "audio-visual distance at the best offset: lower is better",
    "offset": "frames at which audio and mouth agree best; 0 is in sync, positive means the audio is late",
}
UNITS = {
    "times": "seconds (start, end, *_s, source_seconds, and the fitting figures synthesized, fitted, borrowed, "
    "overflow)",
    "fps": "frames per second",
    "frames": "video frames",
    "size": "pixels (width, height)",
    "face.box": "pixels in the source frame (x0, y0, x1, y1)",
}


# --------------------------------------------------------------------------------- the work folder
class Work:
    """The dub's step results in ``<out>/.<stem>.dub-work/``: the one cache of the pipeline.

    The folder is the dub's own: created with a record, locked while a dub uses it (a second dub
    of the same video into the same folder is refused, not interleaved), and cleared of the files
    the dub writes, never of anything else."""

    RECORD = "work.json"
    OURS = (
        "work.json",
        "lock",
        "inputs.json",
        "*.step.json",
        "source.wav",
        "source-native.wav",
        "dub.wav",
        "dub-native.wav",
        "faces.npz",
        "render.mp4",
        "adapted.safetensors",
        "adapted.json",
        "faces-track*.landmarks.npy",
        ".track*.raw",
        ".*.tmp*",
    )

    def __init__(self, folder: Path, created: bool, lock_fd: int):
        self.folder, self.created, self._lock = folder, created, lock_fd

    @classmethod
    def open(cls, folder: Path) -> "Work":
        import fcntl
        import os

        created = not folder.exists()
        if not created and not (folder / cls.RECORD).is_file():
            raise DubError(f"{folder} exists and is not a dub's work folder; move it away or choose another --out")
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise DubError(
                f"another dub of this video is writing into {folder.parent}; wait for it to finish"
            ) from None
        work = cls(folder, created, fd)
        if created:
            work.save_json("work", {"kind": OWNER_KIND, "note": "a dub's resumable steps; removed when it completes"})
        return work

    def json(self, name: str) -> Any:
        path = self.folder / f"{name}.json"
        return json.loads(path.read_text()) if path.is_file() else None

    def save_json(self, name: str, value) -> None:
        atomic_write_text(self.folder / f"{name}.json", json.dumps(value, indent=2, ensure_ascii=False) + "\n")

    def step(self, name: str, run: Callable[[], Any], *, files: tuple[str, ...] = ()) -> Any:
        """The result of step ``name``: read back when the step finished before (its record and
        every file it writes are there), else computed by ``run`` (which writes ``files`` into
        the folder) and recorded. The record is written last, so a step killed midway is redone."""
        record = self.json(f"{name}.step")
        if record is not None and all((self.folder / f).is_file() for f in files):
            return record["value"]
        value = run()
        self.save_json(f"{name}.step", {"value": value, "files": list(files)})
        return value

    def clear(self) -> None:
        """Remove the steps' files (a rerun with other inputs): only names the dub writes."""
        for pattern in self.OURS:
            if pattern in (self.RECORD, "lock"):
                continue
            for path in self.folder.glob(pattern):
                path.unlink(missing_ok=True)

    def remove(self) -> None:
        """The dub is over (done or refused): its files go, then the folder if nothing else is left."""
        self.clear()
        for name in (self.RECORD, "lock"):
            (self.folder / name).unlink(missing_ok=True)
        self.release()
        try:
            self.folder.rmdir()
        except OSError:
            log.warning("%s holds files the dub did not write; left in place", self.folder)

    def release(self) -> None:
        import os

        if self._lock >= 0:
            os.close(self._lock)
            self._lock = -1


# --------------------------------------------------------------------------------- the pipeline
@dataclass
class DubResult:
    """What a dub produced: the video, its .srt and report.json, and the report itself."""

    video: Path
    srt: Path
    report_path: Path
    report: dict = field(repr=False)


@dataclass
class _Call:
    """One call's inputs, checked before anything is written."""

    cfg: DubConfig
    video: Path
    info: Any
    duration: float
    target: str
    source_language: str
    translation: list[Segment] | None
    notes: list[str]
    signing: Any


def _quiet_libraries() -> None:
    """Library notices (transformers deprecations, weight-loading lines) are not the user's
    concern during a dub; progress and our own notes are."""
    import warnings

    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()  # "Loading weights" bars among the dub's own progress
    for category in (FutureWarning, DeprecationWarning, UserWarning):
        warnings.filterwarnings("ignore", category=category, module=r"(transformers|torch|huggingface_hub|peft)\b")


class DubbingPipeline:
    """Dubs talking-head videos with one bundle's components (see the module docstring)."""

    def __init__(self, bundle, *, asr=None, translator=None, speaker=None, generator=None, expert=None,
                 device: str = "cpu", mouth_shape=None):  # fmt: skip
        self.bundle = bundle
        self.asr = asr  # shqip_av.components.whisper.LoadedModel, or None
        self.translator = translator  # export.translate.Translator, or None (the user gives a .srt)
        self.speaker = speaker  # export.speak.EspeakSpeaker / VitsSpeaker
        self.generator = generator  # shqip_av.components.lipsync_generator.LipSyncGenerator
        self.expert = expert  # shqip_av.components.sync_expert.SyncExpert
        self.mouth_shape = mouth_shape  # shqip_av.components.mouth_shape.MouthShapeModel (retrieval)
        self.device = device

    @property
    def lipsync(self) -> str:
        """How this pipeline's dubs make mouths (the bundle's choice): retrieval or generator."""
        return "retrieval" if self.mouth_shape is not None else "generator"

    @classmethod
    def from_pretrained(cls, bundle: str | Path, *, revision: str = "main", device: str = "auto",
                        source_language: str = "") -> "DubbingPipeline":  # fmt: skip
        """Load every component of a bundle (a folder from ``python -m export bundle`` or a Hub id):
        a Hub id not in the cache offline, a corrupt or wrong-kind folder is one line, now."""
        from export.bundle import load_bundle
        from export.speak import make_speaker

        _quiet_libraries()
        loaded = load_bundle(str(bundle), revision)
        device = steps._device(device)
        language = source_language or loaded.index.get("source_language") or ""
        language = "" if language == "auto" else language
        asr = loaded.load_asr(language or None) if "asr" in loaded.index else None
        translator = None
        if "mt" in loaded.index:
            from export.translate import Translator

            translator = Translator(*loaded.load_mt())
        tts = loaded.component("tts")
        speaker = make_speaker(tts, *loaded.source("tts", tts))
        # the bundle names how mouths are made: the speaker's own, retrieved, or a generator's
        generator = loaded.load_generator().eval().to(device) if loaded.lipsync == "generator" else None
        mouth_shape = loaded.load_mouth_shape().eval() if loaded.lipsync == "retrieval" else None
        expert = loaded.load_expert().eval()
        return cls(loaded, asr=asr, translator=translator, speaker=speaker, generator=generator, expert=expert,
                   device=device, mouth_shape=mouth_shape)  # fmt: skip

    # ---------------------------------------------------------------------------- a call
    def __call__(self, video: str | Path, *, to: str = "", translation: str | Path | None = None,
                 out: str | Path | None = None, **options) -> DubResult:  # fmt: skip
        """Dub ``video`` into ``to`` (default: the bundle's language). ``translation``: your own
        .srt (its cues are the segments). ``options``: any other DubConfig field (visible_mark,
        duck, buffer_frames, color_match, feather, source_language, c2pa_cert, c2pa_key, fit)."""
        _check_api_options(options)
        cfg = DubConfig(input=str(video), bundle=str(self.bundle.path), to=to,
                        translation=str(translation) if translation else "", out=str(out) if out else "",
                        **options)  # fmt: skip
        try:
            return self.run(cfg)
        except DubError as e:  # the message in the API's words: arguments, not the command's flags
            raise DubError(_API_WORDS.sub(lambda m: _API_NAMES[m.group(0).strip()], str(e))) from None

    def run(self, cfg: DubConfig, checked: _Inputs | None = None) -> DubResult:
        """Nothing is written before every input is checked; a dub refused midway (no speech, say)
        leaves the --out folder as it was; a killed dub reruns from its last step; only files a
        dub wrote are ever replaced or removed."""
        from shqip_av.files import remove_tree

        call = self._check(cfg, checked)
        out, created, names = _claim_out(cfg, call.video)
        try:
            work = Work.open(out / f".{call.video.stem}.dub-work")
        except DubError:
            if created:
                remove_tree(out)
            raise
        try:
            report = _DubRun(self, call, out, work, names).run()
        except ShqipError:  # refused: what this dub wrote goes, so nothing has changed
            work.remove()
            if created and out.is_dir() and not any(out.iterdir()):
                out.rmdir()
            raise
        except BaseException:  # interrupted: the steps stay for the rerun
            work.release()
            raise
        work.remove()  # finished: the steps' files are no longer needed
        return DubResult(out / names[0], out / names[1], out / names[2], report)

    def _check(self, cfg: DubConfig, checked: _Inputs | None = None) -> _Call:
        """Every input of one call, checked before anything is written."""
        inputs = checked or check_inputs(cfg)
        bundle = self.bundle
        target = cfg.to or bundle.index.get("target_language") or "en"
        source_language = cfg.source_language or bundle.index.get("source_language") or ""
        source_language = "" if source_language == "auto" else source_language  # empty: Whisper detects it
        tts = bundle.entry("tts")
        if tts.backend == "espeak":  # espeak's voice is a language: it must be the target's
            voice = tts.source
            if voice.split("-")[0].lower() != target.split("-")[0].lower():
                raise DubError(
                    f"the bundle's speech is espeak-ng voice {voice!r}, which does not speak {target!r}: "
                    f"build a bundle with --tts espeak:{target} --to {target}"
                )
        if not cfg.translation:
            if self.translator is None:
                raise DubError(f"the bundle {bundle.path} has no translation model: give --translation my.srt")
            # an unknown language code: now, not after recognition (a detected source: after detection)
            self.translator.check(source_language or target, target)
        return _Call(cfg, inputs.video, inputs.info, inputs.duration, target, source_language, inputs.translation,
                     inputs.notes, inputs.signing)  # fmt: skip


# the command's flags in a message, as this API's arguments
_API_NAMES = {"--input": "video", "--out": "out=", "--translation": "translation=", "--adapt-steps": "adapt_steps="}
_API_WORDS = re.compile(r"--(?:input|out|translation|adapt-steps)\b(?!-) ?")


def _check_api_options(options: dict) -> None:
    """A call's keyword options against DubConfig's fields and their types, before any work:
    ``adapt_steps="ten"`` is one line now, not a TypeError midway."""
    import dataclasses

    fields = {f.name: f for f in dataclasses.fields(DubConfig)}
    reserved = {"input", "bundle", "to", "translation", "out"}
    for key, value in options.items():
        if key not in fields or key in reserved:
            allowed = ", ".join(sorted(set(fields) - reserved))
            raise DubError(f"unknown option {key}={value!r}; the options are {allowed}")
        declared = fields[key].type if isinstance(fields[key].type, str) else fields[key].type.__name__
        if declared == "bool":
            ok, kind = isinstance(value, bool), "True or False"
        elif declared == "int":
            ok, kind = isinstance(value, int) and not isinstance(value, bool), "a whole number"
        elif declared == "float":
            ok, kind = isinstance(value, (int, float)) and not isinstance(value, bool), "a number"
        elif declared == "str":
            ok, kind = isinstance(value, (str, Path)), "text or a path"
        else:
            ok, kind = True, ""
        if not ok:
            raise DubError(f"{key} must be {kind}, not {value!r}")


@dataclass
class _Inputs:
    """The inputs of a dub that need no model: the video, the translation .srt, the signing keys."""

    video: Path
    info: Any
    duration: float
    translation: list[Segment] | None
    notes: list[str]
    signing: Any


def check_inputs(cfg: DubConfig) -> _Inputs:
    """The video decodes and has a picture, the .srt passes its gate, the C2PA credentials sign:
    checked before any model loads or anything is written."""
    from export.disclose import C2paSigning
    from shqip_av.media import MediaError, check_decodes, probe

    from shqip_av.config import validate

    if not cfg.input:
        raise DubError("give the video to dub")
    validate(cfg)  # ranges (a negative --adapt-steps, say), for callers that built the config in code
    video = Path(cfg.input)
    if video.is_dir():
        raise DubError(f"{video}: is a folder; give the video file to dub")
    if not video.is_file():
        raise DubError(f"{video}: no such file")
    try:
        info = probe(video)
        check_decodes(video)
    except MediaError as e:
        raise DubError(f"{video}: cannot be read as a video ({str(e).splitlines()[0]})") from None
    if not info.has_video:
        raise DubError(f"{video}: has no video stream")
    picture = info.num_frames / info.fps if info.num_frames and info.fps else info.duration
    duration = min(info.duration, picture)
    translation, notes = steps.translation_segments(cfg.translation, duration) if cfg.translation else (None, [])
    signing = (
        C2paSigning.load(cfg.c2pa_cert, cfg.c2pa_key, cfg.c2pa_timestamp_url) if cfg.c2pa_cert or cfg.c2pa_key else None
    )
    return _Inputs(video, info, duration, translation, notes, signing)


def _claim_out(cfg: DubConfig, video: Path) -> tuple[Path, bool, list[str]]:
    """The output folder, whether this dub created it, and the names it will write there. Any of
    those names already present and not written by a dub stops the dub, with nothing changed."""
    from shqip_av.files import foreign_files

    out = Path(cfg.out or Path("dubs") / video.stem)
    names = [f"{video.stem}.dub.mp4", f"{video.stem}.dub.srt", "report.json"]
    if out.exists() and not out.is_dir():
        raise DubError(f"--out {out} is a file, not a folder")
    foreign = foreign_files(out, OWNER_KIND, names)
    if foreign:
        raise DubError(
            f"--out {out} already has {foreign[0]}, which no dub wrote; choose another --out (nothing was changed)"
        )
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DubError(f"cannot write to {out}: {e.strerror}") from None
    return out, created, names


def _face_of(track, first: int, last: int) -> dict:
    """Which face a span regenerated: its track id and its median box in the source frame."""
    marks = np.asarray(track.landmarks[first - track.start : last - track.start])
    lo, hi = np.median(marks.min(axis=1), axis=0), np.median(marks.max(axis=1), axis=0)
    return {"track": int(track.track_id), "box": [int(round(v)) for v in (*lo, *hi)]}


class _DubRun:
    """One dub's named steps over the work folder; each a short method."""

    def __init__(self, pipe: DubbingPipeline, call: _Call, out: Path, work: Work, names: list[str]):
        self.pipe, self.call, self.cfg, self.out, self.work, self.names = pipe, call, call.cfg, out, work, names
        self.info, self.fps, self.duration = call.info, call.info.fps, call.duration
        self.notes = list(call.notes)
        self.times = StepTimes()
        self.source_language = call.source_language

    def run(self) -> dict:
        self.inputs()
        original = self.audio()
        segments, original_speech, detected = self.segments(original)
        fitting = self.speech(original, segments)
        scan = self.faces()
        spans, span_of, quiet = self.spans(scan, original, segments, original_speech)
        if self.pipe.lipsync == "retrieval":
            generator = self.retrieve(spans)
        else:
            generator = self.adapt(spans, original, original_speech)
        lse = self.render(spans, generator)
        return self.report(segments, fitting, spans, span_of, quiet, lse, scan.num_frames, detected)

    def path(self, name: str) -> Path:
        return self.work.folder / name

    def inputs(self) -> None:
        """What the steps depend on: a rerun with other inputs starts over."""
        cfg = self.cfg
        self.source_sha256 = sha256_file(self.call.video)
        inputs = {
            "source_sha256": self.source_sha256,
            "bundle": str(self.pipe.bundle.path),
            "to": self.call.target,
            "from": self.source_language,
            "translation_sha256": sha256_file(cfg.translation) if cfg.translation else None,
            "fit": asdict(cfg.fit),
            "duck": cfg.duck,
        }
        if self.work.json("inputs") not in (None, inputs):
            self.work.clear()
        self.work.save_json("inputs", inputs)

    def audio(self) -> np.ndarray:
        """The source's audio at 16 kHz mono (for recognition and the generator) and at its own rate
        and channels (for the soundtrack); cut to the picture's length (and said so)."""
        from shqip_av.media import extract_audio, extract_audio_native, read_audio, write_wav

        video, info = self.call.video, self.info

        def extract():
            with self.times("audio"):
                if info.has_audio:
                    extract_audio(video, self.path("source.wav"))
                    extract_audio_native(video, self.path("source-native.wav"))
                else:
                    write_wav(self.path("source.wav"), np.zeros(int(info.duration * AUDIO_RATE), np.float32))

        files = ("source.wav", "source-native.wav") if info.has_audio else ("source.wav",)
        self.work.step("audio", extract, files=files)
        original = read_audio(self.path("source.wav"))
        if len(original) / AUDIO_RATE > self.duration + 0.5:
            self.notes.append(
                f"the audio runs {len(original) / AUDIO_RATE - self.duration:.1f} s past the picture; "
                f"the dub ends with the picture at {self.duration:.1f} s"
            )
            original = original[: int(self.duration * AUDIO_RATE)]
        return original

    def segments(self, original: np.ndarray) -> tuple[list[Segment], list[Segment], dict | None]:
        """The segments to dub, the language spoken, and the texts (recognized, translated)."""

        def find() -> dict:
            with self.times("speech segments"):
                original_speech = steps.speech_segments(original)
            if self.call.translation is not None:
                segments = [Segment(s.start, s.end, "", s.translation) for s in self.call.translation]
            else:
                segments = [Segment(s.start, s.end) for s in original_speech]
                if not segments:
                    raise DubError(f"{self.call.video}: no speech found (nothing to dub)")
            language, detected = self.source_language, None
            if self.pipe.asr is not None:  # with the user's translation too: the report shows what was said
                with self.times("recognize"):
                    language, detected = steps.recognize(self.pipe.asr, original, segments, language, self.pipe.device)
            if self.pipe.translator is not None and self.call.translation is None:
                self.pipe.translator.check(language, self.call.target)
                with self.times("translate"):
                    texts = self.pipe.translator.translate(
                        [s.source_text for s in segments], language, self.call.target
                    )
                for seg, text in zip(segments, texts):
                    seg.translation = text
            return {
                "source_language": language,
                "detected": detected,
                "segments": [asdict(s) for s in segments],
                "original_speech": [asdict(s) for s in original_speech],
            }

        found = self.work.step("segments", find)
        self.source_language = found["source_language"]
        segments = [Segment(**s) for s in found["segments"]]
        original_speech = [Segment(**s) for s in found["original_speech"]]
        return [s for s in segments if s.translation.strip()], original_speech, found["detected"]

    def speech(self, original: np.ndarray, segments: list[Segment]) -> list[dict]:
        """Each translation spoken and fitted to its slot, then mixed over the ducked original: at
        16 kHz mono for the generator, and at the source's own rate and channels for the
        soundtrack (outside the new speech it is the source's, as it was)."""
        from shqip_av.media import read_wav, write_wav

        info, cfg = self.info, self.cfg

        def speak() -> list[dict]:
            pieces, fitting = steps.speak_segments(
                self.pipe.speaker, original, segments, cfg.fit, self.duration, self.times
            )
            with self.times("mix"):
                write_wav(self.path("dub.wav"), steps.mix(original, segments, pieces, cfg.duck))
                if info.has_audio:
                    native, rate = read_wav(self.path("source-native.wav"))
                    native = native[: int(round(self.duration * rate))]
                    mixed = steps.mix(native if native.shape[1] > 1 else native[:, 0], segments, pieces, cfg.duck, rate)
                    write_wav(self.path("dub-native.wav"), mixed, sample_rate=rate)
            return fitting

        files = ("dub.wav", "dub-native.wav") if info.has_audio else ("dub.wav",)
        return self.work.step("speech", speak, files=files)

    def faces(self) -> Any:
        """Face tracks over the whole video (MediaPipe), kept in the work folder."""
        from shqip_av.components.face_tracker import FaceScan, FaceTracker

        def track() -> int:
            with self.times("faces"):
                scan = FaceTracker.from_pretrained().scan(
                    self.call.video, self.info, self.fps, folder=self.work.folder, progress_desc="face tracking"
                )
            scan.save(self.path("faces.npz"))
            return len(scan.tracks)

        self.work.step("faces", track, files=("faces.npz",))
        return FaceScan.load(self.path("faces.npz"))

    def spans(
        self, scan: Any, original: np.ndarray, segments: list[Segment], original_speech: list[Segment]
    ) -> tuple[list, list, list[Segment]]:
        """The frames to regenerate, per speaking face. Where the original speaker talked and the
        new audio is silent, the mouth is regenerated too (to silence): otherwise it would go on
        mouthing words nobody hears."""
        from shqip_av.components import audio_frontend as frontend

        n = scan.num_frames
        quiet = steps.uncovered(original_speech, segments)
        everything = sorted(segments + quiet, key=lambda seg: seg.start)
        loudness = frontend.speech_loudness(original, n, self.fps)
        spans, owners = steps.lipsync_spans(scan, everything, loudness, self.fps, self.cfg.buffer_frames, n)
        position = {id(seg): i for i, seg in enumerate(everything)}
        span_of = [owners[position[id(seg)]] for seg in segments]
        if not scan.tracks:
            self.notes.append("no face found anywhere: the audio is dubbed, the picture is not lip-synced")
        elif not spans:
            self.notes.append("no face speaks during the segments: the picture is not lip-synced")
        return spans, span_of, quiet

    def retrieve(self, spans):
        """The retrieval mouth path (shqip_av.mouth_retrieval): the speaker's own frames chosen for the new
        speech's predicted mouth shapes; nothing is adapted."""
        from shqip_av.mouth_retrieval import RetrievalLipSync
        from shqip_av.components import audio_frontend as frontend
        from shqip_av.media import read_audio

        self.adaptation = {"steps": 0, "used": False, "note": "retrieval: the speaker's own mouths, nothing adapted"}
        lipsync = RetrievalLipSync(self.pipe.mouth_shape, exclude_seconds=getattr(self, "exclude_seconds", 0.0))
        dub_audio = read_audio(self.path("dub.wav"))
        with self.times("mouth retrieval"):
            self.retrieval = lipsync.prepare(
                self.call.video, self.info, self.fps, spans, dub_audio, frontend.log_mel(dub_audio).numpy()
            )
        self.notes.extend(self.retrieval.get("notes", []))
        return lipsync

    def adapt(self, spans, original: np.ndarray, original_speech: list[Segment]):
        """The generator adapted to the face lip-synced longest (train.lipsync.adapt), on that
        face's frames inside the original speech, with their own audio; the base generator when
        adaptation is off, impossible (too little speech, too small a face) or diverges (noted).
        The weights are kept in the work folder with what they were made from, so a rerun of the
        same video reuses them and no other video ever does."""
        from safetensors.torch import load_file, save_file

        from shqip_av.components import weights_digest

        base, steps = self.pipe.generator, self.cfg.adapt_steps
        self.adaptation = {"steps": 0, "used": False}
        if steps == 0 or not spans:
            return base
        track = max({id(t): t for t, _, _ in spans}.values(), key=lambda t: sum(b - a for u, a, b in spans if u is t))
        key = {
            "source_sha256": self.source_sha256,
            "generator": weights_digest(str(self.pipe.bundle.source("generator")[0])),
            "steps": steps,
            "track": track.track_id,
        }
        weights = self.path("adapted.safetensors")
        if self.work.json("adapted") == key and weights.is_file():  # this video's, from an earlier run
            model = copy.deepcopy(base)
            model.load_state_dict(load_file(str(weights), device=str(next(base.parameters()).device)))
            self.adaptation = {"steps": steps, "used": True, "reused": True}
            return model.eval()
        weights.unlink(missing_ok=True)
        with self.times("adapt"):
            result = self._adapt_on(track, original, original_speech, count=steps)
        self.adaptation = {
            "steps": result.steps if result.adapted else 0,
            "used": result.adapted,
            "frames": result.frames,
            "seconds": round(result.seconds, 1),
            "masked_l1_first_last": result.loss,
        }
        if result.note:
            self.notes.append(result.note)
            return base
        with atomic_output(weights, suffix=".safetensors") as tmp:
            save_file({k: v.contiguous() for k, v in result.model.state_dict().items()}, str(tmp))
        self.work.save_json("adapted", key)
        return result.model

    def _adapt_on(self, track, original: np.ndarray, original_speech: list[Segment], count: int):
        """Crops of ``track`` in the original speech (at most MAX_ADAPT_SECONDS), their landmarks and
        audio windows, then ``adapt_generator``."""
        import cv2

        from shqip_av import geometry
        from shqip_av.components import audio_frontend as frontend
        from shqip_av.media import iter_frames
        from shqip_av.schema import CROP_SIZE
        from shqip_av.components.lipsync_generator import audio_windows
        from train.lipsync.adapt import AdaptResult, adapt_generator

        base = self.pipe.generator
        size = base.generator_config.size
        eye = float(np.median(geometry.eye_distance(np.asarray(track.landmarks[0 : len(track.landmarks)]))))
        needed = geometry.TEMPLATE_256[1, 0] - geometry.TEMPLATE_256[0, 0]
        if eye < 0.5 * needed * size / CROP_SIZE:
            return AdaptResult(
                base,
                note=f"the face is too small to adapt on (eyes {eye:.0f} px apart; the generator's "
                f"crop has them {needed * size / CROP_SIZE:.0f} px apart); the base generator was used",
            )
        wanted: list[range] = []
        budget = int(MAX_ADAPT_SECONDS * self.fps)
        for seg in original_speech:
            first = max(track.start, int(np.ceil(seg.start * self.fps)))
            last = min(track.end, int(seg.end * self.fps), first + budget)
            if last > first:
                wanted.append(range(first, last))
                budget -= last - first
            if budget <= 0:
                break
        index = {f: i for i, r in enumerate(wanted) for f in r}
        runs = [([], []) for _ in wanted]
        if index:
            for f, frame in enumerate(iter_frames(self.call.video, fps=self.fps, info=self.info)):
                if f > max(index):
                    break
                if f in index:
                    i = f - track.start
                    crop, affine = geometry.canonical_crop(frame, track.align[i], CROP_SIZE)
                    marks = geometry.apply_affine(affine, np.asarray(track.landmarks[i : i + 1][0], np.float64))
                    runs[index[f]][0].append(cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA))
                    runs[index[f]][1].append(marks * (size / CROP_SIZE))
        mel = frontend.log_mel(original).numpy()
        audio = [audio_windows(mel, np.array(list(r)) / self.fps) for r in wanted]
        return adapt_generator(
            base,
            [np.stack(c) if c else np.zeros((0, size, size, 3), np.uint8) for c, _ in runs],
            [np.stack(m) if m else np.zeros((0, 478, 2)) for _, m in runs],
            audio,
            steps=count,
        )

    def keep_adapted(self, generator) -> str | None:
        """With --keep-adapted: the adapted generator as a model folder next to the dub."""
        if not (self.cfg.keep_adapted and self.adaptation.get("used")):
            return None
        from shqip_av.files import record_owned

        folder = self.out / f"{self.call.video.stem}.adapted-generator"
        generator.save_pretrained(folder)
        record_owned(self.out, OWNER_KIND, [f"{folder.name}/{p.name}" for p in folder.iterdir() if p.is_file()])
        return folder.name

    def render(self, spans, generator) -> dict:
        """The dubbed video (and its C2PA signature); returns the expert's LSE per span."""
        import shqip_av
        from export.disclose import container_metadata
        from shqip_av.components import audio_frontend as frontend
        from shqip_av.files import atomic_output, record_owned
        from shqip_av.media import read_audio

        bundle, signing, video = self.pipe.bundle, self.call.signing, self.call.video
        result = self.out / self.names[0]
        metadata = container_metadata(shqip_av.__version__, bundle.name, self.source_sha256)
        dub_mel = frontend.log_mel(read_audio(self.path("dub.wav"))).numpy()
        rendered = self.path("render.mp4") if signing else result
        soundtrack = self.path("dub-native.wav") if self.info.has_audio else self.path("dub.wav")
        record_owned(self.out, OWNER_KIND, self.names)  # from here on these names are the dub's
        lse = steps.render(
            video, self.info, self.fps, spans, generator, dub_mel, self.cfg, rendered, soundtrack,
            metadata, self.pipe.expert, self.times,
        )  # fmt: skip
        self.adaptation["kept_as"] = self.keep_adapted(generator)
        if signing:
            details = {
                "bundle": bundle.name,
                "source_sha256": self.source_sha256,
                "source_language": self.source_language,
                "target_language": self.call.target,
                "generated": steps.GENERATED,
                "lipsync": self.pipe.lipsync,
                "adaptation": self.adaptation,
            }
            with self.times("c2pa"), atomic_output(result, suffix=".mp4") as tmp:
                signing.sign(rendered, tmp, video, result.name, details)
        return lse

    def report(self, segments, fitting, spans, span_of, quiet, lse, frames: int, detected) -> dict:
        """The .srt of the new speech and report.json."""
        from shqip_av.captions import Cue, write_srt
        from shqip_av.components import calibration

        cfg, info, bundle = self.cfg, self.info, self.pipe.bundle
        write_srt(self.out / self.names[1], [Cue(s.start, s.end, s.translation) for s in segments])
        faces_used = [_face_of(track, first, last) for track, first, last in spans]
        rows = []
        for i, (seg, fit) in enumerate(zip(segments, fitting)):
            span = span_of[i]
            rows.append({
                "index": i, "start": seg.start, "end": seg.end, "source_text": seg.source_text,
                "translation": seg.translation, **fit, "lip_synced": span is not None,
                "face": faces_used[span] if span is not None else None,
                "sync": lse.get(span) if span is not None else None,
            })  # fmt: skip
        regenerated = set()
        for _, first, last in spans:
            regenerated.update(range(first, last))
        report = {
            "video": str(self.out / self.names[0]),
            "source": str(self.call.video),
            "source_sha256": self.source_sha256,
            "bundle": str(bundle.path),
            "source_language": self.source_language,
            "source_language_detected": detected,
            "target_language": self.call.target,
            "fps": self.fps,
            "size": [info.width, info.height],
            "frames": frames,
            "lip_synced_frames": len(regenerated),
            "faces": [{**f, "first_frame": a, "end_frame": b} for f, (_, a, b) in zip(faces_used, spans)],
            "translation": "user .srt" if cfg.translation else bundle.entry("mt").source,
            "generated": steps.GENERATED,
            "lipsync": self.pipe.lipsync,
            **({"retrieval": self.retrieval.get("spans", [])} if getattr(self, "retrieval", None) else {}),
            "visible_mark": cfg.visible_mark,
            "c2pa_signed": self.call.signing is not None,
            "adaptation": self.adaptation,
            "notes": self.notes,
            "mouth_regenerated_to_silence": [[q.start, q.end] for q in quiet],
            "segments": rows,
            "source_seconds": round(self.duration, 3),
            "step_seconds": self.times.rounded(),
            "sync_metrics": LSE_HINT,
            "expert_thresholds": calibration(bundle.source("expert")[0]) or None,
            "audio": {"sample_rate": info.audio_rate or AUDIO_RATE, "channels": info.audio_channels or 1},
            "units": UNITS,
        }
        atomic_write_text(self.out / self.names[2], json.dumps(report, indent=2, ensure_ascii=False) + "\n")
        return report
