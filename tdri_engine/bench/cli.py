"""``tdri bench generate``, ``tdri bench round`` and ``tdri bench gpu`` (all of them in one
command, one JSON) (registered by ``tdri_engine.cli``).

Importing this module is cheap: torch and the models load only when a benchmark runs.
"""

from __future__ import annotations

from typing import Any


def register(sub: Any) -> None:
    from . import generate, gpu, round

    p = sub.add_parser("bench", help="benchmarks against plain diffusers (JSON out)")
    bench = p.add_subparsers(dest="bench_command", metavar="BENCHMARK")
    generate.register(bench)
    round.register(bench)
    gpu.register(bench)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])
