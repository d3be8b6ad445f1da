"""``python -m tdri_engine.finetune`` / ``accelerate launch -m tdri_engine.finetune``: the same
options as ``tdri finetune``, so the run spreads over the processes accelerate starts."""

from __future__ import annotations

import argparse
import sys

from ..cli import print_error
from ..errors import TdriError
from .cli import add_arguments, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tdri_engine.finetune", description=__doc__)
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except TdriError as exc:
        return print_error(exc)
    except KeyboardInterrupt:
        print("interrupted: the checkpoint is saved; run the same command to continue", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
