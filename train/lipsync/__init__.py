"""Stage 3b: lip-sync models (the networks are in ``shqip_av.components``).

- ``accelerate launch -m train.lipsync.expert``: the sync expert (``shqip_av.components.sync_expert``)
  trained on the shards: aligned vs. shifted and foreign audio windows (expert.py, expert_data.py).
- ``accelerate launch -m train.lipsync``: the lip-sync generator (``shqip_av.components.lipsync_generator``)
  trained on the shards (generator_data.py, references.py, stream.py, train.py); inference over a face
  track (inference.py), speaker fine-tuning (finetune.py), evaluation of both models (evaluate.py),
  a re-voiced sample (revoice.py). The run-folder mechanics both trainers share are in runs.py.
"""
