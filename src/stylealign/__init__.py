"""stylealign: distillation data for small math reasoners that the student can actually learn from."""

import stylealign.wiring  # noqa: F401  (fills the engine, reward and model-source registries)
from stylealign.records import Problem, Trace

__version__ = "0.1.0"
__all__ = ["Problem", "Trace", "__version__"]
