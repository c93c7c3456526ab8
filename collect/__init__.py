"""Stage 1, collect: sources.yaml (with consent) → raw/ (videos, 16 kHz audio, captions, info).

``python -m collect`` runs it; ``python -m collect.takedown`` removes withdrawn content;
``python -m collect.sample`` writes the embedded demo set. Imports only ``shqip_av``.
"""
