"""Dataset and model cards and Hub publishing (not built yet)."""
