"""Stage 3b: lip-sync models.

- ``accelerate launch -m train.lipsync.expert``: the sync expert (shqip_av.components.sync_expert) trained on the
  shards: aligned vs. shifted and foreign audio windows (expert.py, data.py).
- ``accelerate launch -m train.lipsync``: the lip-sync generator (generator.py) trained on the
  shards (faces.py, references.py, train.py); inference over a face track (inference.py), speaker
  fine-tuning (finetune.py), evaluation of both models (evaluate.py), a re-voiced sample (revoice.py).
"""
