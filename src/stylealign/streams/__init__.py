"""The distillation streams (one module each, found through `registry.py`) and the student sampling they start from."""

from stylealign.streams.build import streams_stage
from stylealign.streams.listing import stream_traces
from stylealign.streams.sample import sample_stage

__all__ = ["sample_stage", "stream_traces", "streams_stage"]
