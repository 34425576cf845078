"""Timers and memory figures that stay honest on a GPU.

cupy and torch launch GPU kernels asynchronously: a timer read right after
`nlp.pipe` can stop before the queued work has run. `synchronize()` waits for
it. Host RSS says nothing about GPU memory, so the GPU's peak is read from
torch's allocator (which thinc's cupy ops also use under
`gpu_allocator = "pytorch"`).
"""
from typing import Optional


def _cuda_in_use() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available() and torch.cuda.is_initialized()


def synchronize() -> None:
    """Wait until all queued GPU work is done, torch's and cupy's (a pipeline
    without torch layers runs on cupy alone); no-op on CPU."""
    import sys

    if _cuda_in_use():
        import torch

        torch.cuda.synchronize()
    elif "cupy" in sys.modules:
        from thinc.api import CupyOps, get_current_ops

        if isinstance(get_current_ops(), CupyOps):
            sys.modules["cupy"].cuda.Device().synchronize()


def reset_gpu_peak() -> None:
    """Start a new peak for `gpu_peak_mb` (no-op on CPU)."""
    if _cuda_in_use():
        import torch

        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def gpu_peak_mb() -> Optional[float]:
    """Peak GPU memory held by torch's allocator since the last reset, in MB;
    None on CPU."""
    if not _cuda_in_use():
        return None
    import torch

    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() / 2**20


def gpu_allocated_mb() -> Optional[float]:
    """GPU memory held by torch's allocator now, in MB; None on CPU."""
    if not _cuda_in_use():
        return None
    import torch

    torch.cuda.synchronize()
    return torch.cuda.memory_allocated() / 2**20


def device_name() -> str:
    """'cpu', or the name of the GPU in use."""
    if not _cuda_in_use():
        return "cpu"
    import torch

    return torch.cuda.get_device_name()
