"""``tdri eval``: run the evaluation protocol and write its report.

    tdri eval --profile P --targets N --rounds R --conditions a,b,c --out DIR [--resume]

``--targets-from world`` (default) draws held-out Atelier records; a path reads target images
with prompts (``users.file_targets``). ``--rounds`` counts round 0, as ``tdri refine`` does.
``tdri eval report --out DIR`` rewrites the report from the sessions already in DIR.
Nothing heavy is imported until the command runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..validation import terminal_safe


def register(sub: Any) -> None:
    ev = sub.add_parser(
        "eval",
        help="measure TDRI against baselines and ablations with simulated users (report + plots)",
        description="Simulated users with hidden targets run every condition on the same targets "
        "and seeds; each finished session is appended to DIR/sessions-p<k>.jsonl (resumable with "
        "--resume); DIR/report.md holds the tables, DIR/plot_*.png the curves. "
        "Conditions: single, augment, random, tdri, tdri-ao, ao-sample, scratch, no-ae, "
        "vlm:PROFILE, or all.",
    )
    ev.add_argument("--profile", default="demo", help="model profile (default demo)")
    ev.add_argument("--targets", type=int, default=50, help="how many targets (default 50)")
    ev.add_argument("--rounds", type=int, default=8, help="turns per session, round 0 included (default 8)")
    ev.add_argument("--conditions", default="all", help="comma-separated conditions (default all)")
    ev.add_argument("--out", type=Path, help="output folder (required unless 'report' only)")
    ev.add_argument("--resume", action="store_true", help="continue a killed run in --out")
    ev.add_argument(
        "--targets-from",
        default="world",
        help="'world' (held-out Atelier records) or a JSONL / folder of target images with prompts",
    )
    ev.add_argument("--target-seed", type=int, default=0, help="which world targets (default 0)")
    ev.add_argument("--seed", type=int, default=0, help="session seeds start here (default 0)")
    ev.add_argument("--steps", type=int, default=None, help="denoising steps (default: the profile's)")
    ev.add_argument("--size", type=int, default=None, help="image side in pixels (default: settings)")
    ev.add_argument(
        "--device", default="auto", help="auto, cpu, cuda, cuda:N (accelerate sets it per process)"
    )
    ev.add_argument("--dtype", default="auto", choices=("auto", "fp16", "bf16", "fp32"))
    ev.add_argument("--judge", type=Path, default=None, help="a trained Atelier judge folder (world targets)")
    ev.add_argument(
        "--score-profile", default=None, help="profile whose clip/blip measure (default: --profile)"
    )
    ev.add_argument(
        "--threshold", type=float, default=0.80, help="I2I CLIP counted as satisfied without a judge (0.80)"
    )
    ev.add_argument("--augmenter", default="auto", choices=("auto", "llm", "rules"))
    ev.add_argument("--no-pose", action="store_true", help="run without the round-0 pose constraint")
    ev.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an engine setting for every condition, e.g. --set dpo_steps=20 (JSON values; repeatable)",
    )
    ev.add_argument("--report-only", action="store_true", help="rewrite the report from DIR's sessions")
    ev.set_defaults(func=_eval)


def _eval(args: argparse.Namespace) -> int:
    from ..errors import BadInput

    if args.out is None:
        raise BadInput("--out is required.", "Name a folder for the sessions and the report: --out DIR.")
    if args.report_only:
        from .report import write_report

        path = write_report(args.out)
        print(terminal_safe(str(path)))
        return 0
    from .runner import WORLD, EvalConfig, EvalRun

    settings = _settings(args.set)
    source = args.targets_from
    if source != WORLD:
        source = str(Path(source).resolve())
    config = EvalConfig(
        profile=args.profile,
        targets=args.targets,
        rounds=args.rounds,
        conditions=[c for c in args.conditions.split(",") if c.strip()],
        out=str(args.out),
        source=source,
        target_seed=args.target_seed,
        seed=args.seed,
        steps=args.steps,
        size=args.size,
        device=args.device,
        dtype=args.dtype,
        judge=str(args.judge.resolve()) if args.judge else None,
        score_profile=args.score_profile,
        threshold=args.threshold,
        augmenter=args.augmenter,
        use_pose=not args.no_pose,
        settings=settings,
    )
    config.check()  # bad arguments cost nothing: before any model loads
    run = EvalRun(config)
    result = run.run(resume=args.resume)
    print(
        terminal_safe(f"{result['ran']} sessions run, {result['skipped']} kept; report: {result['report']}"),
        flush=True,
    )
    return 0


def _settings(items: list[str]) -> dict[str, Any]:
    """``--set key=value`` pairs, values read as JSON (``true``, ``20``, ``"x"``) or else as text;
    checked against EngineSettings before any model loads."""
    import json

    from ..errors import BadInput
    from ..settings import EngineSettings

    out: dict[str, Any] = {}
    known = set(EngineSettings().to_dict())
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or key not in known:
            raise BadInput(
                f"--set {item!r} is not KEY=VALUE with a known setting.",
                f"Settings: {', '.join(sorted(known))}.",
            )
        try:
            out[key] = json.loads(raw)
        except ValueError:
            out[key] = raw
    EngineSettings().replace(**out)  # BadInput now, naming the bad value
    return out
