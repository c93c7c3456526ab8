"""Stage 3b: lip-sync models.

- ``accelerate launch -m train.lipsync.expert``: the sync expert (filter.expert) trained on the
  shards: aligned vs. shifted and foreign audio windows (expert.py, data.py).
"""
