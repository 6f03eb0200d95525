"""The distillation streams: one module each, declared by its `SPEC` and found through `registry.py`.

The `streams` stage that builds them is `stylealign.stages.streams`; what a
stream needs from the run is `context.StreamContext`.
"""
