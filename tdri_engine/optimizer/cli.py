"""``tdri train``, ``tdri adapters ...`` and ``tdri export pairs``.

tdri train --project DIR [--steps N] [--lr X] [--lambda-ae X] [--controlnet] [--scope project|user]
           [--profile NAME]
tdri adapters list|rollback --project DIR [--scope project|user]
tdri adapters activate VERSION --project DIR [--scope project|user]   (VERSION "base": none)
tdri adapters scope project|user --project DIR
tdri export pairs --project DIR [--project DIR ...] --format parquet|jsonl [--out FILE]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..errors import BadInput
from ..records import now_iso
from ..validation import check_output_path, terminal_safe


def register(subparsers: argparse._SubParsersAction) -> None:
    train = subparsers.add_parser(
        "train",
        help="run one Diffusion-DPO update of the project's LoRA from its preference pairs",
        description="Trains a new adapter version on the choices not yet used, writes loras/vNNNN/ "
        "and activates it unless it looks suspect (loss spike, falling implicit accuracy).",
    )
    train.add_argument("--project", required=True, type=Path, help="project folder")
    train.add_argument(
        "--steps", type=int, default=None, help="optimizer steps (default: the project's dpo_steps)"
    )
    train.add_argument("--scope", choices=("project", "user"), default=None, help="default: the project's")
    train.add_argument("--profile", default=None, help="model profile (default: the project's)")
    train.add_argument("--lr", type=float, default=None, help="learning rate (default: the project's dpo_lr)")
    train.add_argument("--batch-size", type=int, default=None, help="pairs per step (default: 4)")
    train.add_argument("--rank", type=int, default=None, help="LoRA rank of a first version (default: 8)")
    train.add_argument(
        "--lambda-ae",
        type=float,
        default=None,
        metavar="X",
        help="weight of L_AE in L = L_DPO + lambda L_AE (eq. 9; default: the project's dpo_lambda_ae)",
    )
    train.add_argument(
        "--controlnet",
        action="store_true",
        default=None,
        help="tune a LoRA on the pose ControlNet instead of the UNet (eq. 9); rounds with a pose load it",
    )
    train.set_defaults(func=_train)

    adapters = subparsers.add_parser("adapters", help="list, activate or roll back adapter versions")
    sub = adapters.add_subparsers(dest="adapters_command", metavar="ACTION")
    adapters.set_defaults(func=lambda args: adapters.print_help() or 2)
    for name, helptext, func in (
        ("list", "list the adapter versions (* marks the active one)", _list),
        ("rollback", "go back to the active version's parent", _rollback),
    ):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("--project", required=True, type=Path, help="project folder")
        p.add_argument("--scope", choices=("project", "user"), default=None, help="default: the project's")
        p.set_defaults(func=func)
    p = sub.add_parser("activate", help="make a version the active adapter ('base' for none)")
    p.add_argument("version", help="version id such as v0003, or 'base'")
    p.add_argument("--project", required=True, type=Path, help="project folder")
    p.add_argument("--scope", choices=("project", "user"), default=None, help="default: the project's")
    p.set_defaults(func=_activate)
    p = sub.add_parser("scope", help="generate with the project's own adapter or the user's generalised one")
    p.add_argument("scope", choices=("project", "user"))
    p.add_argument("--project", required=True, type=Path, help="project folder")
    p.set_defaults(func=_scope)

    export = subparsers.add_parser("export", help="export preference pairs for training elsewhere")
    esub = export.add_subparsers(dest="export_command", metavar="WHAT")
    export.set_defaults(func=lambda args: export.print_help() or 2)
    p = esub.add_parser(
        "pairs",
        help="preference pairs as Parquet or JSONL (caption, jpg_0, jpg_1, label_0)",
        description="Columns of the public Diffusion-DPO code: caption, jpg_0, jpg_1 (JPEG bytes in "
        "Parquet; paths relative to the file in JSONL), label_0 (1 left won, 0 right won, 0.5 tie).",
    )
    p.add_argument("--project", required=True, type=Path, action="append", help="project folder (repeatable)")
    p.add_argument("--format", choices=("parquet", "jsonl"), default="parquet")
    p.add_argument("--out", type=Path, default=None, help="default: <project>/exports/pairs-<time>.<format>")
    p.set_defaults(func=_export_pairs)


def _open(path: Path, *, read_only: bool = False) -> Any:
    from ..store import open_project

    return open_project(path, read_only=read_only)


def _train(args: argparse.Namespace) -> int:
    from ..events import AdapterReady, TrainingProgress, Warning_
    from ..models import ModelRegistry, load_profile
    from .adapters import adapter_scope
    from .trainer import config_from_settings, run_update

    with _open(args.project) as store:
        settings = store.settings
        config = config_from_settings(
            settings,
            steps=args.steps,
            lr=args.lr,
            batch_size=args.batch_size,
            rank=args.rank,
            lambda_ae=args.lambda_ae,
            train_controlnet=args.controlnet,
        )
        scope = args.scope or adapter_scope(store)
        registry = ModelRegistry(
            load_profile(args.profile or store.profile),
            device=settings.device,
            dtype=settings.dtype,
            cpu_offload=settings.cpu_offload,
        )

        def on_event(event: Any) -> None:
            if isinstance(event, TrainingProgress):
                if event.step == 1 or event.step == event.total or event.step % 10 == 0:
                    print(
                        f"step {event.step}/{event.total}  loss {event.loss:.4f}  "
                        f"implicit accuracy {event.implicit_accuracy:.2f}",
                        flush=True,
                    )
            elif isinstance(event, Warning_):
                print(f"warning: {event.message}", file=sys.stderr)
            elif isinstance(event, AdapterReady):
                print(event.message)

        version = run_update(store, registry, settings, config=config, scope=scope, on_event=on_event)
        print(f"{version.id}: {version.status}, {version.pairs_used} pairs, {version.steps} steps")
        return 0


def _list(args: argparse.Namespace) -> int:
    from .adapters import active_version_id, adapter_scope, describe, list_versions

    with _open(args.project, read_only=True) as store:
        scope = args.scope or adapter_scope(store)
        versions = list_versions(store, scope)
        print(f"Adapter scope: {scope}; active: {active_version_id(store, scope) or 'base model'}")
        if not versions:
            print("No adapter versions yet: record choices, then run `tdri train`.")
        for v in versions:
            print(describe(store, v))
    return 0


def _activate(args: argparse.Namespace) -> int:
    from .adapters import activate

    with _open(args.project) as store:
        version = activate(store, None if args.version == "base" else args.version, scope=args.scope)
        print(f"Active adapter: {version.id if version else 'none (base model)'}")
    return 0


def _rollback(args: argparse.Namespace) -> int:
    from .adapters import rollback

    with _open(args.project) as store:
        parent = rollback(store, scope=args.scope)
        print(f"Rolled back; active adapter: {parent.id if parent else 'none (base model)'}")
    return 0


def _scope(args: argparse.Namespace) -> int:
    from .adapters import set_adapter_scope

    with _open(args.project) as store:
        set_adapter_scope(store, args.scope)
        print(f"{terminal_safe(store.name)} now generates with the {args.scope} adapter.")
    return 0


def _export_pairs(args: argparse.Namespace) -> int:
    from contextlib import ExitStack

    from .export import export_pairs
    from .schedule import left_out_choices

    out = args.out
    if out is not None:  # checked before any project opens: an export never replaces their files
        out = check_output_path(out, also=_pairs_beside(out, args.format))
    with ExitStack() as stack:
        stores = [stack.enter_context(_open(p, read_only=True)) for p in args.project]
        if out is None:
            stamp = now_iso().replace(":", "").replace("+0000", "Z")
            out = stores[0].exports_dir / f"pairs-{stamp}.{args.format}"
        skipped: list[str] = []
        n = export_pairs(stores, out, args.format, skipped=skipped)
        both_bad = sum(left_out_choices(store)[1] for store in stores)
    for line in skipped:
        print(f"skipped {terminal_safe(line)}", file=sys.stderr)
    print(f"Wrote {n} pairs to {terminal_safe(out)}")
    if both_bad:
        print(f"Left out {both_bad} 'both bad' choice{'s' if both_bad != 1 else ''}: they name no winner.")
    return 0


def _pairs_beside(out: Path, fmt: str) -> tuple[Path, ...]:
    """What a JSONL export writes beside ``out``: its ``<stem>_images/`` folder, which replaces
    an earlier one; refused when a folder of that name holds anything but an export's JPEGs."""
    if fmt != "jsonl":
        return ()
    images = out.with_name(out.stem + "_images")
    if images.is_symlink() or (images.exists() and not images.is_dir()):
        raise BadInput(f"{terminal_safe(images)} is in the way of the export's image folder.", _MOVE_IT)
    if images.is_dir() and any(not (p.is_file() and p.suffix == ".jpg") for p in images.iterdir()):
        raise BadInput(
            f"{terminal_safe(images)} already exists and holds files this export did not write; "
            "the export would replace that folder.",
            _MOVE_IT,
            kind="protected-path",
        )
    return (images,)


_MOVE_IT = "Choose another --out, or move that folder away. Nothing was written."
