"""``tdri generate`` and ``tdri refine``: one image, or a whole refinement dialogue, from a shell.

    tdri generate --prompt TEXT [--seed N] [--profile demo] [--steps N] [--size WxH] --out FILE
    tdri refine --project DIR --prompt TEXT --rounds N [--profile NAME] [--seed N]

``refine`` runs round 0 and N-1 refinement rounds. After each round with a clarification
question it prints the question and reads one answer line from standard input: an empty line
skips the question, end of input skips all the rest. It works the same from a terminal and
from a pipe (``printf 'red\\n\\nsilk\\n' | tdri refine ...``), and writes every round to the project.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

from .errors import BadInput
from .validation import (
    MAX_ANSWER_CHARS,
    MAX_PROMPT_CHARS,
    check_output_path,
    check_path,
    check_text,
    decode_utf8,
    terminal_safe,
)


def _size(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"size must look like 512x512, not {text!r}")
    return int(m.group(1)), int(m.group(2))


def _add_generation_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=None, help="seed (default: a new random one, printed)")
    parser.add_argument("--steps", type=int, default=None, help="denoising steps (default: the settings')")
    parser.add_argument("--size", type=_size, default=None, metavar="WxH", help="image size, e.g. 512x512")
    parser.add_argument("--negative", default=None, help="negative prompt")


def register(subparsers: argparse._SubParsersAction) -> None:
    gen = subparsers.add_parser(
        "generate",
        help="generate one image from a prompt",
        description="Text to image with the profile's generator; the PNG carries its provenance.",
    )
    gen.add_argument("--prompt", required=True, help="what the image should show")
    gen.add_argument("--out", required=True, type=Path, help="the PNG file to write")
    gen.add_argument("--profile", default="demo", help="model profile name or JSON path (default: demo)")
    _add_generation_options(gen)
    gen.set_defaults(func=_generate)

    ref = subparsers.add_parser(
        "refine",
        help="run a refinement dialogue: generate, ask, answer from stdin, refine",
        description="Round 0 from the prompt, then N-1 refinement rounds. Each clarification "
        "question is printed and one answer line is read from standard input (empty line: skip; "
        "end of input: skip the rest). Everything is written to the project.",
    )
    ref.add_argument(
        "--project", required=True, type=Path, help="project folder (created if it does not exist)"
    )
    ref.add_argument("--prompt", required=True, help="the initial prompt P0")
    ref.add_argument("--rounds", required=True, type=int, help="rounds in total, round 0 included")
    ref.add_argument("--profile", default=None, help="model profile (default: the project's, or demo)")
    ref.add_argument("--mode", choices=("edit", "scratch"), default=None, help="refine by editing or anew")
    ref.add_argument(
        "--tau",
        type=float,
        default=None,
        help="ask when the ambiguity passes this (default: the profile's calibrated tau; 0: every round)",
    )
    _add_generation_options(ref)
    ref.set_defaults(func=_refine)


def _settings_with(base: Any, args: argparse.Namespace) -> Any:
    changes: dict[str, Any] = {}
    if args.steps is not None:
        changes["steps"] = args.steps
    if args.size is not None:
        changes["width"], changes["height"] = args.size
    if args.negative is not None:
        changes["negative_prompt"] = args.negative
    if getattr(args, "mode", None):
        changes["refine_mode"] = args.mode
    if getattr(args, "tau", None) is not None:
        changes["tau"] = args.tau
    return base.replace(**changes) if changes else base


def _note(text: str) -> None:
    print(terminal_safe(text), file=sys.stderr, flush=True)


def _prompt_arg(args: argparse.Namespace) -> str:
    """The checked --prompt (and --negative): before any model loads, a bad one costs nothing."""
    if args.negative is not None:
        check_text(args.negative, "The negative prompt", max_chars=MAX_PROMPT_CHARS, multiline=True)
    prompt = check_text(args.prompt, "The prompt", max_chars=MAX_PROMPT_CHARS, multiline=True).strip()
    if not prompt:
        raise BadInput("The prompt is empty.", "Describe the image you want, e.g. --prompt 'a red dress'.")
    return prompt


def _progress_printer() -> Any:
    """Event sink for the terminal: notes and model building on stderr, nothing per step."""
    from . import events as ev
    from .session import DEMO_NOTICE

    def sink(event: Any) -> None:
        if isinstance(event, ev.Warning_):
            if event.message != DEMO_NOTICE:  # said once, before the models load
                _note(f"note: {event.message}")
                sink.shown.add(event.message)  # type: ignore[attr-defined]
        elif isinstance(event, ev.Progress) and event.stage == "load" and event.message:
            _note(f"  [{event.step}/{event.total}] {event.message}")

    sink.shown = set()  # type: ignore[attr-defined]  # said live: the round summary skips them
    return sink


def _engine(profile: str, settings: Any) -> Any:
    from .session import DEMO_NOTICE, Engine

    engine = Engine(profile, settings)
    if engine.is_demo:
        _note(f"{DEMO_NOTICE} They are built on this machine on first use; real models: --profile sd15.")
    engine.ensure_models(on_event=_progress_printer())
    _quiet_loading()
    return engine


def _quiet_loading() -> None:
    """No per-file progress bars from the model libraries: the CLI's output stays readable in logs."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()


def _generate(args: argparse.Namespace) -> int:
    from .settings import EngineSettings
    from .store.images import save_png

    prompt = _prompt_arg(args)
    out: Path = check_output_path(args.out)
    if out.suffix.lower() != ".png":
        raise BadInput(
            f"{out} is not a .png file name.", "Name the output file *.png (it carries the provenance)."
        )
    engine = _engine(args.profile, _settings_with(EngineSettings(), args))
    settings, notes = engine.session_settings(engine.settings)
    for text in notes:
        _note(f"note: {text}")
    import secrets

    seed = args.seed if args.seed is not None else secrets.randbelow(2**31)
    gen = engine.generator
    gen.settings = settings
    result = gen.generate(prompt, seed=seed)
    for text in result.warnings:
        _note(f"note: {text}")
    out.parent.mkdir(parents=True, exist_ok=True)
    save_png(
        out,
        result.image,
        {
            "prompt": prompt,
            "negative_prompt": settings.negative_prompt,
            "seed": seed,
            "model": result.model,
            "steps": result.steps,
            "guidance": settings.guidance,
            "adapter_version": result.adapter,
            "origin": "generated",
        },
    )
    print(f"{terminal_safe(out)} ({result.width}x{result.height}, seed {seed}, {result.steps} steps)")
    return 0


def _open_or_create(folder: Path, profile: str | None) -> Any:
    from .store import create_project, open_project

    if folder.exists():
        return open_project(folder)
    store = create_project(folder.parent, folder.name, profile=profile or "demo")
    if store.path.resolve() != folder.resolve():
        _note(f"note: the project was created as {store.path} (a safe folder name for '{folder.name}').")
    else:
        _note(f"Created the project {store.path}.")
    return store


def _read_answer(stream: Any, interactive: bool, number: int = 1) -> str | None:
    """One answer line, checked as the prompt is; None at end of input.

    Read as bytes and decoded strictly: the terminal's or the pipe's declared encoding may
    be wrong, and a byte that is not UTF-8 must stop with a message, not reach the tokenizer.
    A line is read up to a bound, so an endless line without a newline cannot fill memory.
    """
    if interactive:
        print("answer (empty line = skip): ", end="", flush=True)
    raw = getattr(stream, "buffer", stream)
    limit = MAX_ANSWER_CHARS * 4 + 2  # UTF-8 takes at most 4 bytes a character, then CR LF
    line = raw.readline(limit + 1)
    if isinstance(line, str):  # a text stream without bytes underneath (tests, an IDE console)
        line = line.encode("utf-8", "surrogateescape")
    if line == b"":
        return None
    what = f"Answer line {number}"
    if len(line) > limit:
        raise BadInput(
            f"{what} is longer than {MAX_ANSWER_CHARS:,} characters.", "Shorten it.", kind="bad-text"
        )
    text = decode_utf8(line, what).rstrip("\r\n")
    return check_text(text, what, max_chars=MAX_ANSWER_CHARS)


def _print_round(result: Any, already_said: set[str] = frozenset()) -> None:  # type: ignore[assignment]
    print(f"round {result.round}: {terminal_safe(result.prompt)}")
    print(f"  image: {terminal_safe(result.image_path)}")
    for text in result.warnings:
        if text not in already_said:
            print(f"  note: {terminal_safe(text)}")


def _print_question(question: Any) -> None:
    options = f" (e.g. {', '.join(question.options)})" if question.options else ""
    print(
        f"  question [{terminal_safe(question.aspect)}]: {terminal_safe(question.text + options)}", flush=True
    )


def _refine(args: argparse.Namespace) -> int:
    from .api import Answer, Skip
    from .events import PoseReady

    if args.rounds < 1:
        raise BadInput(
            f"--rounds must be at least 1, got {args.rounds}.", "Round 0 counts: --rounds 3 runs three."
        )
    prompt = _prompt_arg(args)
    with _open_or_create(check_path(args.project, "The project folder"), args.profile) as store:
        profile = args.profile or store.profile or "demo"
        engine = _engine(profile, store.settings)
        base = _progress_printer()

        def sink(event: Any) -> None:
            base(event)
            if isinstance(event, PoseReady):
                print(f"  pose: {terminal_safe(event.message)}")

        session = engine.open_session(store, on_event=sink, settings=_settings_with(store.settings, args))
        result = session.start(prompt, seed=args.seed)
        _print_round(result, base.shown)
        interactive = sys.stdin is not None and sys.stdin.isatty()
        exhausted = sys.stdin is None
        for number in range(1, args.rounds):
            question = session.pending_question
            reply: Any = Skip()
            if question is not None:
                _print_question(question)
                try:
                    line = None if exhausted else _read_answer(sys.stdin, interactive, number)
                except BadInput as exc:  # the rounds so far are in the project: say so
                    exc.what_to_do = (
                        f"{exc.what_to_do} The {len(session.rounds)} rounds before it are saved in "
                        f"{store.path} (dialogue {session.dialogue_id})."
                    )
                    raise
                if line is None:
                    exhausted = True  # end of input: skip every question that follows
                elif line.strip():
                    reply = Answer(question.aspect, line.strip())
            result = session.refine(reply)
            _print_round(result, base.shown)
        if session.pending_question is not None:
            _print_question(session.pending_question)
        print(f"{len(session.rounds)} rounds in {terminal_safe(store.path)} (dialogue {session.dialogue_id})")
    return 0
