"""Stage 3, train (not built yet): train.asr (Whisper + LoRA) and train.lipsync. See DESIGN.md §7."""
