"""Media I/O on ffmpeg and ffprobe: the one place the project touches video and audio files.

Commands are argument lists (never a shell string), so file names with spaces, quotes or
leading dashes are safe. A failing command raises ``MediaError`` carrying ffmpeg's own message.
Frames are decoded upright: ffmpeg applies rotation metadata while decoding, and the sizes
reported by ``probe`` are the displayed (upright) ones.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import wave
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from shqip_av import ShqipError
from shqip_av.files import atomic_output

AUDIO_RATE = 16_000


class MediaError(ShqipError):
    """A media file could not be probed, decoded or written; the message is ffmpeg's."""


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise MediaError(f"{name} not found on PATH; install it (Debian/Ubuntu: apt-get install ffmpeg)")
    return path


def _last_lines(text: str, n: int = 3) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return " | ".join(lines[-n:]) or "no message"


def media_arg(path: str | Path) -> str:
    """A file name as ffmpeg/ffprobe read it: a relative name starting with '-' would be taken for
    an option, so it gets './' in front; everything else is passed as it is."""
    text = str(path)
    return f"./{text}" if text.startswith("-") else text


def run_ffmpeg(
    args: list[str], what: str, *, input: bytes | None = None, timeout: float | None = None
) -> subprocess.CompletedProcess:
    """Run ffmpeg with ``args`` (after the global options); raise MediaError with its message."""
    cmd = [tool("ffmpeg"), "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args]
    if input is not None:
        cmd.remove("-nostdin")
    try:
        proc = subprocess.run(cmd, input=input, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise MediaError(f"{what}: ffmpeg timed out after {timeout:.0f} s") from None
    if proc.returncode != 0:
        raise MediaError(f"{what}: {_last_lines(proc.stderr.decode('utf-8', 'replace'))}")
    return proc


@dataclass
class MediaInfo:
    path: str
    duration: float  # seconds (container duration, else longest stream)
    has_video: bool
    has_audio: bool
    width: int = 0  # displayed size, rotation applied
    height: int = 0
    coded_width: int = 0
    coded_height: int = 0
    rotation: int = 0  # clockwise degrees the stored frames must be turned to be upright
    fps: float = 0.0  # average frame rate (frames / duration)
    nominal_fps: float = 0.0  # the stream's r_frame_rate (the "base" rate)
    num_frames: int = 0
    variable_frame_rate: bool = False
    vcodec: str | None = None
    acodec: str | None = None
    audio_rate: int = 0
    audio_channels: int = 0
    format_name: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def _rate(text: str | None) -> float:
    try:
        value = float(Fraction(text)) if text and text != "0/0" else 0.0
    except (ValueError, ZeroDivisionError):
        return 0.0
    return value if math.isfinite(value) else 0.0


def _rotation(stream: dict) -> int:
    """Clockwise rotation for display, from the display matrix (newer ffmpeg) or the rotate tag."""
    for side in stream.get("side_data_list") or []:
        if "rotation" in side:
            # the display matrix angle is counter-clockwise; -90 means "turn 90° clockwise"
            return int(round(-float(side["rotation"]))) % 360
    tag = (stream.get("tags") or {}).get("rotate")
    if tag is not None:
        try:
            return int(tag) % 360
        except ValueError:
            pass
    return 0


def probe(path: str | Path, *, timeout: float = 120) -> MediaInfo:
    """Streams, size, rotation and frame rate of a media file.

    Frames are counted by demuxing (``-count_packets``), so the average rate is exact even when
    the container's header is not; a file whose nominal and average rates differ by more than
    2 % is reported as variable frame rate.
    """
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"{path}: no such file")
    cmd = [
        tool("ffprobe"),
        "-v",
        "error",
        "-print_format",
        "json",
        "-show_format",
        "-show_streams",
        "-count_packets",
        media_arg(path),
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise MediaError(f"{path}: ffprobe timed out") from None
    if proc.returncode != 0:
        raise MediaError(f"{path}: {_last_lines(proc.stderr.decode('utf-8', 'replace'))}")
    data = json.loads(proc.stdout or b"{}")
    streams = data.get("streams") or []
    fmt = data.get("format") or {}
    video = next(
        (s for s in streams if s.get("codec_type") == "video" and not (s.get("disposition") or {}).get("attached_pic")),
        None,
    )
    audio = next((s for s in streams if s.get("codec_type") == "audio"), None)
    if video is None and audio is None:
        raise MediaError(f"{path}: no audio or video stream (format {fmt.get('format_name', '?')})")

    durations = [_rate(fmt.get("duration"))] + [_rate(s.get("duration")) for s in streams]
    info = MediaInfo(
        path=str(path),
        duration=max(durations),
        has_video=video is not None,
        has_audio=audio is not None,
        format_name=fmt.get("format_name", ""),
    )
    if video is not None:
        info.vcodec = video.get("codec_name")
        info.coded_width, info.coded_height = int(video.get("width") or 0), int(video.get("height") or 0)
        info.rotation = _rotation(video)
        if info.rotation in (90, 270):
            info.width, info.height = info.coded_height, info.coded_width
        else:
            info.width, info.height = info.coded_width, info.coded_height
        info.nominal_fps = _rate(video.get("r_frame_rate"))
        info.num_frames = int(video.get("nb_read_packets") or video.get("nb_frames") or 0)
        vdur = _rate(video.get("duration")) or info.duration
        avg = _rate(video.get("avg_frame_rate"))
        if info.num_frames and vdur:
            avg = info.num_frames / vdur
        info.fps = round(avg or info.nominal_fps, 3)
        if info.nominal_fps and info.fps:
            info.variable_frame_rate = abs(info.nominal_fps - info.fps) / info.nominal_fps > 0.02
    if audio is not None:
        info.acodec = audio.get("codec_name")
        info.audio_rate = int(audio.get("sample_rate") or 0)
        info.audio_channels = int(audio.get("channels") or 0)
    return info


def check_decodes(path: str | Path, *, tail_seconds: float = 3.0) -> None:
    """Decode the end of a file; a truncated or corrupt download fails here rather than later.

    Decoding only the tail keeps this cheap on hour-long videos while still catching the
    common failure (a download cut short leaves the last packets missing or broken).
    """
    proc = run_ffmpeg(
        ["-xerror", "-sseof", f"-{tail_seconds}", "-i", media_arg(path), "-f", "null", "-"], f"{path}: does not decode"
    )
    message = proc.stderr.decode("utf-8", "replace").strip()
    if message:
        raise MediaError(f"{path}: does not decode: {_last_lines(message)}")


def extract_audio(src: str | Path, dst: str | Path, *, sample_rate: int = AUDIO_RATE) -> Path:
    """First audio stream → mono PCM s16 WAV at ``sample_rate`` (atomic)."""
    with atomic_output(dst, suffix=".wav") as tmp:
        run_ffmpeg(
            [
                "-i",
                media_arg(src),
                "-map",
                "0:a:0",
                "-vn",
                "-ac",
                "1",
                "-ar",
                str(sample_rate),
                "-c:a",
                "pcm_s16le",
                "-f",
                "wav",
                str(tmp),
            ],
            f"{src}: audio extraction failed",
        )
    return Path(dst)


def transcode_upright(src: str | Path, dst: str | Path, *, crf: int = 18) -> Path:
    """Re-encode with rotation applied to the pixels (H.264 + AAC), so every later reader sees
    an upright picture whatever it does with rotation metadata."""
    with atomic_output(dst, suffix=".mp4") as tmp:
        run_ffmpeg(
            [
                "-i",
                media_arg(src),
                "-map",
                "0:v:0",
                "-map",
                "0:a:0?",
                "-c:v",
                "libx264",
                "-preset",
                "fast",
                "-crf",
                str(crf),
                "-pix_fmt",
                "yuv420p",
                "-c:a",
                "aac",
                "-b:a",
                "160k",
                "-metadata:s:v:0",
                "rotate=0",
                "-movflags",
                "+faststart",
                "-f",
                "mp4",
                str(tmp),
            ],
            f"{src}: re-encoding upright failed",
        )
    return Path(dst)


class PcmWav:
    """A 16-bit PCM WAV read on demand: ``len()`` in samples and ``wav[a:b]`` → mono float32, so
    code written for an in-memory array works on hours of audio with bounded memory."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            with wave.open(str(self.path), "rb") as w:
                self.sample_rate, self.channels = w.getframerate(), w.getnchannels()
                width, self.frames = w.getsampwidth(), w.getnframes()
        except (wave.Error, EOFError, OSError) as e:
            raise MediaError(f"{self.path}: not a readable PCM WAV: {e}") from None
        if width != 2:
            raise MediaError(f"{self.path}: {8 * width}-bit samples, expected 16-bit PCM")

    def __len__(self) -> int:
        return self.frames

    def __getitem__(self, index: slice) -> np.ndarray:
        if not isinstance(index, slice) or index.step not in (None, 1):
            raise TypeError("PcmWav supports contiguous slices only")
        start, stop, _ = index.indices(self.frames)
        if stop <= start:
            return np.zeros(0, dtype=np.float32)
        with wave.open(str(self.path), "rb") as w:
            w.setpos(start)
            pcm = np.frombuffer(w.readframes(stop - start), dtype="<i2")
        if self.channels > 1:
            pcm = pcm.reshape(-1, self.channels).mean(axis=1)
        return pcm.astype(np.float32) / 32768.0


def open_audio(path: str | Path, fallback: str | Path | None = None) -> PcmWav:
    """``path`` as a 16 kHz mono PCM WAV, or, when it is missing or in another format, the audio
    of ``fallback`` (or of ``path``) converted into ``path``'s place first."""
    path = Path(path)
    try:
        wav = PcmWav(path)
        if (wav.sample_rate, wav.channels) == (AUDIO_RATE, 1):
            return wav
    except MediaError:
        if fallback is None:
            raise
    extract_audio(fallback or path, path)
    return PcmWav(path)


def read_audio(
    path: str | Path, *, sample_rate: int = AUDIO_RATE, start: float | None = None, duration: float | None = None
) -> np.ndarray:
    """Mono float32 samples in [-1, 1] at ``sample_rate``."""
    args = []
    if start is not None:
        args += ["-ss", f"{start:.3f}"]
    args += ["-i", media_arg(path)]
    if duration is not None:
        args += ["-t", f"{duration:.3f}"]
    args += ["-map", "0:a:0", "-ac", "1", "-ar", str(sample_rate), "-f", "s16le", "-"]
    proc = run_ffmpeg(args, f"{path}: audio decoding failed")
    return np.frombuffer(proc.stdout, dtype="<i2").astype(np.float32) / 32768.0


@dataclass(frozen=True)
class WavHeader:
    sample_rate: int
    channels: int
    sample_width: int  # bytes per sample
    frames: int

    @property
    def seconds(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0


def wav_header(data: bytes) -> WavHeader:
    """The format of an in-memory WAV (as stored in shards) without decoding its samples."""
    import io

    try:
        with wave.open(io.BytesIO(data), "rb") as w:
            return WavHeader(w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getnframes())
    except (wave.Error, EOFError) as e:
        raise MediaError(f"not a PCM WAV: {e}") from None


def decode_wav(data: bytes) -> tuple[np.ndarray, int]:
    """Mono float32 samples in [-1, 1] and the rate of an in-memory 16-bit PCM WAV."""
    import io

    header = wav_header(data)
    if header.sample_width != 2:
        raise MediaError(f"WAV has {8 * header.sample_width}-bit samples, expected 16-bit PCM")
    with wave.open(io.BytesIO(data), "rb") as w:
        pcm = np.frombuffer(w.readframes(header.frames), dtype="<i2")
    samples = pcm.reshape(-1, header.channels).mean(axis=1) if header.channels > 1 else pcm
    return samples.astype(np.float32) / 32768.0, header.sample_rate


def extract_audio_native(src: str | Path, dst: str | Path) -> Path:
    """First audio stream → PCM s16 WAV at its own rate and channels (atomic): what a soundtrack
    that must stay as it was (outside the dub's new speech) is read from."""
    with atomic_output(dst, suffix=".wav") as tmp:
        run_ffmpeg(
            ["-i", media_arg(src), "-map", "0:a:0", "-vn", "-c:a", "pcm_s16le", "-f", "wav", str(tmp)],
            f"{src}: audio extraction failed",
        )
    return Path(dst)


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """(samples (N, channels) float32 in [-1, 1], sample rate) of a PCM s16 WAV, channels kept."""
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2:
            raise MediaError(f"{path}: {8 * w.getsampwidth()}-bit samples, expected 16-bit PCM")
        channels, rate = w.getnchannels(), w.getframerate()
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    return pcm.reshape(-1, channels).astype(np.float32) / 32768.0, rate


def write_wav(path: str | Path, samples: np.ndarray, *, sample_rate: int = AUDIO_RATE) -> Path:
    """PCM s16 WAV from float samples in [-1, 1] (atomic): mono from (N,), channels from (N, C)."""
    samples = np.asarray(samples, dtype=np.float32)
    channels = samples.shape[1] if samples.ndim == 2 else 1
    pcm = (np.clip(samples, -1.0, 1.0) * 32767.0).round().astype("<i2")
    with atomic_output(path, suffix=".wav") as tmp:
        with wave.open(str(tmp), "wb") as w:
            w.setnchannels(channels)
            w.setsampwidth(2)
            w.setframerate(sample_rate)
            w.writeframes(pcm.tobytes())
    return Path(path)


def iter_frames(
    path: str | Path,
    *,
    fps: float | None = None,
    size: tuple[int, int] | None = None,
    info: MediaInfo | None = None,
    region: tuple[int, int, int, int] | None = None,
) -> Iterator[np.ndarray]:
    """Decode upright RGB frames (H, W, 3) uint8, optionally resampled to a constant ``fps``
    (frames duplicated or dropped by timestamp, which is how a variable rate becomes constant),
    cut to ``region`` = (x, y, w, h) of the upright frame, and scaled to ``size`` = (width, height)."""
    info = info or probe(path)
    if not info.has_video:
        raise MediaError(f"{path}: no video stream")
    filters = []
    if fps:
        filters.append(f"fps={fps}")
    width, height = info.width, info.height
    if region:
        x, y, width, height = region
        filters.append(f"crop={width}:{height}:{x}:{y}:exact=1")
    if size:
        width, height = size
        filters.append(f"scale={width}:{height}:flags=bicubic")
    args = [tool("ffmpeg"), "-nostdin", "-hide_banner", "-loglevel", "error", "-i", media_arg(path), "-map", "0:v:0"]
    if filters:
        args += ["-vf", ",".join(filters)]
    args += ["-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    frame_bytes = width * height * 3
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        while True:
            buf = proc.stdout.read(frame_bytes)
            if len(buf) < frame_bytes:
                break
            yield np.frombuffer(buf, dtype=np.uint8).reshape(height, width, 3)
    finally:
        proc.stdout.close()
        err = proc.stderr.read().decode("utf-8", "replace")
        proc.stderr.close()
        code = proc.wait()
    if code != 0:
        raise MediaError(f"{path}: frame decoding failed: {_last_lines(err)}")


class BackgroundVideoWriter:
    """``write_video`` on a thread, fed one frame at a time: the encoder works while the caller
    decodes and crops the next frames, instead of after them. ``finish`` waits and returns the
    file; ``abort`` stops and leaves nothing. The queue is bounded, so a slow encoder holds the
    caller back rather than memory growing."""

    _END = object()

    def __init__(
        self,
        path: str | Path,
        *,
        fps: float,
        crf: int = 18,
        extra_video_args: list[str] | None = None,
        queue_frames: int = 32,
    ):
        import queue
        import threading

        self.path = Path(path)
        self._queue: queue.Queue = queue.Queue(maxsize=queue_frames)
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._encode, args=(fps, crf, extra_video_args), daemon=True, name=f"encode {self.path.name}"
        )
        self._thread.start()

    def _frames(self):
        while (frame := self._queue.get()) is not self._END:
            yield frame

    def _encode(self, fps, crf, extra) -> None:
        try:
            write_video(self.path, self._frames(), fps=fps, crf=crf, extra_video_args=extra)
        except BaseException as e:  # noqa: BLE001 - handed to the caller by finish()
            self._error = e
            while self._queue.get() is not self._END:  # keep taking frames: the caller never blocks
                pass

    def write(self, frame: np.ndarray) -> None:
        self._queue.put(frame)

    def finish(self) -> Path:
        self._queue.put(self._END)
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self.path

    def abort(self) -> None:
        try:
            self.finish()
        except Exception:  # noqa: BLE001 - nothing is wanted from an aborted file
            pass
        self.path.unlink(missing_ok=True)


def write_video(
    path: str | Path,
    frames: Iterable[np.ndarray],
    *,
    fps: float,
    audio: str | Path | None = None,
    crf: int = 18,
    extra_video_args: list[str] | None = None,
) -> Path:
    """Encode RGB frames (H, W, 3) uint8 to H.264 yuv420p MP4, with an optional audio file muxed
    in as AAC (atomic). The first frame fixes the size."""
    frames = iter(frames)
    try:
        first = next(frames)
    except StopIteration:
        raise MediaError(f"{path}: no frames to write") from None
    height, width = first.shape[:2]
    with atomic_output(path, suffix=".mp4") as tmp:
        cmd = [
            tool("ffmpeg"),
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "-s",
            f"{width}x{height}",
            "-r",
            str(fps),
            "-i",
            "-",
        ]
        if audio is not None:
            cmd += [
                "-i",
                media_arg(audio),
                "-map",
                "0:v:0",
                "-map",
                "1:a:0",
                "-c:a",
                "aac",
                "-b:a",
                "128k",
                "-shortest",
            ]
        cmd += [
            "-c:v",
            "libx264",
            "-preset",
            "fast",
            "-crf",
            str(crf),
            "-pix_fmt",
            "yuv420p",
            *(extra_video_args or []),
            "-movflags",
            "+faststart",
            "-f",
            "mp4",
            str(tmp),
        ]
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            proc.stdin.write(np.ascontiguousarray(first, dtype=np.uint8).tobytes())
            for frame in frames:
                if frame.shape[:2] != (height, width):
                    raise MediaError(
                        f"{path}: frame size changed from {width}x{height} to {frame.shape[1]}x{frame.shape[0]}"
                    )
                proc.stdin.write(np.ascontiguousarray(frame, dtype=np.uint8).tobytes())
            proc.stdin.close()
        except BrokenPipeError:
            pass  # ffmpeg stopped reading; its own message below says why
        except BaseException:
            proc.kill()  # never leave an encoder running behind a failed write
            proc.wait()
            raise
        err = proc.stderr.read().decode("utf-8", "replace")
        if proc.wait() != 0:
            raise MediaError(f"{path}: encoding failed: {_last_lines(err)}")
    return Path(path)


def frame_at(path: str | Path, seconds: float, *, timeout: float = 60) -> np.ndarray:
    """One upright RGB frame (H, W, 3) uint8 at ``seconds`` (ffmpeg decodes up to it exactly):
    the pictures of the review page and the dub's side-by-side strip."""
    proc = run_ffmpeg(
        ["-ss", f"{max(seconds, 0.0):.3f}", "-i", media_arg(path), "-frames:v", "1", "-f", "rawvideo",
         "-pix_fmt", "rgb24", "-"],
        f"{Path(path).name}: frame at {seconds:.2f} s",
        timeout=timeout,
    )  # fmt: skip
    info = probe(path)
    width, height = info.width, info.height  # displayed: rotation applied
    if len(proc.stdout) < width * height * 3:
        raise MediaError(f"{Path(path).name}: no frame at {seconds:.2f} s")
    return np.frombuffer(proc.stdout[: width * height * 3], np.uint8).reshape(height, width, 3)
