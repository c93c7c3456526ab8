"""Stage 4, export: the dubbing bundle (``export.bundle``), the dub itself (``export.dub``:
recognize → translate → speak → fit → lip-sync → paste back → render, disclosed as synthetic),
disclosure and C2PA (``export.disclose``), and the generator as ONNX (``export.onnx``). See
DESIGN.md §8."""
