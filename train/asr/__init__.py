"""Stage 3a: Whisper fine-tuning for Albanian (transformers + peft, launched with accelerate).

- ``accelerate launch -m train.asr`` / ``python -m train.asr``: fine-tune (train.py, config.py)
- ``python -m train.asr.evaluate``: score any Whisper on the shards (evaluate.py, scoring.py)
- ``python -m train.asr.tiny``: a tiny random Whisper for offline runs and tests (tiny.py)
- normalize.py and metric/: the Albanian text normalizer and the WER/CER `evaluate` module
"""
