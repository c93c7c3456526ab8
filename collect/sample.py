"""python -m collect.sample --root data: the embedded default data set.

Writes a few self-made, consented talking-head clips to <root>/incoming/sample/ and a
sources.yaml that points at them, so every stage runs on a fresh machine with no network.

How a clip is made:
- the face is a real photograph that ships with scikit-image (``skimage.data.astronaut()``,
  public domain, NASA); each "speaker" is that photo mirrored/tinted/zoomed differently, with
  its own espeak-ng Albanian voice (``-v sq`` variants) — one face photo, several voices;
- speech: Albanian sentences written for this project, synthesised with ``espeak-ng -v sq``;
  the sentences become the clip's uploader captions (<clip>.sq.vtt), cue times from the audio;
- the mouth opens with the loudness of the speech (the lower lip and chin are displaced down
  by the frame's RMS envelope and the gap is painted as mouth interior), and the head moves
  with slow rotation, translation and scale, so face tracking and lip-sync filters have real
  work to do.

Deliberately bad clips give later filters something to reject: one with no face, one silent,
one whose face is too small, and one listed without any consent record.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from shqip_av import ShqipError
from shqip_av.captions import Cue, read_vtt, write_srt, write_vtt
from shqip_av.config import option, parse_config, run_cli
from shqip_av.files import DatasetRoot, atomic_write_text
from shqip_av.log import progress, setup_logging
from shqip_av.media import AUDIO_RATE, read_audio, write_video, write_wav
from shqip_av.schema import FPS  # the clips are made at the schema's rate

SIZE = 512  # output frame size (square)
SOURCES_MARKER = "# sources.yaml written by `python -m collect.sample`"

# Albanian sentences written for this sample (everyday topics, ë and ç throughout).
SENTENCES = [
    "Mirëdita, unë quhem Arta dhe jetoj në Tiranë.",
    "Sot koha është e ngrohtë dhe dielli shkëlqen.",
    "Gjuha shqipe ka shumë fjalë të bukura.",
    "Unë pi çaj çdo mëngjes para punës.",
    "Fëmijët luajnë në oborrin e shkollës.",
    "Libri që lexova javën e kaluar ishte shumë interesant.",
    "Qyteti ynë ka një park të madh me pemë të larta.",
    "Ne do të takohemi nesër në orën dhjetë.",
    "Deti është i qetë dhe ujërat janë të kaltra.",
    "Gjyshja ime gatuan byrek me spinaq.",
    "Çdo ditë mësoj diçka të re.",
    "Faleminderit që më dëgjuat me vëmendje.",
]

# English translations of SENTENCES (ours), shipped as <clip>.en.srt beside each clip: the
# translation `make demo` dubs a sample clip with (python -m export dub --translation ...).
TRANSLATIONS_EN = [
    "Good afternoon, my name is Arta and I live in Tirana.",
    "Today the weather is warm and the sun is shining.",
    "The Albanian language has many beautiful words.",
    "I drink tea every morning before work.",
    "The children play in the school yard.",
    "The book I read last week was very interesting.",
    "Our city has a big park with tall trees.",
    "We will meet tomorrow at ten o'clock.",
    "The sea is calm and the waters are blue.",
    "My grandmother cooks spinach pie.",
    "Every day I learn something new.",
    "Thank you for listening to me carefully.",
]

# Landmarks of the astronaut photo (512×512), measured once with MediaPipe FaceLandmarker:
# inner lips at y 143–149 (upper teeth show: the lower lip is what drops), mouth corners x 202–245, chin y 177, face centre about (223, 135).
MOUTH_Y, MOUTH_X, MOUTH_HALF_WIDTH = 149.5, 223.5, 22.0
FACE_CENTRE = (223.0, 132.0)
CROP = 200.0  # source pixels shown across the output frame: eyes ≈ 110 px apart in the output
MAX_OPEN = 9.0  # source pixels the lower lip drops at full loudness


@dataclass(frozen=True)
class Speaker:
    name: str
    voice: str
    pitch: int
    speed: int
    mirror: bool = False
    tint: tuple[float, float, float] = (1.0, 1.0, 1.0)
    zoom: float = 1.0


SPEAKERS = [
    Speaker("a", "sq+m3", 40, 145),
    Speaker("b", "sq+f2", 70, 140, mirror=True, tint=(1.08, 0.97, 0.92)),
    Speaker("c", "sq+m1", 25, 155, tint=(0.92, 1.0, 1.08), zoom=1.12),
]


@dataclass(frozen=True)
class ClipSpec:
    name: str
    speaker: Speaker
    sentences: tuple[int, ...]
    kind: str = "good"  # good | no-face | silent | small-face | no-consent


CLIPS = [
    ClipSpec("speaker_a_01", SPEAKERS[0], (0, 1)),
    ClipSpec("speaker_a_02", SPEAKERS[0], (2, 3)),
    ClipSpec("speaker_b_01", SPEAKERS[1], (4, 5)),
    ClipSpec("speaker_b_02", SPEAKERS[1], (6, 7)),
    ClipSpec("speaker_c_01", SPEAKERS[2], (8, 9)),
    ClipSpec("speaker_c_02", SPEAKERS[2], (10, 11)),
    ClipSpec("bad_no_face", SPEAKERS[0], (3,), kind="no-face"),
    ClipSpec("bad_silent", SPEAKERS[1], (), kind="silent"),
    ClipSpec("bad_small_face", SPEAKERS[2], (1,), kind="small-face"),
    ClipSpec("bad_no_consent", SPEAKERS[0], (5,), kind="no-consent"),
]


@dataclass
class SampleConfig:
    root: str = option("data", "dataset root; clips go to <root>/incoming/sample/")
    force: bool = option(False, "regenerate clips that already exist and overwrite a sources.yaml written by us")


# --------------------------------------------------------------------------------- speech
def synthesize(text: str, speaker: Speaker, workdir: Path) -> np.ndarray:
    """espeak-ng Albanian speech as float32 at 16 kHz."""
    if shutil.which("espeak-ng") is None:
        raise ShqipError("espeak-ng not found; install it (apt-get install espeak-ng) to make the sample clips")
    out = workdir / "tts.wav"
    proc = subprocess.run(
        [
            "espeak-ng",
            "-v",
            speaker.voice,
            "-p",
            str(speaker.pitch),
            "-s",
            str(speaker.speed),
            "-w",
            str(out),
            "--",
            text,
        ],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0 or not out.exists():
        raise ShqipError(f"espeak-ng failed: {proc.stderr.strip() or proc.returncode}")
    return read_audio(out, sample_rate=AUDIO_RATE)


def build_audio(spec: ClipSpec, workdir: Path) -> tuple[np.ndarray, list[Cue]]:
    """Sentences with pauses between them; returns samples and caption cues."""
    lead, gap, tail = 0.5, 0.7, 0.6
    if spec.kind == "silent":
        rng = np.random.default_rng(7)
        return (rng.normal(0, 1e-4, int(5.0 * AUDIO_RATE))).astype(np.float32), []
    pieces = [np.zeros(int(lead * AUDIO_RATE), np.float32)]
    cues, t = [], lead
    for i, idx in enumerate(spec.sentences):
        speech = synthesize(SENTENCES[idx], spec.speaker, workdir)
        # trim espeak's own leading/trailing silence so cue times hug the speech
        voiced = np.flatnonzero(np.abs(speech) > 0.01)
        if voiced.size:
            speech = speech[max(0, voiced[0] - 160) : voiced[-1] + 160]
        cues.append(Cue(round(t, 3), round(t + len(speech) / AUDIO_RATE, 3), SENTENCES[idx]))
        pieces.append(speech)
        t += len(speech) / AUDIO_RATE
        pause = gap if i + 1 < len(spec.sentences) else tail
        pieces.append(np.zeros(int(pause * AUDIO_RATE), np.float32))
        t += pause
    audio = np.concatenate(pieces)
    return (0.9 * audio / max(1e-6, np.abs(audio).max())).astype(np.float32), cues


def loudness_envelope(audio: np.ndarray, n_frames: int) -> np.ndarray:
    """Per-video-frame mouth opening in [0, 1] from the RMS of each 40 ms window."""
    hop = AUDIO_RATE // FPS
    padded = np.pad(audio, (0, max(0, n_frames * hop - len(audio))))
    rms = np.sqrt(np.mean(padded[: n_frames * hop].reshape(n_frames, hop) ** 2, axis=1))
    rms = np.convolve(rms, np.array([0.25, 0.5, 0.25]), mode="same")  # jaws do not move in 40 ms steps
    ref = np.percentile(rms, 95) if np.any(rms > 1e-3) else 1.0
    return np.clip(rms / max(ref, 1e-6), 0.0, 1.0) ** 0.8


# --------------------------------------------------------------------------------- picture
def face_photo() -> np.ndarray:
    from skimage import data

    return np.ascontiguousarray(data.astronaut())


_YY, _XX = np.mgrid[0:512, 0:512].astype(np.float32)


def open_mouth(img: np.ndarray, amount: float) -> np.ndarray:
    """Drop the lower lip and chin by ``amount`` × MAX_OPEN pixels; paint the gap as mouth."""
    if amount <= 0.01:
        return img
    a = amount * MAX_OPEN
    u = np.clip(1.0 - ((_XX - MOUTH_X) / MOUTH_HALF_WIDTH) ** 2, 0.0, 1.0)
    across = u**0.6  # lens-shaped profile across the mouth, closed at the corners
    below = _YY - MOUTH_Y
    down = np.where(below < 0, 0.0, np.where(below < 30, 1.0, np.clip(1.0 - (below - 30) / 35.0, 0.0, 1.0)))
    dy = a * across * down
    map_y = (_YY - dy).astype(np.float32)
    gap = (below >= 0) & (below < a * across)
    map_y = np.where(gap, MOUTH_Y + a * across + 0.5, map_y).astype(np.float32)  # placeholder, painted below
    out = cv2.remap(img, _XX, map_y, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    shade = np.clip((below - 0.0) / np.maximum(a * across, 1e-3), 0, 1)[..., None]
    interior = (np.array([70.0, 25.0, 30.0]) * (1 - 0.5 * shade)).astype(np.float32)
    out = np.where(gap[..., None], interior, out.astype(np.float32))
    return out.astype(np.uint8)


def head_pose(t: float, zoom: float) -> np.ndarray:
    """2×3 affine from the photo to the output frame: slow nods, turns and sways."""
    angle = 3.0 * math.sin(2 * math.pi * t / 3.1)
    scale = SIZE / CROP * zoom * (1.0 + 0.03 * math.sin(2 * math.pi * t / 4.3))
    cx = FACE_CENTRE[0] + 6.0 * math.sin(2 * math.pi * t / 2.3)
    cy = FACE_CENTRE[1] + 4.0 * math.sin(2 * math.pi * t / 2.9 + 1.0)
    m = cv2.getRotationMatrix2D((cx, cy), angle, scale)
    m[:, 2] += np.array([SIZE / 2 - cx, SIZE / 2 - cy])
    return m


def render_frame(photo: np.ndarray, spec: ClipSpec, t: float, opening: float) -> np.ndarray:
    speaker = spec.speaker
    face = open_mouth(photo, opening)
    frame = cv2.warpAffine(
        face, head_pose(t, speaker.zoom), (SIZE, SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
    )
    if speaker.mirror:
        frame = frame[:, ::-1]
    frame = np.clip(frame.astype(np.float32) * np.array(speaker.tint, np.float32), 0, 255).astype(np.uint8)
    if spec.kind == "small-face":
        canvas = np.full((480, 640, 3), (92, 110, 128), np.uint8)
        small = cv2.resize(frame, (150, 150), interpolation=cv2.INTER_AREA)
        canvas[150:300, 380:530] = small
        return canvas
    return frame


def no_face_frame(t: float) -> np.ndarray:
    from skimage import data

    img = data.coffee()  # a cup of coffee: texture, no face
    x = int(40 + 30 * math.sin(2 * math.pi * t / 5.0))
    return np.ascontiguousarray(cv2.resize(img[:, x : x + 400], (SIZE, SIZE)))


# --------------------------------------------------------------------------------- files
def make_clip(spec: ClipSpec, out_dir: Path, photo: np.ndarray, workdir: Path) -> Path:
    audio, cues = build_audio(spec, workdir)
    n_frames = int(len(audio) / AUDIO_RATE * FPS)
    envelope = loudness_envelope(audio, n_frames) if cues else np.zeros(n_frames)
    wav = write_wav(workdir / f"{spec.name}.wav", audio)

    def frames():
        for i in range(n_frames):
            t = i / FPS
            yield no_face_frame(t) if spec.kind == "no-face" else render_frame(photo, spec, t, float(envelope[i]))

    video = write_video(out_dir / f"{spec.name}.mp4", frames(), fps=FPS, audio=wav)
    if cues:
        write_vtt(out_dir / f"{spec.name}.sq.vtt", cues)
    return video


def write_translation(clip: Path) -> Path | None:
    """<clip>.en.srt: the English translation of the clip's captions, cue for cue (same times)."""
    captions = clip.with_name(f"{clip.stem}.sq.vtt")
    if not captions.is_file():
        return None
    english = dict(zip(SENTENCES, TRANSLATIONS_EN))
    cues = [Cue(c.start, c.end, english[c.text]) for c in read_vtt(captions) if c.text in english]
    return write_srt(clip.with_name(f"{clip.stem}.en.srt"), cues) if cues else None


def sources_yaml(clip_dir: str) -> str:
    lines = [
        SOURCES_MARKER,
        "# Self-made sample clips (synthetic speech on a public-domain photo), released CC0.",
        "defaults:",
        "  language: sq",
        "  license: CC0 1.0",
        "sources:",
    ]
    for spec in CLIPS:
        lines.append(f"  - path: {clip_dir}/{spec.name}.mp4")
        lines.append(f"    title: shqip-av sample {spec.name}")
        if spec.kind == "no-consent":
            lines.append("    # no consent record: collect must refuse this one")
            continue
        subject = f"shqip-av sample speaker {spec.speaker.name.upper()}"
        lines.append(f"    speaker: {subject}")
        lines.append(
            f"    consent: {{kind: release, subject: {subject}, "
            f'reference: "generated by collect.sample (synthetic voice and public-domain photo)", '
            f"granted: 2026-01-01}}"
        )
    return "\n".join(lines) + "\n"


def write_sample(root: str | Path, force: bool = False) -> list[Path]:
    root = DatasetRoot(root)
    out_dir = root.path("incoming", "sample")
    out_dir.mkdir(parents=True, exist_ok=True)
    photo = face_photo()
    made = []
    with tempfile.TemporaryDirectory(prefix="shqip-av-sample-") as tmp:
        for spec in progress(CLIPS, desc="sample clips", unit="clip"):
            target = out_dir / f"{spec.name}.mp4"
            if target.exists() and not force:
                made.append(target)
                continue
            made.append(make_clip(spec, out_dir, photo, Path(tmp)))
    for clip in made:
        write_translation(clip)
    sources = root.sources
    if sources.exists() and not force and not sources.read_text(encoding="utf-8").startswith(SOURCES_MARKER):
        raise ShqipError(
            f"{sources} exists and was not written by collect.sample; not overwriting it "
            f"(add the sample entries yourself, or use another --root)"
        )
    atomic_write_text(sources, sources_yaml("incoming/sample"))
    return made


def main(argv=None) -> int:
    cfg, args = parse_config(
        SampleConfig,
        argv,
        prog="python -m collect.sample",
        description="Write the embedded sample clips and their sources.yaml.",
    )
    setup_logging(args.verbose, root=cfg.root)
    made = write_sample(cfg.root, cfg.force)
    print(
        f"sample: {len(made)} clips in {DatasetRoot(cfg.root).path('incoming', 'sample')}; "
        f"sources.yaml written; next: python -m collect --root {cfg.root}"
    )
    return 0


if __name__ == "__main__":
    run_cli(main)
