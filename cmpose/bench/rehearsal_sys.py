"""What the training rehearsal records about the machine: the device's name, the CPU model, the
load average, and peak resident memory of the process and its loader workers.

Memory is read from Linux's ``/proc`` (no psutil needed):

- ``main_peak_mb``: this process's ``VmHWM`` (the kernel's own peak of resident memory). Writing
  ``5`` to ``/proc/self/clear_refs`` resets it (Linux >= 4.0, proc(5)), so each stage's peak is
  its own; where that is refused the peak is the process's since it started
  (``main_peak_reset`` false). Without ``/proc``: ``ru_maxrss`` (getrusage, never reset).
- ``with_workers_peak_mb``: the largest sum of ``VmRSS`` over this process and every process
  below it (loader workers, and the forkserver that starts them), sampled after each timed step:
  a peak between two samples is missed, and a page shared by two processes counts twice.
"""

from __future__ import annotations

import os
import platform
import resource
from pathlib import Path
from typing import Any

import torch

PROC = Path("/proc")


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (``platform.processor()`` elsewhere)."""
    try:
        for line in (PROC / "cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_model() if device.type == "cpu" else device.type


def load_average() -> list[float] | None:
    """1, 5 and 15-minute load averages (None where the OS has none)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _status_kb(pid: int | str, key: str) -> int | None:
    """A ``kB`` field of /proc/PID/status (None if the process is gone or has no such field)."""
    try:
        for line in (PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (children of any of its threads, recursively)."""
    out: list[int] = []
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            tasks = list((PROC / str(p) / "task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                kids = [int(x) for x in (task / "children").read_text().split()]
            except (OSError, ValueError):
                continue
            out += kids
            todo += kids
    return out


def _reset_peak() -> bool:
    try:
        (PROC / "self" / "clear_refs").write_text("5")
        return True
    except OSError:
        return False


class MemoryProbe:
    """Peak resident memory of one stage (module docstring), and the GPU's peak allocation."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.reset = _reset_peak()
        self.with_workers_kb = 0
        self.max_processes = 1
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)

    def sample(self) -> None:
        pid = os.getpid()
        procs = [pid, *descendants(pid)]
        total = sum(_status_kb(p, "VmRSS") or 0 for p in procs)
        self.with_workers_kb = max(self.with_workers_kb, total)
        self.max_processes = max(self.max_processes, len(procs))

    def report(self) -> dict[str, Any]:
        self.sample()
        hwm = _status_kb("self", "VmHWM")
        main_kb = hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        out: dict[str, Any] = {
            "main_peak_mb": round(main_kb / 1024, 1),
            "main_peak_reset": bool(self.reset and hwm is not None),
            "with_workers_peak_mb": round(self.with_workers_kb / 1024, 1) if self.with_workers_kb else None,
            "processes_max": self.max_processes,
        }
        if self.device.type == "cuda":
            out["gpu_max_allocated_mb"] = round(torch.cuda.max_memory_allocated(self.device) / 2**20, 1)
            out["gpu_max_reserved_mb"] = round(torch.cuda.max_memory_reserved(self.device) / 2**20, 1)
        return out
