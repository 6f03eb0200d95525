"""The pipeline's stages, one `stage(ctx) -> summary` per module, in the order `run/pipeline.py` runs them."""
