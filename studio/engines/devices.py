"""Live memory of the machine's devices for the system panel: each GPU (this process vs. others) and RAM."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any, Optional



@dataclass(frozen=True)
class DeviceStat:
    """One device's memory, in bytes."""

    name: str  # "cuda:0 · NVIDIA H200" or "cpu"
    total: int
    used: int  # by everything
    ours: int  # by this process


def _imported_torch() -> Any:
    """torch if some part of the studio has finished importing it, else None (never imports it here: a
    module another thread is still importing is incomplete, and reading it then raises)."""
    torch = sys.modules.get("torch")
    if torch is None or getattr(getattr(torch, "__spec__", None), "_initializing", False):
        return None
    return torch if hasattr(torch, "cuda") else None


def device_stats() -> list[DeviceStat]:
    """Every visible GPU (only if torch is already loaded: the panel never pulls CUDA in), then RAM."""
    import psutil

    out = []
    torch = _imported_torch()
    if torch is not None and torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            free, total = torch.cuda.mem_get_info(i)
            out.append(DeviceStat(f"cuda:{i} · {torch.cuda.get_device_name(i)}", total, total - free,
                                  torch.cuda.memory_reserved(i)))
    vm = psutil.virtual_memory()
    out.append(DeviceStat("cpu (RAM)", vm.total, vm.total - vm.available, psutil.Process(os.getpid()).memory_info().rss))
    return out


def gpu_names() -> Optional[list[str]]:
    """The name of each visible CUDA GPU; None when torch is not loaded (a remote engine: importing it
    here would take seconds and tell nothing about the model's machine)."""
    torch = _imported_torch()
    if torch is None:
        return None
    if not torch.cuda.is_available():
        return []
    return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
