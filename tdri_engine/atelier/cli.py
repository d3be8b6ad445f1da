"""``tdri world``: render samples of the Atelier world and train its models.

``tdri world render --out DIR`` writes a few pictures with their captions (``captions.jsonl``:
record, full caption, one caption per aspect) and, where a mannequin wears the garment, its
OpenPose map. ``tdri world train --out DIR`` trains the roles (``--only judge,clip``) from a
fixed seed, resumable: run the same command again after a kill and it continues.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from ..errors import BadInput


def register(sub: Any) -> None:
    world = sub.add_parser("world", help="the Atelier: a fashion world drawn by the project, and its models")
    wsub = world.add_subparsers(dest="world_command", metavar="WORLD_COMMAND")

    render = wsub.add_parser("render", help="write sample pictures and their captions to a folder")
    render.add_argument("--out", required=True, type=Path, help="folder for the PNGs and captions.jsonl")
    render.add_argument("-n", type=int, default=8, help="how many samples (default 8)")
    render.add_argument("--split", default="train", choices=("train", "heldout"))
    render.add_argument("--seed", type=int, default=0, help="data seed")
    render.add_argument("--size", type=int, default=256, help="image side in pixels (default 256)")
    render.set_defaults(func=_render)

    train = wsub.add_parser("train", help="train the Atelier's models (resumable)")
    train.add_argument(
        "--out", required=True, type=Path, help="folder for data cache, checkpoints and models"
    )
    train.add_argument("--only", default="judge,clip", help="comma-separated roles (default judge,clip)")
    train.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    train.add_argument("--steps", type=int, default=None, help="steps per role (default: the recipe's)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--n-train", type=int, default=12000, help="training renderings")
    train.add_argument("--n-heldout", type=int, default=2000, help="held-out renderings")
    train.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    train.set_defaults(func=_train)
    ev = wsub.add_parser(
        "eval", help="held-out figures of each role's latest checkpoint in a training folder"
    )
    ev.add_argument("--out", required=True, type=Path, help="the folder `tdri world train` wrote")
    ev.add_argument("--only", default="judge,clip", help="comma-separated roles (default judge,clip)")
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--n-train", type=int, default=12000, help="as given to train (finds the data hash)")
    ev.add_argument("--n-heldout", type=int, default=2000, help="held-out renderings")
    ev.add_argument("--figures", type=Path, default=None, help="also write the figures to this JSON file")
    ev.set_defaults(func=_eval)
    world.set_defaults(func=lambda args: world.print_help() or 2)


def _render(args: argparse.Namespace) -> int:
    from .captions import aspect_captions, full_caption
    from .splits import sample
    from .world import keypoints, pose_map, render

    if args.n < 1 or args.n > 10_000:
        raise BadInput("-n must be between 1 and 10000.", "Ask for fewer samples.")
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, s in enumerate(sample(args.split, args.n, args.seed)):
        name = f"{args.split}-{i:04d}.png"
        render(s.record, s.seed, args.size).save(out / name)
        entry = {
            "image": name,
            "seed": s.seed,
            "record": s.record.as_dict(),
            "caption": full_caption(s.record, s.seed),
            "aspects": aspect_captions(s.record, s.seed),
        }
        pm = pose_map(s.record, (args.size, args.size), s.seed)
        if pm is not None:
            pm.save(out / f"{args.split}-{i:04d}-pose.png")
            entry["pose"] = f"{args.split}-{i:04d}-pose.png"
            entry["keypoints"] = keypoints(s.record, (args.size, args.size), s.seed)
        lines.append(json.dumps(entry))
    (out / "captions.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {args.n} pictures and captions.jsonl to {out}")
    return 0


def _train(args: argparse.Namespace) -> int:
    import torch

    from . import data
    from .recipe import RunConfig, train_role
    from .roles import DEFAULT_LR, DEFAULT_STEPS, TRAIN_SPLIT, make_role

    roles = _roles(args.only)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise BadInput("--device cuda was asked for, but torch sees no GPU here.", "Use --device cpu.")
    if args.device == "cuda":
        torch.set_default_device("cuda")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.steps is not None and args.steps < 1:
        raise BadInput("--steps must be at least 1.", "Give a positive number of steps.")
    out: Path = args.out
    cache = out / "data"

    def rendering(split: str) -> Any:
        def show(done: int, total: int) -> None:
            sys.stderr.write(f"\r[render {split}] {done}/{total}")
            sys.stderr.flush()

        return show

    t0 = time.monotonic()
    sets = {
        split: data.build(split, args.n_train, args.seed, 64, cache, rendering(split))
        for split in sorted({TRAIN_SPLIT[r] for r in roles})
    }
    heldout = data.build("heldout", args.n_heldout, args.seed, 64, cache, rendering("heldout"))
    sys.stderr.write("\n")
    summary_roles: dict[str, Any] = {}
    summary: dict[str, Any] = {"render_s": round(time.monotonic() - t0, 1), "roles": summary_roles}
    for name in roles:
        steps = args.steps or DEFAULT_STEPS[name]
        role = make_role(name, sets[TRAIN_SPLIT[name]], heldout, args.seed, steps, out=out)
        result = train_role(role, RunConfig(steps=steps, seed=args.seed, lr=DEFAULT_LR[name]), out)
        summary_roles[name] = {
            "steps": steps,
            "wall_s": round(result.wall_s, 1),
            "heldout": result.figures,
        }
        aspects = ", ".join(f"{a} {v:.3f}" for a, v in result.figures.get("aspects", {}).items())
        print(f"{name}: held-out {aspects}  ({result.wall_s:.0f} s) -> {result.folder / 'model'}")
    (out / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return 0


def _roles(only: str) -> list[str]:
    from .roles import ROLES

    roles = [r.strip() for r in only.split(",") if r.strip()]
    unknown = [r for r in roles if r not in ROLES]
    if unknown or not roles:
        raise BadInput(
            f"Unknown role(s): {', '.join(unknown) or '(none)'}.", f"Use --only with: {', '.join(ROLES)}."
        )
    return roles


def _eval(args: argparse.Namespace) -> int:
    import torch

    from . import data
    from .recipe import load_checkpoint
    from .roles import TRAIN_SPLIT, make_role

    roles = _roles(args.only)
    cache = args.out / "data"
    heldout = data.build("heldout", args.n_heldout, args.seed, 64, cache)
    figures: dict[str, Any] = {"command": "tdri " + " ".join(sys.argv[1:]), "roles": {}}
    for name in roles:
        train = data.build(TRAIN_SPLIT[name], args.n_train, args.seed, 64, cache)
        ckpt = args.out / name / "checkpoint"
        if not (ckpt / "checkpoint.json").is_file():
            raise BadInput(f"No checkpoint of {name} in {ckpt}.", "Train it first with `tdri world train`.")
        role = make_role(name, train, heldout, args.seed, out=args.out)
        torch.manual_seed(args.seed)
        role.build()
        opt = torch.optim.AdamW(role.model.parameters())
        step = load_checkpoint(ckpt, role.model, opt, {})
        meta = json.loads((ckpt / "checkpoint.json").read_text(encoding="utf-8"))
        role.model.eval()
        result = role.evaluate()
        card_file = args.out / name / "card.json"
        card = json.loads(card_file.read_text(encoding="utf-8")) if card_file.is_file() else {}
        figures["roles"][name] = {
            "trained_on": TRAIN_SPLIT[name],
            "train_wall_s_last_run": card.get("train_wall_s_this_run"),
            "data_hash": train.digest(),
            "step": step,
            "steps_total": meta.get("steps_total"),
            "heldout": result,
        }
        aspects = ", ".join(f"{a} {v:.3f}" for a, v in result.get("aspects", {}).items())
        print(f"{name} at step {step}/{meta.get('steps_total')}: held-out {aspects}")
    if args.figures is not None:
        args.figures.parent.mkdir(parents=True, exist_ok=True)
        args.figures.write_text(json.dumps(figures, indent=2), encoding="utf-8")
    return 0
