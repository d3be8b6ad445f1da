"""``tdri bench generate``: one image through our Generator against plain diffusers, same run.

    tdri bench generate --arch sd15-controlnet --device cuda --out docs/bench/generate_gpu.json
    tdri bench generate --arch sdxl --device cuda --out docs/bench/generate_sdxl_gpu.json
    tdri bench generate --arch tiny --out /tmp/tiny.json          # CPU, seconds

What is compared. Both sides get the same architecture with the same random weights (built twice
from the same seed, so neither side can change the other's modules), the same scheduler (DDIM),
steps, size, guidance, precision, prompt, seed and pose map:

- **ours**: ``tdri_engine.generator.Generator`` exactly as the studio runs it, on a
  ``ModelRegistry`` handed the built pipeline and ControlNet (``registry.put``): its own prompt
  encoding, step callbacks (progress, latent previews), cancellation checks, the pipeline it
  builds for the mode from the shared components.
- **plain**: the diffusers pipeline of that mode built from the same parts and called the way
  its documentation shows (``pipe(prompt, image=pose, ...)``), default settings.

``sd15-controlnet`` times the pose-ControlNet text-to-image (the studio's generation with a kept
pose), ``sdxl`` plain text-to-image (round 0; SDXL at 1024²), ``tiny`` the demo's tiny SD-1.x
with its ControlNet. Per side: cold (first image after the models are on the device) and warm
(median of ``--repeat``), peak memory, and the ratio ours/plain. Then each side makes one image
per seed of ``--check-seeds`` (the first is the timed one) and the two sides' images of the same
seed are compared: max and mean absolute difference in 8-bit levels, against ``--tolerance``;
ours of one seed against plain of the next shows how large a real difference is. The side run first pays the process's first-use costs in its cold figure;
by default that is ours (``--order``), the conservative choice for our ratio.

Fast-path levers this benchmark is ready to compare (each one changes only the ``ours`` side,
the plain side keeps diffusers' defaults, so a row per lever is one run with it switched on):
precision (``--dtype fp16|bf16|fp32``), SDPA / attention processors and fused QKV projections,
``channels_last`` memory format, ``torch.compile`` of UNet/ControlNet/VAE (cold shows the
compile cost, warm the gain; with a compile cache the cold figure of a second process shows the
cache), CUDA graphs, batching the CFG and ControlNet work, a tiny VAE for previews with the full
VAE once at the end (previews are already emitted by ours), TF32 / cuDNN autotuning. Fewer-step
schedulers are a separate row (``--steps``), never the comparison: both sides always run the
same scheduler and steps. The image comparison states whether a lever changed the result.
"""

from __future__ import annotations

import gc
import time
from functools import partial
from typing import Any

from ..fastpath import FastPath
from ..fastpath import parse as parse_fast
from . import archs, report

DEFAULTS: dict[str, dict[str, Any]] = {
    # steps, size, repeat: the settings on a GPU; the tiny demo size on a CPU
    "sd15-controlnet": {"steps": 30, "size": 512, "repeat": 5},
    "sdxl": {"steps": 30, "size": 1024, "repeat": 5},
    "tiny": {"steps": 4, "size": 64, "repeat": 3},
}
MODES = {"sd15-controlnet": "controlnet", "sdxl": "text2img", "tiny": "controlnet"}
PROMPT = "a full-body photo of a woman in a red summer dress standing on a beach, soft light"
POSE_STRENGTH = 0.8  # EngineSettings.pose_strength's default, on both sides
DEFAULT_TOLERANCE = 2  # 8-bit levels: the two sides run the same kernels, so they must agree


def pose_image(size: int) -> Any:
    """A fixed stick figure on black, as an OpenPose map looks (its content does not change time)."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (size, size), "black")
    d = ImageDraw.Draw(img)
    s = size / 64
    w = max(1, int(2 * s))

    def p(x: float, y: float) -> tuple[float, float]:
        return (x * s, y * s)

    limbs = [
        ((32, 10), (32, 20), (255, 0, 0)),
        ((22, 20), (42, 20), (255, 170, 0)),
        ((22, 20), (18, 34), (170, 255, 0)),
        ((42, 20), (46, 34), (0, 255, 0)),
        ((32, 20), (26, 40), (0, 255, 170)),
        ((32, 20), (38, 40), (0, 170, 255)),
        ((26, 40), (25, 58), (0, 0, 255)),
        ((38, 40), (39, 58), (170, 0, 255)),
    ]
    for a, b, colour in limbs:
        d.line([p(*a), p(*b)], fill=colour, width=w)
    return img


def _free(device: Any) -> None:
    import torch

    gc.collect()
    if getattr(device, "type", None) == "cuda":
        torch.cuda.empty_cache()


def _ours(
    c: archs.Components, settings: Any, mode: str, pose: Any, fast: FastPath | None = None
) -> tuple[Any, Any]:
    """(call(seed) -> image, owner) for our Generator on components ``c``, with the fast path's
    levers switched on (``tdri_engine.fastpath``; the owner's ``fast_notes`` says what)."""
    from ..generator import Generator
    from ..models import ModelProfile, ModelRegistry, RoleSpec

    source = f"random weights ({c.arch} architecture)"
    profile = ModelProfile(
        f"bench-{c.arch}",
        {
            "generator": RoleSpec("generator", c.pipeline_kind, source),
            "controlnet": RoleSpec("controlnet", "controlnet", source),
        },
    )
    registry = ModelRegistry(profile, device=settings.device, dtype=settings.dtype)
    pipe = archs.text2img_pipeline(c)
    notes = (fast or FastPath()).apply(pipe, c.controlnet)
    registry.put("generator", pipe)
    if c.controlnet is not None:
        registry.put("controlnet", c.controlnet)
    gen = Generator(registry, settings)
    gen.fast_notes = notes  # type: ignore[attr-defined]
    pose_map = pose if mode == "controlnet" else None

    def call(seed: int) -> Any:
        return gen.generate(PROMPT, seed=seed, pose_map=pose_map).image

    return call, gen


def _plain(
    c: archs.Components, settings: Any, mode: str, pose: Any, fast: FastPath | None = None
) -> tuple[Any, Any]:
    """(call(seed) -> image, owner) for the plain diffusers pipeline on components ``c``."""
    import torch

    pipe = archs.plain_pipeline(c, mode)
    kwargs: dict[str, Any] = dict(
        num_inference_steps=settings.steps,
        guidance_scale=settings.guidance,
        width=settings.width,
        height=settings.height,
        output_type="pil",
    )
    if mode == "controlnet":
        kwargs.update(image=pose, controlnet_conditioning_scale=POSE_STRENGTH)

    def call(seed: int) -> Any:
        return pipe(PROMPT, generator=torch.Generator("cpu").manual_seed(seed), **kwargs).images[0]

    return call, pipe


def _side(
    name: str,
    arch: str,
    device: Any,
    dtype: Any,
    settings: Any,
    mode: str,
    pose: Any,
    seeds: list[int],
    repeat: int,
    fast: FastPath | None = None,
) -> tuple[dict[str, Any], list[Any]]:
    """Build the weights, time 1 + ``repeat`` images of ``seeds[0]``, then make one image of
    each other seed (untimed); returns (figures, one image per seed as int16 arrays)."""
    t0 = time.perf_counter()
    c = archs.build_components(arch, device, dtype, seed=0)
    report.sync(device)
    build_s = time.perf_counter() - t0
    make = _ours if name == "ours" else _plain
    call, owner = make(c, settings, mode, pose, fast if name == "ours" else None)
    report.reset_peak(device)
    times, images = [], []
    started = report.now_iso()
    for _ in range(1 + repeat):
        dt, image = report.timed(partial(call, seeds[0]), device)
        times.append(dt)
        images.append(image)
    import numpy as np

    first = np.asarray(images[0], dtype=np.int16)
    per_seed = [first] + [np.asarray(call(s), dtype=np.int16) for s in seeds[1:]]
    repeat_diff = max(
        (int(np.abs(np.asarray(im, dtype=np.int16) - first).max()) for im in images[1:]), default=0
    )
    figures = {
        "started": started,
        "build_weights_s": round(build_s, 3),
        **report.summary(times),
        "memory": report.memory(device),
        "repeat_max_abs_diff": repeat_diff,
        "parameters": c.parameters,
    }
    if name == "ours":
        figures["fast_path"] = list(getattr(owner, "fast_notes", []))
    del call, owner, c, images
    _free(device)
    return figures, per_seed


def run(
    arch: str,
    *,
    steps: int | None = None,
    size: int | None = None,
    guidance: float = 7.5,
    dtype: str = "fp16",
    device: str = "auto",
    repeat: int | None = None,
    seed: int = 0,
    check_seeds: int = 3,
    order: str = "ours-first",
    tolerance: int = DEFAULT_TOLERANCE,
    fast: FastPath | str | None = None,
) -> dict[str, Any]:
    """The whole comparison as one JSON-ready dict; ``fast``: the levers of ours
    (``tdri_engine.fastpath``, e.g. "sdpa,channels_last"; plain always runs diffusers' defaults)."""
    import numpy as np
    import torch

    from ..errors import BadInput
    from ..models import resolve_device, resolve_dtype
    from ..settings import EngineSettings

    fast_path = fast if isinstance(fast, FastPath) else parse_fast(fast)
    if arch not in archs.ARCHS:
        raise BadInput(f"Unknown architecture '{arch}'.", f"Use one of: {', '.join(archs.ARCHS)}.")
    if order not in ("ours-first", "plain-first"):
        raise BadInput(f"Unknown order '{order}'.", "Use ours-first or plain-first.")
    d = DEFAULTS[arch]
    steps = int(steps or d["steps"])
    size = int(size or d["size"])
    repeat = int(d["repeat"] if repeat is None else repeat)
    if check_seeds < 2:
        raise BadInput(
            "--check-seeds must be at least 2 (the other seeds show the size of a real difference).",
            "Pass --check-seeds 3.",
        )
    if repeat < 1:
        raise BadInput("--repeat must be at least 1 (warm = the median of the repeats).", "Pass --repeat 3.")
    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, dev)
    # one validated settings object: what ours runs with; plain gets the same values
    settings = EngineSettings(
        steps=steps,
        guidance=guidance,
        width=size,
        height=size,
        negative_prompt="",
        pose_strength=POSE_STRENGTH,
        device=str(dev),
        dtype=dtype,
    )
    if dev.type == "cuda":  # the CUDA context is nobody's cost
        torch.zeros(1, device=dev).add_(1)
        report.sync(dev)
    mode = MODES[arch]
    pose = pose_image(size)
    rid = report.run_id()
    started = report.now_iso()
    import diffusers  # noqa: F401  (imported before the clock runs: nobody's build time)

    sides = ["ours", "plain"] if order == "ours-first" else ["plain", "ours"]
    results: dict[str, Any] = {}
    images: dict[str, Any] = {}
    seeds = [seed + i for i in range(check_seeds)]
    for name in sides:
        results[name], images[name] = _side(
            name, arch, dev, torch_dtype, settings, mode, pose, seeds, repeat, fast_path
        )
        results[name]["run_id"] = rid
    n = len(seeds)
    diffs = [np.abs(images["ours"][i] - images["plain"][i]) for i in range(n)]
    per_seed = [int(d.max()) for d in diffs]
    max_diff = max(per_seed)
    # ours of seed i against plain of seed i+1: how large a real difference is here
    other = [int(np.abs(images["ours"][i] - images["plain"][(i + 1) % n]).max()) for i in range(n)]
    ratio = {
        k: round(results["ours"][f"{k}_s"] / results["plain"][f"{k}_s"], 3)
        for k in ("cold", "warm")
        if results["ours"].get(f"{k}_s") and results["plain"].get(f"{k}_s")
    }
    return {
        "benchmark": "tdri bench generate",
        "run_id": rid,
        "started": started,
        "finished": report.now_iso(),
        "environment": report.environment(dev),
        "settings": {
            "arch": arch,
            "mode": mode,
            "steps": steps,
            "width": size,
            "height": size,
            "guidance": guidance,
            "dtype": dtype,
            "dtype_effective": str(torch_dtype).replace("torch.", ""),
            "scheduler": "DDIM (eta 0), SD training betas, both sides",
            "pose_strength": POSE_STRENGTH if mode == "controlnet" else None,
            "prompt": PROMPT,
            "seed": seed,
            "repeat": repeat,
            "fast_path": fast_path.to_dict(),
            "order": sides,
            "weights": "random, seeded, built from the published configs (tdri_engine.bench.archs)",
        },
        "ours": results["ours"],
        "plain": results["plain"],
        "ratio_ours_over_plain": ratio,
        "same_image": {
            "seeds": seeds,
            "max_abs_diff": max_diff,
            "max_abs_diff_per_seed": per_seed,
            "mean_abs_diff": round(float(np.mean([d.mean() for d in diffs])), 4),
            "other_seed_min_max_abs_diff": min(other),
            "tolerance": tolerance,
            "unit": "8-bit levels (0-255), RGB",
            "within_tolerance": max_diff <= tolerance,
        },
        "notes": [
            "cold = first image after the weights are on the device; warm = median of the repeats",
            "weights are built per side from the same seed (identical values; neither side can alter the other's modules)",
        ],
    }


def register(sub: Any) -> None:
    p = sub.add_parser(
        "generate",
        help="one image: our Generator against plain diffusers (same components, same settings)",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument("--arch", choices=archs.ARCHS, default="sd15-controlnet")
    p.add_argument("--steps", type=int, default=None, help="denoising steps (30; tiny: 4)")
    p.add_argument("--size", type=int, default=None, help="image side in pixels (512, sdxl 1024, tiny 64)")
    p.add_argument("--guidance", type=float, default=7.5)
    p.add_argument(
        "--dtype", default="fp16", choices=("fp16", "bf16", "fp32"), help="fp16 becomes fp32 on a CPU"
    )
    p.add_argument("--device", default="auto")
    p.add_argument("--repeat", type=int, default=None, help="warm images per side (5; tiny: 3)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--check-seeds", type=int, default=3, help="seeds compared ours vs plain (the first is timed)"
    )
    p.add_argument("--order", default="ours-first", choices=("ours-first", "plain-first"))
    p.add_argument("--tolerance", type=int, default=DEFAULT_TOLERANCE, help="max abs diff in 8-bit levels")
    p.add_argument(
        "--fast",
        default="none",
        help="fast-path levers of ours, comma-separated: sdpa, channels_last, fuse_qkv, compile, tf32, "
        "or all (default none: ours as the studio runs it)",
    )
    p.add_argument(
        "--compile-backend", default=None, help="torch.compile backend (inductor; aot_eager on a CPU)"
    )
    p.add_argument("--out", default=None, help="write the JSON here too")
    p.set_defaults(func=_main)


def _main(args: Any) -> int:
    data = run(
        args.arch,
        steps=args.steps,
        size=args.size,
        guidance=args.guidance,
        dtype=args.dtype,
        device=args.device,
        repeat=args.repeat,
        seed=args.seed,
        check_seeds=args.check_seeds,
        order=args.order,
        tolerance=args.tolerance,
        fast=parse_fast(args.fast, compile_backend=args.compile_backend),
    )
    print(report.write_json(data, args.out))
    return 0
