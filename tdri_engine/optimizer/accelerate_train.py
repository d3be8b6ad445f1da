"""Diffusion-DPO LoRA training on exported preference pairs, on one GPU or many.

Runs unchanged as a plain script (one process) or under Hugging Face Accelerate, which spreads
it over the GPUs and nodes its config names::

    accelerate launch tdri_engine/optimizer/accelerate_train.py \\
        --pretrained /models/stable-diffusion-v1-5 \\
        --pairs exports/alice.parquet exports/bob.parquet \\
        --out user_adapters/v0007 --steps 2000 --batch-size 4 --mixed-precision bf16

The pairs are ``tdri export pairs`` files (Parquet: caption, jpg_0, jpg_1, label_0); ties
(label 0.5) carry no preference and are skipped, as in the authors' script. The training is the
engine's own: ``dpo_objective`` (same noise and timestep for winner and loser, the reference
being the UNet with its adapter disabled), LoRA on the attention projections, fp32 LoRA weights.
Each process encodes its own share of the pairs with the VAE and the text encoder on the fly.
The result is a diffusers-format adapter folder (``pytorch_lora_weights.safetensors`` and
``meta.json``) that ``pipe.load_lora_weights`` and the studio load. Nothing is downloaded:
``--pretrained`` is a local pipeline folder.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file by `accelerate launch`: make the package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="Diffusion-DPO LoRA training on exported preference pairs.")
    ap.add_argument("--pretrained", required=True, type=Path, help="local SD-1.x or SDXL pipeline folder")
    ap.add_argument(
        "--pairs", required=True, type=Path, nargs="+", help="Parquet files from `tdri export pairs`"
    )
    ap.add_argument("--out", required=True, type=Path, help="adapter folder to write")
    ap.add_argument("--resolution", type=int, default=None, help="training size (default: the UNet's)")
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--batch-size", type=int, default=4, help="pairs per process and micro-batch")
    ap.add_argument("--grad-accum", type=int, default=1)
    ap.add_argument("--lr", type=float, default=1e-5)  # the public Diffusion-DPO LoRA example's
    ap.add_argument("--beta", type=float, default=5000.0)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--mixed-precision", choices=("no", "fp16", "bf16"), default="no")
    ap.add_argument("--grad-checkpointing", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    return ap.parse_args(argv)


def read_pairs(files: list[Path]) -> list[dict[str, Any]]:
    """Decisive pairs as {caption, win (JPEG bytes), lose}; ties are dropped."""
    import pyarrow.parquet as pq

    rows = []
    for f in files:
        for r in pq.read_table(f, columns=["caption", "jpg_0", "jpg_1", "label_0"]).to_pylist():
            if r["label_0"] == 1:
                rows.append({"caption": r["caption"], "win": r["jpg_0"], "lose": r["jpg_1"]})
            elif r["label_0"] == 0:
                rows.append({"caption": r["caption"], "win": r["jpg_1"], "lose": r["jpg_0"]})
    return rows


class PairDataset:
    def __init__(self, rows: list[dict[str, Any]], size: int) -> None:
        self.rows = rows
        self.size = size

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, Any]:
        from PIL import Image

        from tdri_engine.optimizer.trainer import image_tensor

        r = self.rows[i]
        w = image_tensor(Image.open(io.BytesIO(r["win"])), self.size, self.size)
        l_ = image_tensor(Image.open(io.BytesIO(r["lose"])), self.size, self.size)
        return {"caption": r["caption"], "win": w, "lose": l_}


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    import torch

    return {
        "caption": [it["caption"] for it in items],
        "win": torch.stack([it["win"] for it in items]),
        "lose": torch.stack([it["lose"] for it in items]),
    }


def main(argv: list[str] | None = None) -> int:
    import torch
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from diffusers import DiffusionPipeline

    from tdri_engine.optimizer.adapters import META_NAME
    from tdri_engine.optimizer.dpo import (
        DPOConfig,
        PairTensors,
        attach_lora,
        autocast_context,
        dpo_objective,
        lora_parameters,
    )
    from tdri_engine.optimizer.trainer import encode_images, encode_prompts, noise_scheduler_for, save_adapter

    args = parse_args(argv)
    from tdri_engine.errors import ModelRefused
    from tdri_engine.trust import check_folder

    try:  # the trust policy: no code and no pickles from the pipeline folder (README, "Trust policy")
        check_folder(args.pretrained, "sd15", "generator")
    except ModelRefused as exc:
        print(f"error: {exc.message}\nwhat to do: {exc.what_to_do}", file=sys.stderr)
        return 1
    accelerator = Accelerator(
        mixed_precision=args.mixed_precision, gradient_accumulation_steps=args.grad_accum
    )
    set_seed(args.seed)
    rows = read_pairs(args.pairs)
    if len(rows) < 2:
        accelerator.print(
            f"Only {len(rows)} decisive pairs in {', '.join(map(str, args.pairs))}: nothing to train."
        )
        return 1
    weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(args.mixed_precision, torch.float32)
    pipe = DiffusionPipeline.from_pretrained(
        args.pretrained,
        local_files_only=True,
        dtype=weight_dtype,
        use_safetensors=True,
        trust_remote_code=False,
    )
    pipe.set_progress_bar_config(disable=True)
    device = accelerator.device
    for name in ("vae", "text_encoder", "text_encoder_2"):
        module = getattr(pipe, name, None)
        if module is not None:
            module.to(device).requires_grad_(False)
    unet = pipe.unet.to(device)
    config = DPOConfig(
        beta=args.beta,
        lr=args.lr,
        rank=args.rank,
        steps=args.steps,
        batch_size=args.batch_size,
        grad_accum=args.grad_accum,
        grad_checkpointing=args.grad_checkpointing,
        mixed_precision=args.mixed_precision,
        seed=args.seed,
    )
    attach_lora(unet, config)
    if args.grad_checkpointing:
        unet.enable_gradient_checkpointing()
    vae_factor = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
    size = args.resolution or int(unet.config.sample_size) * vae_factor
    loader = torch.utils.data.DataLoader(
        PairDataset(rows, size), batch_size=args.batch_size, shuffle=True, collate_fn=collate, drop_last=False
    )
    optimizer = torch.optim.AdamW(lora_parameters(unet), lr=args.lr, weight_decay=config.weight_decay)
    unet, optimizer, loader = accelerator.prepare(unet, optimizer, loader)
    base = accelerator.unwrap_model(unet)
    scheduler = noise_scheduler_for(pipe)
    autocast = autocast_context(device, args.mixed_precision, weight_dtype)
    gen = torch.Generator(device=device).manual_seed(args.seed + accelerator.process_index)
    losses: list[float] = []
    accs: list[float] = []
    step = 0
    started = time.monotonic()
    unet.train()
    while step < args.steps:
        for batch in loader:
            with accelerator.accumulate(unet):
                lat = encode_images(pipe.vae, torch.cat([batch["win"], batch["lose"]]), gen)
                n = batch["win"].shape[0]
                embeds, added = encode_prompts(pipe, batch["caption"], size, size)
                data = PairTensors(lat[:n], lat[n:], embeds, added_cond=added).to(device)
                out = dpo_objective(
                    unet, scheduler, data, config.beta, generator=gen, adapter_owner=base, autocast=autocast
                )
                accelerator.backward(out.loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(lora_parameters(base), config.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            if accelerator.sync_gradients:
                loss = accelerator.gather(out.loss.detach()[None]).mean().item()
                acc = accelerator.gather(out.implicit_acc.detach()[None]).mean().item()
                if not math.isfinite(loss):
                    accelerator.print(f"The loss became {loss} at step {step + 1}; lower --lr or --beta.")
                    return 1
                losses.append(loss)
                accs.append(acc)
                step += 1
                if step == 1 or step % 10 == 0 or step == args.steps:
                    accelerator.print(f"step {step}/{args.steps} loss {loss:.4f} implicit accuracy {acc:.2f}")
                if step >= args.steps:
                    break
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        args.out.mkdir(parents=True, exist_ok=True)
        save_adapter(pipe, base, args.out)
        meta = {
            "parent": None,
            "scope": "user",
            "pairs_used": len(rows),
            "steps": step,
            "loss_curve": losses,
            "accuracy_curve": accs,
            "implicit_accuracy": sum(last := accs[-max(1, len(accs) // 10) :]) / len(last),
            "config": config.to_dict(),
            "processes": accelerator.num_processes,
            "base_model": str(args.pretrained),
            "sources": [str(p) for p in args.pairs],
            "seconds": round(time.monotonic() - started, 2),
        }
        (args.out / META_NAME).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        accelerator.print(f"Wrote {args.out}")
    accelerator.end_training()
    return 0


if __name__ == "__main__":
    sys.exit(main())
