"""Which process of a data-parallel launch this is (`torchrun`, `accelerate launch`), read from the launcher's env.

Both launchers start one process per device and set `RANK` and `WORLD_SIZE`
before any of our code runs, so the answer is known without touching
`torch.distributed`. Only the train stage runs under such a launch: every
process trains its share of each batch, and process 0 alone writes the run
directory (see `training.fine_tune`). Without a launcher this is process 0 of 1.
"""

from __future__ import annotations

import os


def world_size() -> int:
    """How many processes the launcher started (1 without one)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """True for the one process that writes (rank 0, or the only process)."""
    return int(os.environ.get("RANK", "0")) == 0


def shutdown() -> None:
    """Leave the process group the trainer joined, so the launcher sees a clean exit."""
    if world_size() > 1:
        import torch.distributed

        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
