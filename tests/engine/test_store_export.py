"""Exports other tools read, the `tdri project` commands, and the sample project."""

from __future__ import annotations

import argparse
import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tdri_engine.atelier.captions import full_caption
from tdri_engine.atelier.world import Record as AtelierRecord
from tdri_engine.atelier.world import render
from tdri_engine.errors import TdriError
from tdri_engine.records import Annotation, Choice, ImageRecord, Task
from tdri_engine.store import annotations_jsonl, open_project, pair_html, read_provenance
from tdri_engine.store.cli import register
from tdri_engine.store.positions import shown_order
from tdri_engine.store.sample import build_sample

REPO_SAMPLE = Path(__file__).resolve().parents[2] / "projects" / "sample"
NASTY = "<script>alert(\"x\")</script> & 'quotes'"


@pytest.fixture
def annotated(project):
    """Two pair tasks; the first annotated with text that must never become markup."""
    images = [
        project.add_image(Image.new("RGB", (32, 32), c), ImageRecord(prompt=f"a {c} skirt", seed=i))
        for i, c in enumerate(["red", "blue", "green", "white"])
    ]
    t1 = Task(id="t1", name="<b>first</b>", images=[images[0].id, images[1].id])
    t2 = Task(id="t2", images=[images[2].id, images[3].id])
    project.put_many([t1, t2])
    project.put(
        Annotation(
            task_id="t1",
            descriptions={images[0].id: NASTY, images[1].id: 'a "plain" blue skirt'},
            tags={images[0].id: ["red", '"long"', "<i>"], images[1].id: []},
            choice=Choice.LEFT.value,
            annotator="ana",
        )
    )
    return project, images


def test_annotations_jsonl_has_one_line_per_task_with_images_and_provenance(annotated, tmp_path: Path):
    store, images = annotated
    out = annotations_jsonl(store, tmp_path / "out" / "annotations.jsonl")
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [line["task"]["id"] for line in lines] == ["t1", "t2"]
    first, second = lines
    assert first["annotated"] and first["choice"] == "left" and first["annotator"] == "ana"
    assert first["descriptions"][images[0].id] == NASTY  # data stays data: no escaping in JSON
    assert first["tags"][images[0].id] == ["red", '"long"', "<i>"]
    img = first["images"][0]
    assert img["file"] == images[0].file and Path(img["path"]).is_file() and img["exists"]
    assert img["provenance"]["prompt"] == "a red skirt" and img["provenance"]["seed"] == 0
    assert not second["annotated"] and second["descriptions"] == {} and second["choice"] is None


def test_annotations_jsonl_default_location_is_the_exports_folder(annotated):
    store, _ = annotated
    out = annotations_jsonl(store)
    assert out.parent == store.exports_dir and out.suffix == ".jsonl"


class _Figures(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[str] = []
        self.srcs: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "img":
            self.srcs.append(dict(attrs)["src"])

    def handle_data(self, data):
        self.text.append(data)


def test_pair_html_shows_two_figures_and_escapes_every_user_text(annotated):
    store, images = annotated
    snippet = pair_html(store, "t1")
    assert "<script>" not in snippet and "<b>" not in snippet and "<i>" not in snippet
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#x27;quotes&#x27;" in snippet
    parsed = _Figures()
    parsed.feed(snippet)
    assert parsed.tags.count("figure") == 2 and parsed.tags.count("figcaption") == 2
    assert "script" not in parsed.tags and "b" not in parsed.tags
    # relative to the project folder, in the order the annotator saw them (store/positions.py)
    seen = [images[i].file for i in shown_order(store.get(Task, "t1"))]
    assert parsed.srcs == seen
    # the choice names the winning image and the side it was shown on
    side = "left" if shown_order(store.get(Task, "t1"))[0] == 0 else "right"
    assert f'data-winner="{images[0].id}">Choice: the {side} image' in snippet
    text = "".join(parsed.text)
    assert NASTY in text and '"long"' in text and "<i>" in text  # shown as typed
    for src in parsed.srcs:
        assert (store.path / src).is_file()

    from_exports = _Figures()
    from_exports.feed(pair_html(store, "t1", base=store.exports_dir))
    assert from_exports.srcs == [f"../{f}" for f in seen]


def test_pair_html_of_an_unannotated_task_and_a_missing_image(annotated):
    store, images = annotated
    store.delete(ImageRecord, images[3].id)
    snippet = pair_html(store, "t2")
    assert snippet.count("<figure") == 2 and "Image missing" in snippet


# ------------------------------------------------------------------ CLI


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="tdri")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(list(argv))
    return args.func(args)


def test_cli_create_info_export(projects_root: Path, capsys):
    assert run_cli("project", "create", "Shop Window", "--root", str(projects_root)) == 0
    folder = projects_root / "shop-window"
    assert "Created project 'Shop Window'" in capsys.readouterr().out
    with open_project(folder) as store:
        store.put_many([Task(id="t1"), Annotation(task_id="t1", descriptions={"i": "hi"})])

    assert run_cli("project", "info", str(folder)) == 0
    out = capsys.readouterr().out
    assert "tasks:" in out and "annotations:" in out and "Recovery: none needed" in out

    out_file = projects_root / "ann.jsonl"
    assert run_cli("project", "export-annotations", str(folder), "--out", str(out_file)) == 0
    assert json.loads(out_file.read_text())["descriptions"] == {"i": "hi"}


def test_cli_info_reports_a_recovery_without_changing_anything(projects_root: Path, capsys):
    run_cli("project", "create", "Broken", "--root", str(projects_root))
    folder = projects_root / "broken"
    (folder / "db.json").write_bytes(b"{oops")
    assert run_cli("project", "info", str(folder)) == 0
    out = capsys.readouterr().out
    assert "Recovery:" in out and "db.json.bak" in out and "read-only" in out
    assert (folder / "db.json").read_bytes() == b"{oops"


def test_cli_sample_builds_once_and_refuses_to_overwrite(projects_root: Path, capsys):
    assert run_cli("project", "sample", "--root", str(projects_root)) == 0
    with pytest.raises(TdriError, match="already exists") as info:
        run_cli("project", "sample", "--root", str(projects_root))
    assert "--force" in info.value.what_to_do
    assert run_cli("project", "sample", "--root", str(projects_root), "--force") == 0


# ------------------------------------------------------------------ sample project


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_sample_project_is_deterministic_and_opens_onto_annotated_pairs(tmp_path: Path):
    a = build_sample(tmp_path / "a")
    b = build_sample(tmp_path / "b")
    assert _tree(a) == _tree(b)
    with open_project(a, read_only=True) as store:
        tasks = store.all(Task)
        assert len(tasks) == 6 and all(t.kind == "pair" for t in tasks)
        assert store.count(ImageRecord) == 12 and store.count(Annotation) == 2
        assert store.get_meta("last_task_id") == tasks[0].id
        for record in store.all(ImageRecord):
            image = store.load_image(record)
            assert image.size == (256, 256)
            assert read_provenance(store.image_path(record))["prompt"] == record.prompt
            assert record.seed is not None
        for task in tasks:  # each picture is the renderer's, its prompt the record's caption
            for image_id, data in zip(task.images, task.details["records"], strict=True):
                record = store.get(ImageRecord, image_id)
                truth = AtelierRecord.from_dict(data)
                assert record.prompt == full_caption(truth, seed=None)
                assert np.array_equal(
                    np.asarray(store.load_image(record)),
                    np.asarray(render(truth, seed=record.seed, size=256)),
                )


def _committed_files(folder: Path) -> dict[str, bytes]:
    # what git tracks there; opening the sample adds ignored files (.lock, journal, backups)
    tree = _tree(folder)
    return {
        k: v
        for k, v in tree.items()
        if k in (".gitignore", "project.json", "db.json") or k.startswith("images/")
    }


def test_committed_sample_matches_what_the_code_builds(tmp_path: Path):
    """projects/sample is generated: rebuild it with `tdri project sample --force` after changes
    (and `git checkout projects/sample` if you annotated in it by hand)."""
    fresh = build_sample(tmp_path)
    committed = _committed_files(REPO_SAMPLE)
    built = _tree(fresh)
    assert sorted(committed) == sorted(built)
    assert sum(len(v) for v in committed.values()) < 300_000
    for name in ("project.json", "db.json"):
        assert json.loads(committed[name]) == json.loads(built[name]), name
    for name in (n for n in built if n.endswith(".png")):  # pixels, not bytes: zlib builds differ
        assert np.array_equal(
            np.asarray(Image.open(REPO_SAMPLE / name)), np.asarray(Image.open(fresh / name))
        )
