"""Stage 4, export (not built yet): the dubbing pipeline ASR → translate → TTS → lip-sync → render."""
