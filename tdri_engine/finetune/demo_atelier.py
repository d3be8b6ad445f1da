"""Fine-tuning on the Atelier: teach its generator a colour it never saw, measured by the judge.

    python -m tdri_engine.finetune.demo_atelier --out docs/finetune/atelier.json

1. A captioned folder of renderings of the NOVEL colour (``world.NOVEL``: teal), which the
   Atelier generator never saw in training: ``--images`` records of the ``novel`` split (data
   seed 0), rendered at 64 px, each with its full caption (``captions.full_caption``, which
   names the colour) as a sidecar ``.txt``: the layout ``tdri finetune --data`` reads.
2. The prior folder (``--prior`` N, default 200; 0: none): N renderings of records of the
   TRAINED world, the generator's own training split (``train``: no held-out garment x colour
   or garment x background pair, no teal), data seed 2 (the generator trained on data seed 0;
   the measured sets below are the ``novel`` and ``heldout`` splits, seeds 1 and 7, so no
   measured record or rendering is among them), each with its full caption. Why renderings of
   the world and not the base model's own generations (DreamBooth's class images): a design
   house fine-tuning on its new collection has its existing catalogue, the pictures of what
   its base already draws, and a 64 px base that reads the prompted colour in about half of
   its images would anchor the fine-tune to its own mistakes.
3. ``tdri finetune``'s training (``train.finetune``) on the committed Atelier generator with
   the default settings (``FinetuneConfig()``: 1,000 steps, rank 8, lr 1e-4, batch 4), with
   prior preservation (``prior=``: each step one batch of teal and one of the prior,
   loss = mse(teal) + prior_weight * mse(prior)), and the colour's name learnt as a word
   (``--learn-word``, default: the novel value's name; ``--no-learn-word`` trains the LoRA
   alone, as the earlier figures did).
4. The same prompts and the same image seeds on the base and on the fine-tuned model: the full
   captions of ``--eval`` *other* novel records (data seed 1: no training caption or picture
   among them), and of ``--eval`` held-out records of the trained world (no teal in them). The
   judge (``atelier.judge``, which reads teal: its own training data holds it) reads every
   picture. Reported: how often the colour it reads is teal, and per aspect how often all of
   the prompted values are read (an aspect is found when every one of its fields is; the
   Color aspect of the novel prompts is the teal share itself). A ``verdict`` says whether
   both halves of the claim hold: the teal share "far more often" (fine-tuned at least 3x the
   base's and 0.25 above it) and every held-out aspect "as good" (fine-tuned at most
   ``TOLERANCE`` below the base: 20 of the default 400 prompts, same prompts and seeds on both
   models).

Images are made as ``atelier.gen_eval`` makes them (DDIM, its default steps and guidance,
one seeded generator per image), the LoRA loaded with diffusers' ``load_lora_weights`` and the
learnt word's rows with ``words.apply_words``, as the studio's generator loads a profile.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

BASE = Path(__file__).resolve().parents[1] / "atelier" / "weights" / "generator"
PRIOR_DATA_SEED = 2  # of the train split; the generator trained on seed 0, the measures use 1 and 7
TOLERANCE = 0.05  # a held-out aspect "stays as good" when it falls by at most this share


def build_prior_folder(folder: Path, n: int, data_seed: int = PRIOR_DATA_SEED) -> list[str]:
    """``n`` renderings of the trained world (train split) with their full captions."""
    from ..atelier.captions import full_caption
    from ..atelier.splits import sample
    from ..atelier.world import NOVEL, render

    folder.mkdir(parents=True, exist_ok=True)
    captions = []
    for i, s in enumerate(sample("train", n, data_seed)):
        if any(getattr(s.record, f) == v for f, v in NOVEL.items()):  # the train split never draws it
            raise RuntimeError(f"a train-split record holds the novel value: {s.record}")
        caption = full_caption(s.record, s.seed)
        render(s.record, s.seed, 64).save(folder / f"prior_{i:04d}.png")
        (folder / f"prior_{i:04d}.txt").write_text(caption + "\n", encoding="utf-8")
        captions.append(caption)
    return captions


def verdict(summary: dict[str, Any]) -> dict[str, Any]:
    """Both halves of the claim, in words and numbers (see the module docstring)."""
    base, tuned = summary["teal_read_base"], summary["teal_read_finetuned"]
    first = tuned >= 3 * base and tuned >= base + 0.25
    aspects = {}
    for aspect, before in summary["other_aspects_heldout_base"].items():
        after = summary["other_aspects_heldout_finetuned"][aspect]
        aspects[aspect] = {"base": before, "finetuned": after, "holds": after >= before - TOLERANCE - 1e-9}
    second = all(a["holds"] for a in aspects.values())
    fallen = [f"{k} {v['base']} -> {v['finetuned']}" for k, v in aspects.items() if not v["holds"]]
    text = (
        f"New attribute: teal read in {tuned:.1%} of the fine-tuned model's pictures vs {base:.1%} of the "
        f"base's: {'HOLDS' if first else 'DOES NOT HOLD'} (needs >= 3x and +0.25). Other aspects on held-out "
        f"prompts of the trained world: {'HOLD' if second else 'DO NOT HOLD'} (each may fall by at most "
        f"{TOLERANCE})" + (f"; fell: {', '.join(fallen)}" if fallen else "") + "."
    )
    return {
        "both_halves_hold": first and second,
        "new_attribute_far_more_often": first,
        "other_aspects_as_good": second,
        "teal": {"base": base, "finetuned": tuned},
        "heldout_aspects": aspects,
        "tolerance": TOLERANCE,
        "text": text,
    }


def build_folder(folder: Path, n: int, data_seed: int = 0) -> list[str]:
    """``n`` renderings of novel records with their captions; returns the captions."""
    from ..atelier.captions import full_caption
    from ..atelier.splits import sample
    from ..atelier.world import render

    folder.mkdir(parents=True, exist_ok=True)
    captions = []
    for i, s in enumerate(sample("novel", n, data_seed)):
        caption = full_caption(s.record, s.seed)
        render(s.record, s.seed, 64).save(folder / f"teal_{i:04d}.png")
        (folder / f"teal_{i:04d}.txt").write_text(caption + "\n", encoding="utf-8")
        captions.append(caption)
    return captions


def found_shares(judge: Any, images: list[Any], records: list[Any]) -> dict[str, Any]:
    """Per aspect, the share of pictures where the judge reads every prompted value; and the
    share where it reads each colour."""
    from ..atelier.world import ASPECT_FIELDS

    read = judge.read(images)
    out: dict[str, Any] = {}
    for aspect, fields in ASPECT_FIELDS.items():
        hits = [
            all(getattr(rec, f) is None or seen[f] == getattr(rec, f) for f in fields)
            for seen, rec in zip(read, records, strict=True)
        ]
        out[aspect] = round(sum(hits) / len(hits), 4)
    colours: dict[str, int] = {}
    for seen in read:
        colours[seen["color"]] = colours.get(seen["color"], 0) + 1
    out["colour_read"] = {
        k: round(v / len(read), 4) for k, v in sorted(colours.items(), key=lambda kv: -kv[1])
    }
    return out


def main(argv: list[str] | None = None) -> int:
    import torch

    from ..atelier import judge as judge_mod
    from ..atelier.captions import full_caption
    from ..atelier.gen_eval import generate, grid
    from ..atelier.gen_train import DEFAULTS
    from ..atelier.splits import sample
    from ..atelier.world import NOVEL
    from ..generator import load_pipeline
    from .base import resolve_base
    from .dataset import require_usable, scan
    from .train import FinetuneConfig, finetune
    from .words import apply_words, restore_words

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help="figures JSON")
    p.add_argument("--base", type=Path, default=BASE, help="the Atelier generator folder")
    p.add_argument("--judge", type=Path, default=None, help="judge folder (default: the committed one)")
    p.add_argument("--work", type=Path, default=Path("build/finetune_atelier"), help="data and run folder")
    p.add_argument("--images", type=int, default=200, help="captioned renderings to train on")
    p.add_argument(
        "--prior",
        type=int,
        default=200,
        help="renderings of the trained world for prior preservation (0: none)",
    )
    p.add_argument("--prior-weight", type=float, default=None, help="weight of the prior loss (default: 1)")
    p.add_argument("--eval", type=int, default=400, help="prompts of each kind to measure on")
    p.add_argument("--steps", type=int, default=None, help="training steps (default: tdri finetune's)")
    p.add_argument("--lr", type=float, default=None, help="learning rate (default: tdri finetune's)")
    p.add_argument("--lr-schedule", choices=("constant", "cosine"), default=None)
    p.add_argument(
        "--learn-word",
        action="append",
        default=None,
        help="learn this word's token embedding with the LoRA (tdri finetune --learn-word; repeatable; "
        "default: the novel colour's name)",
    )
    p.add_argument("--no-learn-word", action="store_true", help="the LoRA alone, no word learnt")
    p.add_argument("--word-lr", type=float, default=None)
    p.add_argument("--words-only", action="store_true", help="learn only the words; the LoRA stays zero")
    p.add_argument(
        "--caption-dropout",
        type=float,
        default=None,
        help="share of empty captions (default: tdri finetune's)",
    )
    p.add_argument(
        "--target-modules",
        default=None,
        help="comma-separated module names the LoRA wraps (default: tdri finetune's)",
    )
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--grid", type=Path, default=None, help="PNG: novel prompts, base (top) and fine-tuned")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.monotonic()

    the_judge = judge_mod.load(args.judge) if args.judge else judge_mod.load_bundled()
    data = args.work / "data"
    captions = build_folder(data, args.images)
    report = scan(data, min_side=32)
    require_usable(report)
    prior = None
    prior_captions: list[str] = []
    if args.prior > 0:
        prior_captions = build_prior_folder(args.work / "prior", args.prior)
        prior = scan(args.work / "prior", min_side=32, what="prior", flag="--prior")
        require_usable(prior)
    config = FinetuneConfig()
    config = config.replace(
        **({"steps": args.steps} if args.steps else {}),
        **({"lr": args.lr} if args.lr else {}),
        **({"prior_weight": args.prior_weight} if args.prior_weight is not None else {}),
        **({"caption_dropout": args.caption_dropout} if args.caption_dropout is not None else {}),
        **({"lr_schedule": args.lr_schedule} if args.lr_schedule else {}),
        learn_words=() if args.no_learn_word else tuple(args.learn_word or NOVEL.values()),
        **({"word_lr": args.word_lr} if args.word_lr else {}),
        **({"train_lora": False} if args.words_only else {}),
        **({"target_modules": tuple(args.target_modules.split(","))} if args.target_modules else {}),
    )
    config = config.replace(validation_prompt=captions[0], validation_steps=int(DEFAULTS["steps"]))
    base = resolve_base(str(args.base))
    result = finetune(
        base, report, config, args.work / "run", trigger_words=tuple(NOVEL.values()), prior=prior
    )
    train_s = time.monotonic() - t0

    class Spec:
        kind = "sd15"
        role = "generator"
        options: dict[str, Any] = {}

    pipe = load_pipeline(base.path, Spec(), torch.device("cpu"), torch.float32)
    steps, guidance = int(DEFAULTS["steps"]), float(DEFAULTS["guidance"])
    sets = {
        "novel": sample("novel", args.eval, 1),  # other teal records than the training ones
        "heldout": sample("heldout", args.eval, 7),  # the trained world (gen_eval's prompts)
    }
    figures: dict[str, Any] = {}
    for name, samples in sets.items():
        prompts = [full_caption(s.record, s.seed) for s in samples]
        records = [s.record for s in samples]
        seeds = list(range(len(prompts)))
        base_images = generate(pipe, prompts, seeds, steps, guidance)
        pipe.load_lora_weights(str(result.lora_dir), adapter_name="teal")
        replaced = apply_words(pipe, result.lora_dir)  # the learnt words' rows, if any
        tuned_images = generate(pipe, prompts, seeds, steps, guidance)
        restore_words(pipe, replaced)
        pipe.unload_lora_weights()
        if name == "novel" and args.grid is not None:
            args.grid.parent.mkdir(parents=True, exist_ok=True)
            grid(base_images[:10] + tuned_images[:10], cols=10, scale=2).save(args.grid)
        figures[name] = {
            "prompts": len(prompts),
            "example_prompt": prompts[0],
            "base": found_shares(the_judge, base_images, records),
            "finetuned": found_shares(the_judge, tuned_images, records),
        }
    novel = figures["novel"]
    summary = {
        "teal_read_base": novel["base"]["colour_read"].get("teal", 0.0),
        "teal_read_finetuned": novel["finetuned"]["colour_read"].get("teal", 0.0),
        "other_aspects_heldout_base": {
            a: v for a, v in figures["heldout"]["base"].items() if a != "colour_read"
        },
        "other_aspects_heldout_finetuned": {
            a: v for a, v in figures["heldout"]["finetuned"].items() if a != "colour_read"
        },
    }
    judged = verdict(summary)
    out = {
        "verdict": judged,
        "command": "python -m tdri_engine.finetune.demo_atelier "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "summary": summary,
        "training": {
            "images": len(report.examples),
            "example_caption": captions[0],
            "config": config.to_dict(),
            "steps": result.steps,
            "seconds": result.seconds,
            "final_loss_mean_last_50": round(sum(result.losses[-50:]) / len(result.losses[-50:]), 4),
            "prior": None
            if prior is None
            else {
                "images": len(prior.examples),
                "split": "train",
                "data_seed": PRIOR_DATA_SEED,
                "example_caption": prior_captions[0],
                "weight": config.prior_weight,
                "final_prior_loss_mean_last_50": round(
                    sum(result.prior_losses[-50:]) / len(result.prior_losses[-50:]), 4
                ),
            },
        },
        "generation": {"steps": steps, "guidance": guidance, "image_seeds": "0..n-1 on both models"},
        "figures": figures,
        "wall_s": round(time.monotonic() - t0, 1),
        "train_wall_s": round(train_s, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(summary, indent=2))
    print(judged["text"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
