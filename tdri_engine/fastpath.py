"""The generator's fast path: levers that make the same image faster, each one switchable.

Issue 14 asks for "whatever holds up under measurement"; so every lever is off unless named,
and ``tdri bench generate --fast ...`` / ``tdri bench gpu`` time each against plain diffusers in
the same run and compare the images of the same seeds (``same_image`` in the JSON). Levers:

``sdpa``
    Every attention of the UNet, ControlNet and VAE on PyTorch's fused
    ``scaled_dot_product_attention`` (diffusers' ``AttnProcessor2_0``). diffusers already picks it
    on torch >= 2; the lever makes it explicit, so a pipeline loaded with another processor (an
    older config, xformers) is put back on it. Same arithmetic up to kernel rounding.
``channels_last``
    The convolutional modules' weights in NHWC memory order: cuDNN's fp16/bf16 convolutions
    run without layout transposes. The values are unchanged, only their order in memory.
``fuse_qkv``
    The query/key/value projections of self-attention as one matmul (diffusers'
    ``fuse_qkv_projections``). BENCHMARK ONLY: a LoRA loaded afterwards adds its layers to
    ``to_q``/``to_k``/``to_v``, which the fused layer no longer calls, so an adapter would be
    silently ignored. :func:`parse` refuses it for the product (``product=True``).
``compile``
    ``torch.compile`` of the UNet and ControlNet in place (``nn.Module.compile``: the module
    object stays the same, so adapters and ``set_adapters`` still reach its layers; a LoRA switch
    may recompile, not measured yet). ``compile_mode`` (default ``default``: max-autotune's kernel search takes
    minutes on a UNet, past the benchmark's 5-minute budget; a profile may ask for it) and
    ``compile_backend`` (default ``inductor``; ``eager`` and ``aot_eager`` capture the graph
    without code generation, which is how the CPU checks run it) are passed through. Inductor keeps its
    compiled code in a cache on disk (``TORCHINDUCTOR_CACHE_DIR``, on by default in torch >= 2.4),
    so a second process's first image skips the compile: ``tdri bench gpu`` measures both.
``tf32``
    TF32 matmuls where a model runs in fp32 on an Ampere-or-later GPU, through torch's own
    setter ``torch.set_float32_matmul_precision("high")`` (process-wide by torch's design, so only
    when a profile or a benchmark names it; cuDNN convolutions already allow TF32 by default).
    No effect in fp16/bf16. cuDNN's autotuner (``cudnn.benchmark``) is not a lever: torch has no
    setter for it, only a module attribute, and this code patches no library's attributes.

Precision (fp16 / bf16) is not a lever here: it is ``EngineSettings.dtype`` for the product and
``--dtype`` for the benchmarks, applied to both sides alike.

Where it applies: a profile's generator and controlnet roles may name levers in their options,
``"options": {"fast_path": "sdpa,channels_last,compile"}``; ``generator.load_pipeline`` and
``load_controlnet`` apply them after loading. The benchmarks apply them to "ours" only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import BadInput

LEVERS: tuple[str, ...] = ("sdpa", "channels_last", "fuse_qkv", "compile", "tf32")
BENCH_ONLY: frozenset[str] = frozenset({"fuse_qkv"})
DEFAULT_COMPILE_MODE = "default"
DEFAULT_COMPILE_BACKEND = "inductor"
# the diffusion modules a lever touches, by attribute name on a pipeline
MODULES: tuple[str, ...] = ("unet", "controlnet", "vae")
COMPILED: tuple[str, ...] = ("unet", "controlnet")  # the per-step work; the VAE runs once


@dataclass(frozen=True)
class FastPath:
    sdpa: bool = False
    channels_last: bool = False
    fuse_qkv: bool = False
    compile: bool = False
    tf32: bool = False
    compile_mode: str = DEFAULT_COMPILE_MODE
    compile_backend: str = DEFAULT_COMPILE_BACKEND

    @property
    def levers(self) -> tuple[str, ...]:
        return tuple(name for name in LEVERS if getattr(self, name))

    @property
    def any(self) -> bool:
        return bool(self.levers)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"levers": list(self.levers)}
        if self.compile:
            out.update(compile_mode=self.compile_mode, compile_backend=self.compile_backend)
        return out

    def describe(self) -> str:
        return ",".join(self.levers) or "none"

    def apply(self, target: Any, controlnet: Any | None = None) -> list[str]:
        """Switch the levers on for ``target`` (a pipeline, or a bare module such as a
        ControlNet) and ``controlnet``; returns one note per lever applied (for the JSON).
        Idempotent: a module already compiled or already fused is left as it is."""
        import torch

        notes: list[str] = []
        mods = _modules(target, controlnet)
        if self.tf32:
            torch.set_float32_matmul_precision("high")
            notes.append("tf32: float32 matmul precision 'high' (TF32)")
        if self.sdpa:
            from diffusers.models.attention_processor import AttnProcessor2_0

            done = []
            for name, m in mods.items():
                if hasattr(m, "set_attn_processor") and getattr(m, "attn_processors", None):
                    m.set_attn_processor(AttnProcessor2_0())
                    done.append(name)
            notes.append(f"sdpa: AttnProcessor2_0 on {', '.join(done) or 'nothing'}")
        if self.fuse_qkv:
            done = []
            for name, m in mods.items():
                if hasattr(m, "fuse_qkv_projections") and not getattr(m, "_tdri_fused", False):
                    m.fuse_qkv_projections()
                    m._tdri_fused = True
                    done.append(name)
            notes.append(f"fuse_qkv: fused on {', '.join(done) or 'nothing'}")
        if self.channels_last:
            for m in mods.values():
                m.to(memory_format=torch.channels_last)
            notes.append(f"channels_last: {', '.join(mods) or 'nothing'}")
        if self.compile:
            done = []
            for name in COMPILED:
                m = mods.get(name)
                if m is not None and not getattr(m, "_tdri_compiled", False):
                    m.compile(mode=self.compile_mode if self.compile_backend == "inductor" else None,
                              backend=self.compile_backend, fullgraph=False, dynamic=False)  # fmt: skip
                    m._tdri_compiled = True
                    done.append(name)
            notes.append(
                f"compile: {', '.join(done) or 'nothing'} ({self.compile_backend}"
                + (f", {self.compile_mode})" if self.compile_backend == "inductor" else ")")
            )
        return notes


def _modules(target: Any, controlnet: Any | None) -> dict[str, Any]:
    """The diffusion modules of a pipeline (or the bare module itself, as "controlnet" when it is
    a ControlNet, else "unet"/"vae" by class), plus ``controlnet``."""
    out: dict[str, Any] = {}
    if hasattr(target, "components"):
        for name in MODULES:
            m = getattr(target, name, None)
            if m is not None:
                out[name] = m
    elif target is not None:
        cls = type(target).__name__
        key = "controlnet" if "ControlNet" in cls else ("vae" if "Autoencoder" in cls else "unet")
        out[key] = target
    if controlnet is not None:
        out["controlnet"] = controlnet
    return out


def parse(
    spec: Any, *, product: bool = False, compile_mode: str | None = None, compile_backend: str | None = None
) -> FastPath:
    """A FastPath from "sdpa,channels_last" (or a list of names, or None / "" / "none" for
    none, or "all"). ``product``: refuse the benchmark-only levers (see the module docstring)."""
    if spec is None or spec == "" or spec == "none":
        names: list[str] = []
    elif isinstance(spec, str):
        names = [s.strip() for s in spec.replace("+", ",").split(",") if s.strip()]
    elif isinstance(spec, (list, tuple)):
        names = [str(s).strip() for s in spec]
    else:
        raise BadInput(
            f"The fast path must be a list of levers, not {type(spec).__name__}.",
            f"Name levers separated by commas: {', '.join(LEVERS)}.",
        )
    if names == ["all"]:
        names = [n for n in LEVERS if not (product and n in BENCH_ONLY)]
    unknown = [n for n in names if n not in LEVERS]
    if unknown:
        raise BadInput(
            f"Unknown fast-path lever{'s' if len(unknown) > 1 else ''}: {', '.join(unknown)}.",
            f"Levers: {', '.join(LEVERS)} (or 'none', 'all').",
        )
    if product:
        refused = [n for n in names if n in BENCH_ONLY]
        if refused:
            raise BadInput(
                f"The lever {', '.join(refused)} is for benchmarks only: a LoRA loaded after it would be ignored.",
                "Remove it from the profile's fast_path option.",
            )
    kwargs: dict[str, Any] = {n: True for n in names}
    if compile_mode:
        kwargs["compile_mode"] = compile_mode
    if compile_backend:
        kwargs["compile_backend"] = compile_backend
    return FastPath(**kwargs)


def from_options(options: dict[str, Any]) -> FastPath:
    """The product's fast path from a role's profile options (``fast_path``, ``compile_mode``,
    ``compile_backend``); none when the profile names none."""
    return parse(
        options.get("fast_path"),
        product=True,
        compile_mode=options.get("compile_mode"),
        compile_backend=options.get("compile_backend"),
    )
