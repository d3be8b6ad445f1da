"""``tdri project ...``: create, inspect and export projects, and build the sample project."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..paths import default_projects_dir
from ..records import ALL_RECORDS
from ..validation import check_output_path, check_path, terminal_safe
from .export import annotations_jsonl
from .project import create_project, open_project
from .sample import build_sample


def register(subparsers: argparse._SubParsersAction) -> None:
    project = subparsers.add_parser("project", help="create, inspect and export projects")
    sub = project.add_subparsers(dest="project_command", metavar="ACTION")
    project.set_defaults(func=lambda args: project.print_help() or 2)

    p = sub.add_parser("create", help="create a new, empty project")
    p.add_argument("name", help="project name (the folder name is made from it)")
    p.add_argument("--root", type=Path, default=None, help="projects folder (default: the app's)")
    p.add_argument("--profile", default="demo", help="model profile the project uses (default: demo)")
    p.set_defaults(func=_create)

    p = sub.add_parser("info", help="show a project's counts and anything repaired when opening it")
    p.add_argument("dir", type=Path, help="the project folder")
    p.set_defaults(func=_info)

    p = sub.add_parser("export-annotations", help="write the annotations as JSONL (one line per task)")
    p.add_argument("dir", type=Path, help="the project folder")
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output file (default: <project>/exports/annotations-<time>.jsonl)",
    )
    p.set_defaults(func=_export)

    p = sub.add_parser("sample", help="build the sample project (garment pairs drawn by the app)")
    p.add_argument("--root", type=Path, default=None, help="projects folder (default: the app's)")
    p.add_argument("--force", action="store_true", help="rebuild it when it exists (its changes are lost)")
    p.set_defaults(func=_sample)


def _create(args: argparse.Namespace) -> int:
    root = check_path(args.root or default_projects_dir(), "The projects folder")
    with create_project(root, args.name, profile=args.profile) as store:
        print(f"Created project '{_show(store.name)}' in {_show(store.path)}")
    return 0


def _show(value: object) -> str:
    """User text as the terminal may print it (control characters and escapes made visible)."""
    return terminal_safe(value)


def _info(args: argparse.Namespace) -> int:
    # read-only: safe while the studio has the project open, and changes nothing on disk
    with open_project(check_path(args.dir, "The project folder"), read_only=True) as store:
        print(f"Project:  {_show(store.name)}")
        print(f"Folder:   {_show(store.path)}")
        print(f"Created:  {_show(store.created)}")
        print(f"Profile:  {_show(store.profile)}")
        print(f"Schema:   {store.schema_version}")
        for cls in ALL_RECORDS:
            print(f"{cls.TABLE + ':':<13} {store.count(cls)}")
        for note in store.open_notes:
            print(f"Note: {_show(note)}")
        if store.recovery is not None:
            print("Recovery:")
            for line in store.recovery.summary().splitlines():
                print(f"  {_show(line)}")
        else:
            print("Recovery: none needed")
    return 0


def _export(args: argparse.Namespace) -> int:
    out = None if args.out is None else check_output_path(args.out)  # before opening anything
    with open_project(check_path(args.dir, "The project folder"), read_only=True) as store:
        out = annotations_jsonl(store, out)
    print(f"Wrote {_show(out)}")
    return 0


def _sample(args: argparse.Namespace) -> int:
    root = check_path(args.root or default_projects_dir(), "The projects folder")
    path = build_sample(root, force=args.force)
    print(f"Built the sample project in {_show(path)}")
    return 0
