"""Stage 2, filter (not built yet): raw/ → clips/ (faces, speech segments, quality filters,
canonical crops), then filter.shard packs clips/ into WebDataset shards. See DESIGN.md §3–4."""
