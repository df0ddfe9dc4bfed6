"""Which exceptions end an actor (device trouble) and which become a row's error."""

from __future__ import annotations

# Substrings of RuntimeError messages that mean the device itself is in trouble, not the row.
_FATAL_MARKERS = ("CUDA", "cuDNN", "CUBLAS", "device-side assert", "NCCL", "out of memory", "HIP error")


def is_fatal(exc: BaseException) -> bool:
    """Errors that must end the actor (Ray restarts it) rather than become an error row."""
    if isinstance(exc, MemoryError) or type(exc).__name__ in ("OutOfMemoryError", "AcceleratorError"):
        return True
    return isinstance(exc, RuntimeError) and any(m in str(exc) for m in _FATAL_MARKERS)


def is_oom(exc: BaseException) -> bool:
    return type(exc).__name__ == "OutOfMemoryError" or (isinstance(exc, RuntimeError) and "out of memory" in str(exc))


def free_device_memory() -> None:
    import torch  # ~1.5 s: the prepare and finish stages import this module and never need it

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class StageError(ValueError):
    """A row problem with the stage name that errors/ records (validate, voice, segment...)."""

    def __init__(self, stage: str, message: str):
        super().__init__(message)
        self.stage = stage
