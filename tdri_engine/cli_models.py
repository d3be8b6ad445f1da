"""``tdri models``: build the demo models, and check which models a profile finds on this machine.

    tdri models demo [--dest DIR] [--atelier-dest DIR] [--force]
    tdri models check [--profile NAME]
    tdri models calibrate [--profile NAME] [--prompts FILE] [--target-rate R] [--out FILE] [--save]

``check`` prints one row per role (kind, source, found, missing or refused, where it looked,
how to fix) and exits 0 only when every required role is found and no role is refused by the
trust policy (a folder with custom code or only pickled weights; see ``tdri_engine.trust``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "models",
        help="build the demo models, check which models a profile finds",
        description="Model weights: the tiny demo models and the models check.",
    )
    sub = parser.add_subparsers(dest="models_command", metavar="SUBCOMMAND")
    demo = sub.add_parser(
        "demo",
        help="install the Atelier's trained models and build the tiny random demo models (offline, seconds)",
        description="Install the Atelier's trained models shipped with the engine (copied, hashes "
        "checked) for the 'atelier' profile, and build tiny models with random weights for every "
        "role ('demo' profile, and the Atelier's roles without a trained model), so the whole loop "
        "runs on a machine without real weights.",
    )
    demo.add_argument(
        "--dest", type=Path, default=None, help="folder to build into (default: <TDRI_HOME>/models/demo)"
    )
    demo.add_argument(
        "--atelier-dest",
        type=Path,
        default=None,
        help="folder to install the Atelier's trained models into (default: <TDRI_HOME>/models/atelier; "
        "with only --dest they are not installed)",
    )
    demo.add_argument("--force", action="store_true", help="rebuild even the models that are already there")
    demo.set_defaults(func=_demo)
    check = sub.add_parser(
        "check",
        help="list each role of a profile: found where, or missing and how to provide it",
        description="Resolve every role of a model profile offline and report what is missing.",
    )
    check.add_argument("--profile", default="sd15", help="profile name or profile JSON path (default: sd15)")
    check.set_defaults(func=_check)
    cal = sub.add_parser(
        "calibrate",
        help="set a profile's tau and A&E threshold from its own models' scores over a prompt set",
        description="Generate one image per prompt on the profile's models, score the ambiguity A "
        "(eq. 5, s_i = CLIP(image, caption_i)) and 1 - CLIP(image, prompt), and print the tau and "
        "A&E threshold that give the target rates, with the rates the current values imply.",
    )
    cal.add_argument("--profile", default="demo", help="profile name or profile JSON path (default: demo)")
    cal.add_argument(
        "--prompts", type=Path, default=None, help="text file, one prompt per line (default: built-in set)"
    )
    cal.add_argument(
        "--target-rate", type=float, default=None, help="share of rounds that should ask (default 0.5)"
    )
    cal.add_argument(
        "--ae-target-rate",
        type=float,
        default=None,
        help="share of rounds that should use Attend-and-Excite (default 0.31, the paper's table 6)",
    )
    cal.add_argument("--seed", type=int, default=0, help="seed of the first prompt's image (default 0)")
    cal.add_argument(
        "--out",
        type=Path,
        default=None,
        help="JSON file to write (default: <TDRI_HOME>/calibration/<profile>.json)",
    )
    cal.add_argument(
        "--save",
        action="store_true",
        help="also store the thresholds in the user profile <TDRI_HOME>/profiles/<profile>.json",
    )
    cal.set_defaults(func=_calibrate)
    parser.set_defaults(func=lambda args: _help(parser))


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _demo(args: argparse.Namespace) -> int:
    from .demo import build_demo_models
    from .paths import demo_models_dir

    dest = args.dest or demo_models_dir()
    print(f"Building the demo models (tiny, random weights) into {dest} ...", file=sys.stderr)
    start = time.monotonic()
    built = build_demo_models(
        dest,
        force=args.force,
        on_progress=lambda step, total, msg: print(f"  [{step}/{total}] {msg}", file=sys.stderr),
    )
    for role, path in built.items():
        print(f"{role:<11} {path}")
    if args.dest is None or args.atelier_dest is not None:
        from .demo.atelier import atelier_models_dir, committed_roles, install_atelier_models

        there = args.atelier_dest or atelier_models_dir()
        trained = ", ".join(committed_roles()) or "none committed yet"
        print(f"Installing the Atelier's trained models ({trained}) into {there} ...", file=sys.stderr)
        roles = install_atelier_models(
            there,
            force=args.force,
            demo=False,  # built just above
            on_progress=lambda step, total, msg: print(f"  [{step}/{total}] {msg}", file=sys.stderr),
        )
        for role, path in roles.items():
            print(f"atelier {role:<11} {path}")
    print(
        f"Done in {time.monotonic() - start:.1f} s. Use them with --profile atelier (trained) "
        "or --profile demo (tiny random).",
        file=sys.stderr,
    )
    return 0


def _check(args: argparse.Namespace) -> int:
    from .models import check_profile, list_profiles, load_profile
    from .validation import terminal_safe as t

    # a profile can come from a shared project: every name, path and reason in it is shown escaped
    profile = load_profile(args.profile)
    statuses = check_profile(profile)
    print(f"Profile '{t(profile.name)}'" + (" (demo: tiny random models)" if profile.is_demo else ""))
    if profile.description:
        print(f"  {t(profile.description)}")
    width = max(len(t(s.source)) for s in statuses)
    print(f"{'role':<11} {'kind':<19} {'source':<{width}}  status")
    for s in statuses:
        if s.refused:
            state = "REFUSED" if s.required else "refused (optional)"
        else:
            state = "found" if s.found else ("MISSING" if s.required else "missing (optional)")
        print(f"{s.role:<11} {t(s.kind):<19} {t(s.source):<{width}}  {state}")
        if s.found:
            print(f"{'':<11} at {t(s.path)}")
        elif s.refused:
            print(f"{'':<11} at {t(s.path)}")
            print(f"{'':<11} refused: {t(s.reason)}")
            print(f"{'':<11} fix: {t(s.what_to_do)}")
        else:
            for place in s.looked_in:
                print(f"{'':<11} looked in {t(place)}")
            if s.reason:
                print(f"{'':<11} {t(s.reason)}")
            print(f"{'':<11} fix: {t(s.what_to_do)}")
    lora_problem = _check_domain_lora(profile)
    refused = [s.role for s in statuses if s.refused]
    if refused:  # even an optional role: a folder with custom code or pickles is never "fine"
        print(
            f"Refused by the trust policy (custom code or pickled weights): {', '.join(refused)}.",
            file=sys.stderr,
        )
    missing = [s.role for s in statuses if s.required and not s.found and not s.refused]
    if missing:
        print(f"Missing required roles: {', '.join(missing)}.", file=sys.stderr)
    others = [n for n in list_profiles() if n != profile.name]
    print(f"Other profiles here: {', '.join(t(n) for n in others)} (tdri models check --profile NAME).")
    if refused or missing or lora_problem:
        return 1
    print("All required models were found.")
    return 0


def _check_domain_lora(profile: Any) -> str:
    """Print the profile's domain LoRA (``tdri finetune``); returns why it is unusable, or ""."""
    if profile.domain_lora is None:
        return ""
    from .finetune.profiles import domain_lora_problem
    from .validation import terminal_safe as t

    lora = profile.domain_lora
    problem = domain_lora_problem(profile)
    words = ", ".join(lora.trigger_words)
    print(
        f"{'domain LoRA':<11} weight {lora.weight:g}"
        + (f", trigger words: {t(words)}" if words else "")
        + ("  UNUSABLE" if problem else "  found")
    )
    print(f"{'':<11} at {t(lora.path)}")
    if problem:
        print(f"{'':<11} {t(problem)}")
        print(f"{'':<11} fix: run `tdri finetune` again, or remove 'domain_lora' from the profile JSON.")
        print("The profile's domain LoRA cannot be used: images would be made without it.", file=sys.stderr)
    return problem


def _calibrate(args: argparse.Namespace) -> int:
    import dataclasses

    from . import calibration, paths
    from .errors import BadInput
    from .models import load_profile, save_profile
    from .session import Engine
    from .validation import terminal_safe

    profile = load_profile(args.profile)
    prompts = calibration.read_prompts(args.prompts) if args.prompts else list(calibration.BUILTIN_PROMPTS)
    target = calibration.DEFAULT_QUESTION_RATE if args.target_rate is None else args.target_rate
    ae_target = calibration.DEFAULT_AE_RATE if args.ae_target_rate is None else args.ae_target_rate
    if args.save and profile.is_demo:
        raise BadInput(
            "The demo profile's thresholds are built in; --save is for real profiles.",
            "Leave out --save (the JSON is written), or calibrate a real profile.",
        )
    print(f"Calibrating '{terminal_safe(profile.name)}' on {len(prompts)} prompts ...", file=sys.stderr)
    start = time.monotonic()
    result = calibration.calibrate(
        Engine(profile),
        prompts,
        target_rate=target,
        ae_target_rate=ae_target,
        seed=args.seed,
        on_progress=lambda i, n, msg: print(f"  [{i}/{n}] {terminal_safe(msg)}", file=sys.stderr),
    )
    for line in result.summary_lines():
        print(terminal_safe(line))
    out = args.out or paths.tdri_home() / "calibration" / f"{profile.name}.json"
    calibration.write_result(result, out)
    print(f"Wrote {out} in {time.monotonic() - start:.0f} s.", file=sys.stderr)
    if args.save:
        saved = save_profile(dataclasses.replace(profile, thresholds=result.thresholds()))
        print(f"Stored tau {result.tau:.4f} and A&E threshold {result.ae_threshold:.4f} in {saved}.")
    return 0
