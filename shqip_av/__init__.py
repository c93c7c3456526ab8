"""shqip-av foundation: what every stage shares.

- ``config``   dataclass configs filled from YAML and the command line, saved next to outputs
- ``files``    the dataset root, safe paths inside it, atomic writes, checksums
- ``manifest`` JSONL manifests: lazy reading, crash-safe appends, atomic rewrites
- ``records``  typed records of the raw manifest and of rejections
- ``media``    ffmpeg/ffprobe: probing, audio extraction, frame decoding and encoding
- ``models``   resolution (and checked download) of model files
- ``takedown`` the withdrawn-content list every stage honours
- ``log``      logging with token redaction, progress bars
- ``doctor``   ``python -m shqip_av.doctor`` environment check
- ``components`` what a model folder is (kind check, Hub ids, strict loading)

This package imports no stage (DESIGN.md §1).
"""

__version__ = "0.1.0"


class ShqipError(Exception):
    """An error the user can fix; command-line entry points print it as one line."""
