"""What every benchmark JSON carries: machine, versions, date, and the timing conventions.

Conventions (both benchmarks):

- **cold**: the first call of that path in the process after its models are on the device
  (first CUDA kernels, lazy module loading, allocator growth, cuDNN heuristics). Building or
  loading the weights is not in it; it is reported on its own where measured.
- **warm**: the median of the following ``repeat`` calls (all of them are listed too).
- Every CUDA timing is bracketed by ``torch.cuda.synchronize``.
- **memory**: ``torch.cuda.max_memory_allocated`` since the last reset (peak tensor memory,
  weights included) where CUDA runs; on a CPU the process's peak resident set (``ru_maxrss``),
  which only ever grows, so it is a process-wide figure, not a per-side one.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

GiB = 1024**3


def run_id() -> str:
    """One id per benchmark process: every figure of one JSON carries it."""
    return f"{os.getpid()}-{uuid.uuid4().hex[:8]}"


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _version(name: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:
        return None


def environment(device: Any) -> dict[str, Any]:
    """Machine and library versions, and the device's name."""
    import torch

    env: dict[str, Any] = {
        "date": now_iso(),
        "host_cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": {
            name: _version(name)
            for name in ("torch", "diffusers", "transformers", "accelerate", "open_clip_torch", "tdri-studio")
        },
        "device": str(device),
    }
    if getattr(device, "type", str(device)) == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update(
            gpu=props.name,
            gpu_memory_gib=round(props.total_memory / GiB, 1),
            cuda=torch.version.cuda,
            cudnn=torch.backends.cudnn.version(),
        )
    return env


def sync(device: Any) -> None:
    import torch

    if getattr(device, "type", None) == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: Any) -> None:
    import torch

    if getattr(device, "type", None) == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def memory(device: Any) -> dict[str, float | None]:
    """Peak CUDA tensor memory since the last reset, and the process's peak RSS, in GiB."""
    import torch

    cuda = None
    allocated = None
    if getattr(device, "type", None) == "cuda":
        cuda = round(torch.cuda.max_memory_allocated(device) / GiB, 3)
        allocated = round(torch.cuda.memory_allocated(device) / GiB, 3)
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS
    return {
        "cuda_peak_gib": cuda,
        "cuda_allocated_gib": allocated,
        "process_peak_rss_gib": round(rss_kib * scale / GiB, 3),
    }


def timed(fn: Any, device: Any) -> tuple[float, Any]:
    """(seconds, result) of ``fn()`` with the device synchronised on both sides."""
    sync(device)
    t0 = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - t0, out


def summary(times: list[float]) -> dict[str, Any]:
    """cold = the first, warm = the median of the rest (with min, max and every figure)."""
    if not times:
        return {"cold_s": None, "warm_s": None, "warm_n": 0, "all_s": []}
    rest = times[1:]
    return {
        "cold_s": round(times[0], 4),
        "warm_s": round(statistics.median(rest), 4) if rest else None,
        "warm_min_s": round(min(rest), 4) if rest else None,
        "warm_max_s": round(max(rest), 4) if rest else None,
        "warm_n": len(rest),
        "all_s": [round(t, 4) for t in times],
    }


def write_json(data: dict[str, Any], out: str | Path | None) -> str:
    text = json.dumps(data, indent=2, ensure_ascii=False)
    if out:
        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text + "\n", encoding="utf-8")
        os.replace(tmp, path)
    return text
