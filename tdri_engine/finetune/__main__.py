"""``python -m tdri_engine.finetune`` / ``accelerate launch -m tdri_engine.finetune``: the same
options as ``tdri finetune``, so the run spreads over the processes accelerate starts."""

from __future__ import annotations

import argparse
import sys

from ..errors import TdriError
from ..validation import terminal_lines
from .cli import add_arguments, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tdri_engine.finetune", description=__doc__)
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except TdriError as exc:
        print(f"error: {terminal_lines(exc.message)}", file=sys.stderr)
        if exc.what_to_do:
            print(f"what to do: {terminal_lines(exc.what_to_do)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: the checkpoint is saved; run the same command to continue", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
