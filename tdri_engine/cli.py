"""``tdri``: the engine's command line, for people and scripts.

Each group of subcommands lives beside the code it drives and registers itself here:
``tdri_engine.cli_models`` (models demo/check), ``tdri_engine.cli_session`` (generate, refine),
``tdri_engine.optimizer.cli`` (train, adapters, export), ``tdri_engine.store.cli`` (project tools).
``tdri_engine.bench.cli`` (bench generate, bench round: the engine against plain diffusers);
``tdri_engine.evaluation.cli`` (eval: the paper's protocol with simulated users, report and plots);
``tdri_engine.selftest`` (self-test: a round, a choice and a DPO step on the demo models);
``tdri_engine.finetune.cli`` (finetune: a domain LoRA from a captioned folder, as a profile);
the other benchmarks are scripts under ``tests/bench/`` (JSON out).
Errors print their message and what to do, and exit non-zero; no traceback for expected failures.
Every print of user text (names, prompts, tags, paths) goes through ``validation.terminal_safe``:
a project name cannot clear the screen. Text and paths are checked before any model loads.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .errors import TdriError
from .validation import terminal_lines

# module path of each subcommand group; each module defines register(subparsers)
COMMAND_MODULES = (
    "tdri_engine.cli_models",
    "tdri_engine.cli_session",
    "tdri_engine.optimizer.cli",
    "tdri_engine.store.cli",
    "tdri_engine.bench.cli",
    "tdri_engine.atelier.cli",
    "tdri_engine.evaluation.cli",
    "tdri_engine.selftest",
    "tdri_engine.finetune.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tdri",
        description="TDRI engine: dialogue-driven image generation and preference learning.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # group not present in this build
                continue
            raise
        module.register(sub)
    return parser


def print_error(exc: TdriError) -> int:
    """Print a TdriError's message and what to do on stderr; returns the exit status 1.

    Messages quote names, prompts and paths: shown escaped, they cannot drive the terminal."""
    print(f"error: {terminal_lines(exc.message)}", file=sys.stderr)
    if exc.what_to_do:
        print(f"what to do: {terminal_lines(exc.what_to_do)}", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except TdriError as exc:
        return print_error(exc)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
