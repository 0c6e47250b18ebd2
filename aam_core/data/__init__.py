"""Data pipeline: rarefaction, tokens, ASV selection, UniFrac, datasets and batches."""
