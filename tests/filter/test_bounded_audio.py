"""Filter reads audio on demand (shqip_av.media.PcmWav) and runs Silero VAD block by block, so
memory does not grow with the length of a video; the block-wise VAD must give exactly what a
single pass over the whole array gives."""

from __future__ import annotations

import numpy as np

from shqip_av.components.voice_activity import SileroVAD
from shqip_av.media import PcmWav, read_audio, write_wav
from tests.conftest import SHARED, shared_model


def _whole_array_probabilities(vad: SileroVAD, audio: np.ndarray) -> np.ndarray:
    """The reference: every 512-sample window with its 64 samples of context, in one array."""
    w, c = vad.WINDOW, vad.CONTEXT
    n = int(np.ceil(len(audio) / w))
    padded = np.zeros(n * w + c, dtype=np.float32)
    padded[c : c + len(audio)] = audio
    state, sr = np.zeros((2, 1, 128), dtype=np.float32), np.array(16000, dtype=np.int64)
    out = []
    for i in range(n):
        prob, state = vad.session.run(
            None, {"input": padded[i * w : (i + 1) * w + c][None, :], "state": state, "sr": sr}
        )
        out.append(float(prob[0, 0]))
    return np.array(out, dtype=np.float32)


def test_blockwise_vad_on_a_wav_read_on_demand_equals_one_pass(tmp_path):
    shared_model("silero_vad.onnx")
    speech = read_audio(SHARED / "testdata" / "audio" / "latentsync_demo1_audio.wav")
    # longer than two 30 s blocks, with an odd length, so block edges fall mid-speech
    audio = np.concatenate([speech] * int(np.ceil(65 * 16000 / len(speech))))[: 65 * 16000 + 777]
    write_wav(tmp_path / "a.wav", audio)
    wav = PcmWav(tmp_path / "a.wav")
    assert len(wav) == len(audio)
    exact = read_audio(tmp_path / "a.wav")
    assert np.array_equal(wav[1000:5000], exact[1000:5000]) and np.array_equal(wav[:], exact)
    vad = SileroVAD(str(shared_model("silero_vad.onnx")))
    blockwise = vad.probabilities(wav)
    reference = _whole_array_probabilities(vad, exact)
    assert blockwise.shape == reference.shape
    assert np.allclose(blockwise, reference, atol=1e-6)
    assert (reference > 0.5).mean() > 0.3  # it really is speech


# VmHWM is the peak RSS of this process image (ru_maxrss would also count the parent's memory
# at fork time, which Linux carries across exec)
_SPEECH_STAGE = """
import sys
from filter.config import SpeechConfig
from shqip_av.components.voice_activity import silero_vad
from shqip_av.media import open_audio
audio = open_audio(sys.argv[1])
regions = silero_vad(sys.argv[2]).speech_regions(audio, SpeechConfig())
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(len(regions), hwm)
"""


def test_peak_memory_of_the_speech_stage_does_not_grow_with_the_length_of_the_audio(tmp_path):
    import subprocess
    import sys

    from tests.conftest import REPO

    model = str(shared_model("silero_vad.onnx"))
    speech = read_audio(SHARED / "testdata" / "audio" / "latentsync_demo1_audio.wav")
    peaks = {}
    for minutes in (1, 12):  # 12 minutes of float32 samples would be 46 MB read whole, twice that padded
        audio = np.tile(speech, int(np.ceil(minutes * 60 * 16000 / len(speech))))[: minutes * 60 * 16000]
        write_wav(tmp_path / f"{minutes}.wav", audio)
        del audio
        out = subprocess.run(
            [sys.executable, "-c", _SPEECH_STAGE, str(tmp_path / f"{minutes}.wav"), model],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
            timeout=600,
        )
        regions, kib = map(int, out.stdout.split())
        assert regions > minutes  # it found the speech
        peaks[minutes] = kib / 1024
    assert peaks[12] - peaks[1] < 20, peaks  # MiB; reading it whole would add about 90
