"""``tdri finetune``: a domain LoRA from a captioned folder, registered as a model profile.

    tdri finetune --data DIR --base PROFILE_OR_FOLDER --out NAME [--steps N] [--rank R] ...
                  [--prior-data DIR [--prior-weight W]]

The folder is checked first (``dataset.scan``: every problem named, nothing trains on a broken
set unless ``--allow-problems``; a ``--prior-data`` folder gets the same checks); the run lives in ``<TDRI_HOME>/finetunes/NAME`` (``--dir``),
the same command after a kill or Ctrl-C continues from the last checkpoint; at the end the
profile ``NAME`` is written (``profiles.register_profile``). Under ``accelerate launch -m
tdri_engine.finetune ...`` the same options run on every process. Imports nothing heavy at
parse time.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
from pathlib import Path
from typing import Any

from ..errors import BadInput


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data", required=True, type=Path, help="folder of images + captions (.txt or metadata.jsonl)"
    )
    p.add_argument(
        "--base", required=True, help="model profile (demo, atelier, sd15 ...) or a diffusers folder"
    )
    p.add_argument("--out", required=True, help="name of the profile to write (and of the run folder)")
    p.add_argument(
        "--prior-data",
        type=Path,
        default=None,
        help="prior preservation: a second captioned folder (same layouts) of what the base already "
        "draws, e.g. the existing catalogue; each step also trains on a batch of it",
    )
    p.add_argument("--dir", type=Path, default=None, help="run folder (default: <TDRI_HOME>/finetunes/NAME)")
    from .train import FinetuneConfig

    fields = {f.name: f for f in dataclasses.fields(FinetuneConfig)}

    def knob(flag: str, **kw: Any) -> None:  # default and help from FinetuneConfig: one source
        f = fields[flag.lstrip("-").replace("-", "_")]
        default = f.default if f.default is not dataclasses.MISSING else None
        p.add_argument(flag, default=default, help=f"{f.metadata.get('help', '')} (default: {default})", **kw)

    knob("--steps", type=int)
    knob("--lr", type=float)
    knob("--rank", type=int)
    knob("--alpha", type=float)
    knob("--batch-size", type=int)
    knob("--grad-accum", type=int)
    knob("--prior-weight", type=float)
    knob("--caption-dropout", type=float)
    knob("--lr-schedule", choices=("constant", "cosine"))
    knob("--resolution", type=int)
    knob("--crop", choices=("center", "bucket"))
    p.add_argument(
        "--grad-checkpointing", action="store_true", help=fields["grad_checkpointing"].metadata["help"]
    )
    knob("--mixed-precision", choices=("auto", "no", "fp16", "bf16"))
    knob("--seed", type=int)
    knob("--checkpoint-every", type=int)
    knob("--validation-prompt")
    knob("--validation-every", type=int)
    knob("--validation-steps", type=int)
    p.add_argument(
        "--trigger", action="append", default=[], help="a trigger word the captions use (repeatable)"
    )
    p.add_argument(
        "--learn-word",
        action="append",
        default=[],
        help="a word the base does not know (a new colour, a fabric, a product name) whose token "
        "embedding is learnt with the LoRA; prompts without it keep the base's images (repeatable; "
        "SD-1.x bases; also a trigger word)",
    )
    knob("--word-lr", type=float)
    p.add_argument(
        "--words-only",
        action="store_true",
        help="learn only the --learn-word embeddings: the LoRA stays zero, so every prompt without "
        "those words gives exactly the base's image",
    )
    p.add_argument("--weight", type=float, default=1.0, help="the domain LoRA's weight in the profile")
    p.add_argument("--description", default="", help="the profile's description")
    p.add_argument("--min-side", type=int, default=None, help="smallest image side (default: half the size)")
    p.add_argument(
        "--allow-problems", action="store_true", help="train on the usable images of a set with problems"
    )
    p.add_argument("--check-only", action="store_true", help="check the training set and stop")
    p.add_argument("--restart", action="store_true", help="throw an earlier run in the run folder away")


def register(sub: Any) -> None:
    p = sub.add_parser(
        "finetune",
        help="fine-tune the generator on a captioned folder (a domain LoRA) and register it as a profile",
        description="Supervised LoRA fine-tuning (noise prediction on captioned images) of a profile's "
        "generator or a diffusers folder. Checks the folder first, resumes after a kill, writes a "
        "diffusers LoRA and a model profile that carries it.",
    )
    add_arguments(p)
    p.set_defaults(func=run)


def _native_size(folder: Path) -> int | None:
    """The UNet's own image size, read from the configs (no model loaded)."""
    import json

    try:
        unet = json.loads((folder / "unet" / "config.json").read_text(encoding="utf-8"))
        vae = json.loads((folder / "vae" / "config.json").read_text(encoding="utf-8"))
        return int(unet["sample_size"]) * 2 ** (len(vae["block_out_channels"]) - 1)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def config_from_args(args: argparse.Namespace) -> Any:
    from .train import FinetuneConfig

    return FinetuneConfig(
        steps=args.steps,
        lr=args.lr,
        rank=args.rank,
        alpha=args.alpha,
        batch_size=args.batch_size,
        grad_accum=args.grad_accum,
        resolution=args.resolution,
        crop=args.crop,
        grad_checkpointing=args.grad_checkpointing,
        mixed_precision=args.mixed_precision,
        seed=args.seed,
        checkpoint_every=args.checkpoint_every,
        validation_prompt=args.validation_prompt,
        validation_every=args.validation_every,
        validation_steps=args.validation_steps,
        prior_weight=args.prior_weight,
        caption_dropout=args.caption_dropout,
        lr_schedule=args.lr_schedule,
        learn_words=tuple(args.learn_word),
        word_lr=args.word_lr,
        train_lora=not args.words_only,
    )


def run(args: argparse.Namespace) -> int:
    from ..validation import check_text, terminal_lines, terminal_safe
    from .base import resolve_base
    from .dataset import DatasetReport, require_usable, scan
    from .profiles import check_name, profile_data, register_profile, runs_dir

    name = check_name(args.out)
    for word in args.trigger:
        check_text(word, "A trigger word", max_chars=100)
    for word in args.learn_word:
        check_text(word, "A word to learn", max_chars=100)
    args.trigger = list(dict.fromkeys([*args.trigger, *args.learn_word]))  # a learnt word calls it up
    if args.validation_prompt:
        check_text(args.validation_prompt, "The validation prompt", max_chars=2000)
    config = config_from_args(args)  # BadInput on bad numbers, before anything loads
    if not 0 <= args.weight <= 4:
        raise BadInput(f"--weight {args.weight} is out of range.", "Use a weight from 0 to 4 (1 is usual).")
    base = resolve_base(args.base)
    size = config.resolution or _native_size(base.path) or 64
    min_side = args.min_side if args.min_side is not None else size // 2

    def checked(folder: Path, kept: str, **names: str) -> DatasetReport:
        """Scan a folder, print its summary, refuse an unusable one; say what is kept."""
        report = scan(folder, min_side=min_side, **names)
        print(terminal_lines(report.summary()), file=sys.stderr)
        require_usable(report, allow_problems=args.allow_problems)
        if report.problems:
            print(kept.format(n=len(report.examples)), file=sys.stderr)
        return report

    report = checked(args.data, "Training on the {n} usable image(s) only (--allow-problems).")
    prior = None
    if args.prior_data is not None:  # the same checks, before anything loads or trains
        prior = checked(
            args.prior_data,
            "Keeping the prior with its {n} usable image(s) only (--allow-problems).",
            what="prior",
            flag="--prior-data",
        )
    missing = [w for w in args.trigger if not any(w.lower() in ex.caption.lower() for ex in report.examples)]
    unlearnable = [w for w in args.learn_word if w in missing]
    if unlearnable:
        raise BadInput(
            f"No caption in {args.data} uses {', '.join(map(repr, unlearnable))}, so --learn-word has "
            "nothing to learn it from.",
            "Put the word in the captions of the pictures that show it, or leave --learn-word out.",
        )
    if missing:
        print(f"Note: no caption uses the trigger word(s) {', '.join(missing)}.", file=sys.stderr)
    if args.check_only:
        return 0
    folder = args.dir or runs_dir() / name
    if args.restart and folder.exists():
        shutil.rmtree(folder)
    from accelerate import PartialState

    from ..atelier.recipe import ProgressLine
    from .train import finetune, read_checkpoint

    resumed = read_checkpoint(folder / "checkpoint")
    if resumed is not None:
        print(f"Resuming {terminal_safe(folder)} from step {resumed[1].get('step')}.", file=sys.stderr)
    print(
        f"Fine-tuning {terminal_safe(base.name)} ({base.kind}) into {terminal_safe(folder)} ...",
        file=sys.stderr,
    )
    progress = ProgressLine(name, config.steps, int(resumed[1].get("step", 0)) if resumed else 0)

    main_process = PartialState().is_main_process  # one progress line, not one per process

    def on_step(step: int, total: int, loss: float, _eta: float) -> None:
        if main_process:
            progress.update(step, loss, force=step == total)

    try:
        result = finetune(
            base,
            report,
            config,
            folder,
            trigger_words=tuple(args.trigger),
            prior=prior,
            on_step=on_step,
        )
    finally:
        if main_process:
            progress.close()
    if not main_process:
        return 0
    data = profile_data(
        name,
        base,
        result.lora_dir,
        weight=args.weight,
        trigger_words=tuple(args.trigger),
        description=args.description,
        sample_image=result.sample_image,
    )
    target = register_profile(data)
    print(f"LoRA: {terminal_safe(result.lora_dir)}")
    print(f"Sample image: {terminal_safe(result.sample_image)}")
    print(
        f"Profile '{name}' written to {terminal_safe(target)}; choose it in Settings or with --profile {name}."
    )
    return 0
