"""Stage 2, filter: raw/ → clips/ (faces, speech segments, quality filters, canonical crops),
then ``python -m filter.shard`` packs clips/ into speaker-disjoint WebDataset shards.
See DESIGN.md §3–4."""
