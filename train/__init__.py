"""Stage 3, train: ``train.asr`` (Whisper fine-tuned with LoRA for Albanian) and ``train.lipsync``
(the sync expert and the lip-sync generator trained on the shards). The networks themselves are
components of the foundation (``shqip_av.components``); this stage decides what they learn from.
See DESIGN.md §7."""
