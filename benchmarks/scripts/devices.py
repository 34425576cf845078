"""Timers and memory figures that stay honest on a GPU.

cupy and torch launch GPU kernels asynchronously: a timer read right after
`nlp.pipe` can stop before the queued work has run. `synchronize()` waits for
it. Host RSS says nothing about GPU memory, so the GPU's figures are read from
torch's allocator (which thinc's cupy ops also use under
`gpu_allocator = "pytorch"`).
"""
import sys
from types import ModuleType
from typing import Optional


def _torch_on_gpu() -> Optional[ModuleType]:
    """torch, when it has put work on a CUDA GPU in this process; else None."""
    try:
        import torch
    except ImportError:
        return None
    return torch if torch.cuda.is_available() and torch.cuda.is_initialized() else None


def synchronize() -> None:
    """Wait until all queued GPU work is done, torch's and cupy's (a pipeline
    without torch layers runs on cupy alone); no-op on CPU."""
    torch = _torch_on_gpu()
    if torch is not None:
        torch.cuda.synchronize()
    elif "cupy" in sys.modules:
        from thinc.api import CupyOps, get_current_ops

        if isinstance(get_current_ops(), CupyOps):
            sys.modules["cupy"].cuda.Device().synchronize()


def reset_gpu_peak() -> None:
    """Start a new peak for `gpu_peak_mb` (no-op on CPU)."""
    torch = _torch_on_gpu()
    if torch is not None:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def gpu_peak_mb() -> Optional[float]:
    """Peak GPU memory held by torch's allocator since the last reset, in MB;
    None on CPU."""
    torch = _torch_on_gpu()
    if torch is None:
        return None
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() / 2**20


def gpu_allocated_mb() -> Optional[float]:
    """GPU memory held by torch's allocator now, in MB; None on CPU."""
    torch = _torch_on_gpu()
    if torch is None:
        return None
    torch.cuda.synchronize()
    return torch.cuda.memory_allocated() / 2**20


def device_name() -> str:
    """'cpu', or the name of the GPU in use."""
    torch = _torch_on_gpu()
    return "cpu" if torch is None else torch.cuda.get_device_name()
