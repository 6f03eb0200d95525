"""The pipeline's stages, one `stage(ctx) -> summary` per module, in the order `pipeline.py` runs them."""
