"""Benchmark (not collected by pytest): one Diffusion-DPO update on 40 pairs, ours vs a plain
diffusers-example-style loop, with an SD-1.5-size UNet of random weights.

    python tests/bench/bench_dpo.py [--out FILE] [--steps 40] [--batch 4] [--pairs 40]
    python tests/bench/bench_dpo.py --tiny            # CPU smoke run with a tiny UNet

Nothing is downloaded: the UNet is built from SD-1.5's config; latents are random (4, 64, 64)
(512 px), text embeddings random (77, 768). One "update" is what ``run_update`` does after the
pairs are encoded: ``steps`` optimizer steps of ``batch`` pairs (default 40 x 4: four passes over
40 pairs, ``DPOConfig``'s default) plus the before/after implicit-accuracy check (the "before" of
a fresh adapter is known exactly and not measured, as in ``DPOTrainer.train``).

Variants, each in its own try/except (an OOM or error is reported and the next one runs):

- ``ours``: the engine's ``DPOTrainer``. Frozen UNet weights in bf16, LoRA r8 in fp32, bf16
  autocast, gradient checkpointing, the reference = the same UNet with the adapter disabled
  (no second copy) run first under no_grad, fused AdamW, TF32 and cuDNN autotuning, SDPA.
  Measured cold (first update in the process) and warm (a second update).
- ``ours_no_checkpointing``: the same without gradient checkpointing (faster, more memory).
- ``ours_fp16``: fp16 weights and autocast with a gradient scaler (GPUs without bf16).
- ``baseline``: as the public Diffusion-DPO script is usually run: the policy UNet with the
  LoRA and a separate frozen reference UNet, both fp32, no autocast, no checkpointing, plain
  AdamW, default backend flags; policy forward first, then the reference under no_grad.
  When its update would overrun the time budget, its measured steps are extrapolated (said so).

Prints one JSON object (after each variant too, so a crash keeps what was measured) and writes
it to ``--out``. Targets on an H100-class GPU: ours peak < 8 GiB, the 40-pair update < 15 s.

First measured (``docs/bench/dpo_h200.json``, at the earlier default of 60 steps, NVIDIA H200, torch 2.11 cu130, diffusers 0.42.1
and peft 0.21.2 from wheels), with::

    python3 -m pip install -q --no-index --no-deps --target /tmp/site diffusers-0.42.1-*.whl \
        importlib_metadata-*.whl peft-0.21.2-*.whl && export PYTHONPATH=/tmp/site
    python3 tests/bench/bench_dpo.py --out docs/bench/dpo_h200.json

ours (warm): 18.5 s per update (15.7 s for the 60 steps, 262 ms/step; 2.8 s before/after
check), 3.76 GiB peak; baseline: 27.5 s for the 60 steps (459 ms/step), 19.5 GiB peak. The first
update in a process took 43 s: cuDNN autotuning (``cudnn.benchmark``, on in this variant only;
``run_update`` leaves it off) and lazy kernel loading. ``ours_product_flags`` measures the update
with the backend flags ``run_update`` really uses.

The current defaults (40 steps, the "before" check of a fresh adapter not measured), same machine
and command, ``--skip ours_no_checkpointing,ours_fp16 --deadline 100``, are in
``docs/bench/dpo_h200_40steps.json``: ours 10.8 s per update warm (237 ms/step, 3.76 GiB peak),
11.4 s with run_update's own backend flags (no cuDNN autotuning); baseline 18.4 s for the same 40
steps (459 ms/step, 19.5 GiB peak); the first update in a process 34.8 s (kernel loading and
autotuning).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import gc
import json
import math
import platform
import sys
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # runs from a bare checkout too (no pip install -e .)
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from tdri_engine.bench.archs import SD15_UNET  # noqa: E402  (the published SD-1.5 UNet config)

TINY_UNET = dict(
    block_out_channels=(32, 64),
    layers_per_block=2,
    sample_size=16,
    cross_attention_dim=32,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
)
GiB = 1024**3


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device: torch.device) -> float | None:
    return round(torch.cuda.max_memory_allocated(device) / GiB, 3) if device.type == "cuda" else None


def free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


@contextlib.contextmanager
def backend_flags(fast: bool):
    """TF32 and cuDNN autotuning for our path; PyTorch's defaults for the baseline."""
    saved = (
        torch.backends.cuda.matmul.allow_tf32,
        torch.backends.cudnn.allow_tf32,
        torch.backends.cudnn.benchmark,
    )
    if fast:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        (
            torch.backends.cuda.matmul.allow_tf32,
            torch.backends.cudnn.allow_tf32,
            torch.backends.cudnn.benchmark,
        ) = saved


def build_unet(cfg: dict, device: torch.device, dtype: torch.dtype):
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    with torch.device(device):  # initialise on the GPU: 860M parameters are slow on the CPU
        unet = UNet2DConditionModel(**cfg)
    return unet.to(dtype=dtype).eval()


def make_pairs(n: int, latent: int, text_dim: int, device: torch.device):
    from tdri_engine.optimizer.dpo import PairTensors

    g = torch.Generator(device="cpu").manual_seed(1)
    return PairTensors(
        latents_w=torch.randn(n, 4, latent, latent, generator=g).to(device),
        latents_l=torch.randn(n, 4, latent, latent, generator=g).to(device),
        embeds=torch.randn(n, 77, text_dim, generator=g).to(device),
    )


def noise_scheduler():
    from diffusers import DDPMScheduler

    # SD-1.5's training schedule
    return DDPMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000
    )


def run_ours(
    args,
    device,
    cfg,
    data,
    *,
    checkpointing: bool,
    half: str = "bf16",
    labels: tuple[str, ...] = ("cold", "warm"),
    fast: bool = True,
) -> dict:
    from tdri_engine.optimizer.dpo import DPOConfig, DPOTrainer, attach_lora, detach_lora

    mp = half if device.type == "cuda" else "no"
    config = DPOConfig(
        steps=args.steps,
        batch_size=args.batch,
        rank=8,
        grad_checkpointing=checkpointing,
        mixed_precision=mp,
        eval_timesteps=args.eval_timesteps,
    )
    weights_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(mp, torch.float32)
    out: dict = {
        "config": {
            k: config.to_dict()[k]
            for k in (
                "steps",
                "batch_size",
                "rank",
                "grad_checkpointing",
                "mixed_precision",
                "eval_timesteps",
            )
        }
    }
    with backend_flags(fast=fast):
        unet = build_unet(cfg, device, weights_dtype)
        state = attach_lora(unet, config)
        sched = noise_scheduler()
        try:
            for label in labels:
                trainer = DPOTrainer(unet, sched, config, device=device)
                reset_peak(device)
                # The update exactly as run_update drives it: the before/after check included
                # (the "before" of a fresh adapter is known without a pass, see DPOTrainer.train).
                step_times: list[float] = []
                last = [time.perf_counter()]

                def on_step(step: int, total: int, loss: float, acc: float, _t=step_times, _l=last) -> None:
                    now = time.perf_counter()  # loss/acc are host floats: the step has synced
                    _t.append(now - _l[0])
                    _l[0] = now

                t0 = time.perf_counter()
                last[0] = t0
                result = trainer.train(data, evaluate=True, step_callback=on_step)
                sync(device)
                total = time.perf_counter() - t0
                t_train = sum(step_times)
                before, after = result.eval_before, result.eval_after
                out[label] = {
                    "update_s": round(total, 3),
                    "train_steps_s": round(t_train, 3),
                    "eval_s": round(total - t_train, 3),
                    "step_ms": round(1000 * t_train / args.steps, 2),
                    "peak_gib": peak_gib(device),
                    "loss_first": round(result.loss_curve[0], 5),
                    "loss_last": round(result.loss_curve[-1], 5),
                    "implicit_accuracy_before_after": [round(before[1], 3), round(after[1], 3)],
                }
                log(f"ours ckpt={checkpointing} {label}: {out[label]}")
                # the warm update starts from a fresh adapter again, as a new version would
                detach_lora(unet, state)
                state = attach_lora(unet, config)
        finally:
            detach_lora(unet, state)
            del unet
            free(device)
    return out


def run_baseline(args, device, cfg, data, budget_s: float) -> dict:
    """The diffusers-example-style step: two fp32 UNets, policy with LoRA, frozen reference."""
    import torch.nn.functional as F
    from peft import LoraConfig

    policy = build_unet(cfg, device, torch.float32)
    ref_unet = copy.deepcopy(policy).requires_grad_(False)
    policy.requires_grad_(False)
    policy.add_adapter(
        LoraConfig(
            r=8,
            lora_alpha=8,
            init_lora_weights="gaussian",
            target_modules=["to_k", "to_q", "to_v", "to_out.0"],
        )
    )
    params = [p for p in policy.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=1e-2)
    sched = noise_scheduler()
    g = torch.Generator(device=device).manual_seed(0)
    n = len(data)
    policy.train()

    def step(idx: list[int]) -> float:
        w, l_ = data.latents_w[idx], data.latents_l[idx]
        latents = torch.cat([w, l_])
        noise = torch.randn(w.shape, generator=g, device=device).repeat(2, 1, 1, 1)
        t = torch.randint(0, 1000, (len(idx),), generator=g, device=device).repeat(2)
        noisy = sched.add_noise(latents, noise, t)
        emb = data.embeds[idx].repeat(2, 1, 1)
        model_pred = policy(noisy, t, emb).sample
        model_losses = F.mse_loss(model_pred.float(), noise.float(), reduction="none").mean(dim=[1, 2, 3])
        mw, ml = model_losses.chunk(2)
        with torch.no_grad():
            ref_pred = ref_unet(noisy, t, emb).sample.detach()
            ref_losses = F.mse_loss(ref_pred.float(), noise.float(), reduction="none").mean(dim=[1, 2, 3])
            rw, rl = ref_losses.chunk(2)
        inside = -0.5 * 5000 * ((mw - ml) - (rw - rl))
        loss = -F.logsigmoid(inside).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad()
        return float(loss.detach())

    out: dict = {"config": {"steps": args.steps, "batch_size": args.batch, "rank": 8, "weights": "fp32 x2"}}
    with backend_flags(fast=False):
        batches = [[(s * args.batch + j) % n for j in range(args.batch)] for s in range(args.steps)]
        for idx in batches[:2]:  # warm-up, not timed
            step(idx)
        reset_peak(device)
        t0 = time.perf_counter()
        done = 0
        for idx in batches:
            step(idx)
            done += 1
            if device.type == "cuda" and done % 5 == 0:
                sync(device)
            if time.perf_counter() - t0 > budget_s:
                break
        sync(device)
        elapsed = time.perf_counter() - t0
    out.update(
        {
            "steps_measured": done,
            "step_ms": round(1000 * elapsed / done, 2),
            "train_steps_s": round(elapsed * args.steps / done, 3),
            "extrapolated": done < args.steps,
            "peak_gib": peak_gib(device),
        }
    )
    log(f"baseline: {out}")
    # both UNets go when this frame ends; main() then empties the CUDA cache
    return out


def environment(device: torch.device) -> dict:
    env = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or "cpu",
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    for mod in ("diffusers", "peft", "transformers", "accelerate"):
        try:
            env[mod] = __import__(mod).__version__
        except Exception as exc:  # noqa: BLE001 - report, do not fail
            env[mod] = f"missing ({type(exc).__name__})"
    return env


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tiny", action="store_true", help="tiny UNet on any device (CPU smoke run)")
    ap.add_argument("--pairs", type=int, default=None, help="preference pairs (default 40; tiny 8)")
    ap.add_argument("--steps", type=int, default=None, help="optimizer steps (default 40; tiny 3)")
    ap.add_argument("--batch", type=int, default=None, help="pairs per step (default 4; tiny 2)")
    ap.add_argument("--eval-timesteps", type=int, default=2, help="timesteps of the before/after check")
    ap.add_argument(
        "--baseline-budget", type=float, default=60.0, help="seconds before the baseline extrapolates"
    )
    ap.add_argument("--deadline", type=float, default=180.0, help="start no variant after this many seconds")
    ap.add_argument("--skip", default="", help="comma-separated variants to skip")
    ap.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = ap.parse_args(argv)
    args.pairs = args.pairs or (8 if args.tiny else 40)
    args.steps = args.steps or (3 if args.tiny else 40)
    args.batch = args.batch or (2 if args.tiny else 4)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cfg = TINY_UNET if args.tiny else SD15_UNET
    latent = 16 if args.tiny else 64
    text_dim = cfg["cross_attention_dim"]
    report: dict = {
        "benchmark": "diffusion-dpo update",
        "unet": "tiny" if args.tiny else "SD-1.5 config, random weights",
        "pairs": args.pairs,
        "latents": [4, latent, latent],
        "steps": args.steps,
        "batch_pairs": args.batch,
        "environment": environment(device),
        "targets": {"peak_gib_below": 8, "update_s_below": 15, "on": "H100-class GPU"},
        "results": {},
    }

    def emit() -> None:
        text = json.dumps(report, indent=2)
        print(text, flush=True)
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(text + "\n")

    try:
        data = make_pairs(args.pairs, latent, text_dim, device)
    except Exception as exc:  # noqa: BLE001
        report["error"] = f"{type(exc).__name__}: {exc}"
        emit()
        return 1
    skip = set(filter(None, args.skip.split(",")))
    variants = [
        ("ours", lambda: run_ours(args, device, cfg, data, checkpointing=True)),
        ("baseline", lambda: run_baseline(args, device, cfg, data, args.baseline_budget)),
        # the backend flags run_update really uses (no cuDNN autotuning), warm only
        (
            "ours_product_flags",
            lambda: run_ours(args, device, cfg, data, checkpointing=True, labels=("warm",), fast=False),
        ),
        (
            "ours_no_checkpointing",
            lambda: run_ours(args, device, cfg, data, checkpointing=False, labels=("warm",)),
        ),
        # fp16 weights and autocast with the gradient scaler: GPUs without bf16 take this path
        (
            "ours_fp16",
            lambda: run_ours(args, device, cfg, data, checkpointing=True, half="fp16", labels=("warm",)),
        ),
    ]
    started = time.perf_counter()
    for name, fn in variants:
        if name in skip:
            continue
        if time.perf_counter() - started > args.deadline:
            report["results"][name] = {"skipped": f"past the {args.deadline:.0f} s deadline"}
            continue
        t0 = time.perf_counter()
        try:
            report["results"][name] = fn()
        except torch.OutOfMemoryError as exc:
            report["results"][name] = {"error": "out of memory", "detail": str(exc).splitlines()[0]}
        except Exception as exc:  # noqa: BLE001 - one variant failing must not lose the others
            report["results"][name] = {
                "error": f"{type(exc).__name__}: {exc}",
                "trace": traceback.format_exc()[-2000:],
            }
        report["results"][name]["variant_wall_s"] = round(time.perf_counter() - t0, 2)
        free(device)
        emit()
    ours = report["results"].get("ours", {}).get("warm")
    base = report["results"].get("baseline", {})
    if ours and "train_steps_s" in base:
        report["summary"] = {
            "ours_update_s": ours["update_s"],
            "ours_peak_gib": ours["peak_gib"],
            "baseline_train_steps_s": base["train_steps_s"],
            "baseline_peak_gib": base["peak_gib"],
            "speedup_train_steps": round(base["train_steps_s"] / ours["train_steps_s"], 2)
            if ours["train_steps_s"]
            else math.nan,
            "memory_ratio": round(base["peak_gib"] / ours["peak_gib"], 2)
            if ours.get("peak_gib") and base.get("peak_gib")
            else None,
        }
        emit()
    return 0


if __name__ == "__main__":
    sys.exit(main())
