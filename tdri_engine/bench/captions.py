"""The Reflector's seven aspect captions: one batched VLM call against seven calls, same run.

    tdri bench gpu --rows vlm_captions --out /tmp/captions.json     # a row of ``tdri bench gpu``

The studio captions the seven aspects of an image in ONE ``Captioner.caption_many`` call (one
batched ``generate``: the rows share the forward passes); the baseline asks the same VLM seven
times (``Captioner.caption``, one instruction each), as a loop over the aspects would. Both get
the same image, the instructions of ``resources/templates/vlm_aspects.json``, greedy decoding and
the same token limit. Figures: cold (first call) and warm (median of ``repeat``) per side, the
ratio batched/sequential, peak memory, and whether each aspect's caption is the same text both
ways (padding a batch may change a long caption's last tokens in low precision; the row says
how many agree). The weights are the random ones of ``archs.build_vlm``: a random VLM never
emits its end token, so every caption runs to the limit, an upper bound of the decode time.
"""

from __future__ import annotations

import time
from typing import Any

from . import report

VLM_ARCH = {"gpu": "qwen2-vl-2b", "tiny": "tiny"}


def _image(size: int) -> Any:
    from .generate import pose_image

    return pose_image(size).convert("RGB")


def run(
    arch: str = "qwen2-vl-2b",
    *,
    device: str = "auto",
    dtype: str = "fp16",
    repeat: int = 3,
    max_new_tokens: int | None = None,
    size: int = 512,
) -> dict[str, Any]:
    from ..models import resolve_device, resolve_dtype
    from ..settings import ASPECTS
    from ..templates import default_templates
    from . import archs

    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, dev)
    t0 = time.perf_counter()
    captioner = archs.build_vlm(arch, dev, torch_dtype)
    report.sync(dev)
    build_s = time.perf_counter() - t0
    vlm = default_templates().vlm
    limit = int(max_new_tokens or vlm.get("max_new_tokens", 40))
    instructions = [vlm["instructions"][a] for a in ASPECTS]
    image = _image(size)

    def batched() -> list[str]:
        return list(captioner.caption_many(image, instructions, max_new_tokens=limit))

    def sequential() -> list[str]:
        return [captioner.caption(image, i, max_new_tokens=limit) for i in instructions]

    sides: dict[str, Any] = {}
    texts: dict[str, list[str]] = {}
    for name, fn in (("batched", batched), ("sequential", sequential)):
        report.reset_peak(dev)
        times = []
        for _ in range(1 + repeat):
            dt, out = report.timed(fn, dev)
            times.append(dt)
            texts.setdefault(name, out)
        sides[name] = {**report.summary(times), "memory": report.memory(dev)}
    same = [a == b for a, b in zip(texts["batched"], texts["sequential"], strict=True)]
    ratio = {
        k: round(sides["batched"][f"{k}_s"] / sides["sequential"][f"{k}_s"], 3)
        for k in ("cold", "warm")
        if sides["batched"].get(f"{k}_s") and sides["sequential"].get(f"{k}_s")
    }
    return {
        "benchmark": "tdri bench gpu: vlm_captions",
        "environment": report.environment(dev),
        "settings": {
            "arch": arch,
            "aspects": list(ASPECTS),
            "max_new_tokens": limit,
            "image": f"{size}x{size}",
            "dtype": dtype,
            "dtype_effective": str(torch_dtype).replace("torch.", ""),
            "repeat": repeat,
            "build_weights_s": round(build_s, 3),
        },
        "batched": sides["batched"],
        "sequential": sides["sequential"],
        "ratio_batched_over_sequential": ratio,
        "same_captions": {
            "aspects_equal": int(sum(same)),
            "of": len(same),
            "per_aspect": dict(zip(ASPECTS, same, strict=True)),
        },
    }
