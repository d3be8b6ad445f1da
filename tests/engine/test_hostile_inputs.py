"""Files from other people, hostile text and the user's own mistakes, tried as a hostile user would.

The corpus is built here, byte by byte: broken and enormous images, text in many scripts and
with control characters, names and paths that are too long, absolute, ``..`` or not UTF-8.
Every case ends in a clear message (the CLI: exit 1, ``error:`` and ``what to do:``, nothing
that drives the terminal) and leaves the project that was already there opening with all of
its earlier data.
"""

from __future__ import annotations

import io
import json
import os
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image, PngImagePlugin

from tdri_engine.cli import main
from tdri_engine.errors import BadInput, TdriError
from tdri_engine.records import Annotation, ImageRecord, Task
from tdri_engine.store import create_project, open_project, pair_html
from tdri_engine.validation import MAX_PROMPT_CHARS, check_text, terminal_safe

# ------------------------------------------------------------------ the project already there


def _png_bytes(colour: str = "red", size: tuple[int, int] = (8, 8)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def earlier(projects_root: Path) -> Path:
    """A project holding earlier work: a pair task, its annotation, two images, a meta value."""
    with create_project(projects_root, "Earlier") as store:
        a = store.add_image(Image.new("RGB", (16, 16), "red"), ImageRecord(id="ea", prompt="a red coat"))
        b = store.add_image(Image.new("RGB", (16, 16), "blue"), ImageRecord(id="eb", prompt="a blue coat"))
        store.put_many(
            [
                Task(id="et", name="coats", images=[a.id, b.id]),
                Annotation(task_id="et", descriptions={"ea": "warm"}, tags={"ea": ["wool"]}, choice="left"),
            ]
        )
        store.set_meta("last_task_id", "et")
    return projects_root / "earlier"


def assert_intact(folder: Path, *, extra_images: int = 0) -> None:
    """The project opens without repair and still holds every earlier record and image."""
    with open_project(folder) as store:
        assert store.recovery is None, store.recovery.summary()
        assert store.get_meta("last_task_id") == "et"
        assert store.get(Task, "et").images == ["ea", "eb"]
        ann = store.get(Annotation, "et")
        assert (ann.descriptions, ann.tags, ann.choice) == ({"ea": "warm"}, {"ea": ["wool"]}, "left")
        assert store.count(ImageRecord) == 2 + extra_images
        assert store.load_image("ea").getpixel((0, 0)) == (255, 0, 0)
        assert store.load_image("eb").getpixel((0, 0)) == (0, 0, 255)


def run_cli(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    for stream in (captured.out, captured.err):
        assert "\x1b" not in stream and "\x07" not in stream and "\x9b" not in stream, stream
    return code, captured.out, captured.err


# ------------------------------------------------------------------ broken and enormous images


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims ``width``×``height`` but carries one tiny compressed row."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(b"\x00" * 7))
        + _chunk(b"IEND", b"")
    )


def _ztxt_bomb() -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text("comment", "x" * (16 * 1024 * 1024), zip=True)  # 16 MB of text in ~16 kB
    buf = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def _jpeg_bytes() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), "green").save(buf, format="JPEG")
    return buf.getvalue()


def _make(kind: str, folder: Path) -> Path:
    """One hostile file (or folder) named like an image, inside ``folder``."""
    png = _png_bytes()
    makers = {
        "truncated.png": lambda p: p.write_bytes(png[: len(png) // 2]),
        "empty.png": lambda p: p.write_bytes(b""),
        "text.png": lambda p: p.write_text("this is not a picture\n"),
        "truncated.jpg": lambda p: p.write_bytes(_jpeg_bytes()[:40]),
        "bomb.png": lambda p: p.write_bytes(_png_header_only(100_000, 100_000)),
        "wide.png": lambda p: p.write_bytes(_png_header_only(9_000, 9_000)),  # under PIL's guard, over ours
        "zero.png": lambda p: p.write_bytes(_png_header_only(0, 16)),
        "ztxt.png": lambda p: p.write_bytes(_ztxt_bomb()),
        "folder.png": lambda p: p.mkdir(),
        "gif.gif": lambda p: p.write_bytes(b"GIF89a\x10\x00\x10\x00\x80\x00\x00"),
        "bad_crc.png": lambda p: p.write_bytes(png[:16] + b"\xff\xff\xff\xff" + png[20:]),
        "random.jpg": lambda p: p.write_bytes(bytes(range(256)) * 8),
        "devzero.png": lambda p: p.symlink_to("/dev/zero"),
        "fifo.png": lambda p: os.mkfifo(p),
    }
    path = folder / kind
    makers[kind](path)
    return path


BROKEN = {
    "truncated.png": "damaged",
    "empty.png": "is empty (0 bytes)",
    "text.png": "is not an image",
    "truncated.jpg": "could not be read",
    "bomb.png": "is too large: 100000×100000 pixels",
    "wide.png": "is too large: 9000×9000 pixels",
    "zero.png": "",  # any clear message
    "ztxt.png": "could not be read safely",
    "folder.png": "is a folder, not an image file",
    "gif.gif": "",
    "bad_crc.png": "",
    "random.jpg": "is not an image",
    "devzero.png": "is empty (0 bytes)",
    "fifo.png": "is empty (0 bytes)",
}


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_a_broken_file_is_refused_by_name_and_the_good_one_beside_it_imported(
    earlier: Path, tmp_path: Path, kind: str
):
    src = tmp_path / "incoming"
    src.mkdir()
    (src / "good.png").write_bytes(_png_bytes("white"))
    bad = _make(kind, src)
    with open_project(earlier) as store:
        # a folder is scanned; files a scan passes over (a FIFO, a device) are named directly
        spec = [src / "good.png", bad] if kind in ("fifo.png", "devzero.png") else src
        result = store.import_images(spec, pair=False)
        assert [r.name for r in result.images] == ["good"]
        assert list(result.errors) == [str(bad)], result.summary()
        message = result.errors[str(bad)].message
        assert BROKEN[kind] in message and bad.name in message and result.errors[str(bad)].what_to_do
        assert f"Not imported: {bad}" in result.summary()
    assert_intact(earlier, extra_images=1)


def test_a_file_name_that_is_not_utf8_or_holds_escapes_is_imported_and_shown_safely(
    earlier: Path, tmp_path: Path, capsys: pytest.CaptureFixture
):
    src = tmp_path / "incoming"
    src.mkdir()
    (Path(os.fsdecode(os.fsencode(src) + b"/caf\xe9.png"))).write_bytes(_png_bytes())  # Latin-1 name
    (src / "\x1b]0;owned\x07.png").write_bytes(_png_bytes("blue"))
    with open_project(earlier) as store:
        result = store.import_images(src, pair=False)
        assert {r.name for r in result.images} == {"caf\ufffd", "\x1b]0;owned\x07"}
        assert not result.errors
    code, out, _ = run_cli(["project", "info", str(earlier)], capsys)
    assert code == 0 and "images:       4" in out
    assert_intact(earlier, extra_images=2)


# ------------------------------------------------------------------ names


BAD_NAMES = {
    "empty": ("", "has no letters or digits"),
    "blank": ("   ", "has no letters or digits"),
    "dot-dot": ("..", "has no letters or digits"),
    "dot": (".", "has no letters or digits"),
    "punctuation": ("!!! ???", "has no letters or digits"),
    "emoji only": ("🙂🙂🙂", "has no letters or digits"),
    "zero-width space": ("\u200b\u200b", "has no letters or digits"),
    "clear screen": ("\x1b[2J\x1b[HEvil", "control character (\\x1b at character 1)"),
    "bell": ("ring\x07", "control character (\\x07 at character 5)"),
    "C1 CSI": ("a\x9b31mb", "control character (\\x9b at character 2)"),
    "newline": ("two\nlines", "control character (\\x0a at character 4)"),
    "tab": ("a\tb", "control character (\\x09 at character 2)"),
    "delete": ("a\x7f", "control character (\\x7f at character 2)"),
    "not UTF-8": ("caf\udce9", "not valid UTF-8 text (\\xe9 at character 4)"),
    "very long": ("n" * 10_000, "10,000 characters long; the limit is 200"),
    "taken": ("Earlier", "already exists"),
}


@pytest.mark.parametrize("case", sorted(BAD_NAMES))
def test_a_bad_project_name_is_refused_with_a_message(
    earlier: Path, projects_root: Path, case: str, capsys: pytest.CaptureFixture
):
    name, words = BAD_NAMES[case]
    code, _, err = run_cli(["project", "create", name, "--root", str(projects_root)], capsys)
    assert code == 1 and words in err and "what to do:" in err, err
    assert sorted(p.name for p in projects_root.iterdir()) == ["earlier"]  # nothing half-made
    assert_intact(earlier)


def test_a_nul_in_a_name_is_refused_through_the_api(earlier: Path, projects_root: Path):
    with pytest.raises(BadInput, match="control character"):
        create_project(projects_root, "a\x00b")
    with pytest.raises(BadInput, match="NUL"):
        from tdri_engine.store.export import annotations_jsonl

        with open_project(earlier) as store:
            annotations_jsonl(store, projects_root / "a\x00b.jsonl")
    assert_intact(earlier)


GOOD_NAMES = {
    # name: the folder made from it
    "../../etc": "etc",
    "/abs/path": "abs-path",
    "a/b\\c": "a-b-c",
    "CON": "con-project",
    "مرحبا بالعالم": "مرحبا-بالعالم",  # Arabic, right to left
    "שלום עולם": "שלום-עולם",  # Hebrew
    "नमस्ते दुनिया": "नमस्ते-दुनिया",  # Devanagari: combining vowel signs kept
    "東京 2025": "東京-2025",
    "สวัสดีชาวโลก": "สวัสดีชาวโลก",  # Thai
    "Привет, мир": "привет-мир",
    "Καλημέρα": "καλημέρα",
    "안녕하세요": "안녕하세요",
    "\u202eevil\u202c": "evil",  # a right-to-left override is no folder letter
    "𠀀" * 64: "𠀀" * 25,  # 4-byte letters: cut at 100 bytes, not 64 characters
    "ß" * 80: "ss" * 32,
}


@pytest.mark.parametrize("name", sorted(GOOD_NAMES), ids=range(len(GOOD_NAMES)))
def test_any_script_or_odd_name_makes_a_folder_inside_the_projects_folder(
    earlier: Path, projects_root: Path, name: str, capsys: pytest.CaptureFixture
):
    code, out, _ = run_cli(["project", "create", name, "--root", str(projects_root)], capsys)
    assert code == 0 and "Created project" in out
    folder = projects_root / GOOD_NAMES[name]
    assert sorted(p.name for p in projects_root.iterdir()) == sorted(["earlier", folder.name])
    assert len(os.fsencode(folder.name)) <= 100
    code, out, _ = run_cli(["project", "info", str(folder)], capsys)
    assert code == 0 and f"Project:  {terminal_safe(name)}" in out  # letters as they are
    with open_project(folder, read_only=True) as store:
        assert store.name == name.strip()
    assert_intact(earlier)


def test_a_hand_edited_name_with_escapes_cannot_take_over_the_terminal(earlier: Path, capsys):
    pj = earlier / "project.json"
    doc = json.loads(pj.read_text(encoding="utf-8"))
    doc["name"] = "\x1b[2J\x1b]0;pwned\x07\u202eevil"
    pj.write_text(json.dumps(doc), encoding="utf-8")
    code, out, _ = run_cli(["project", "info", str(earlier)], capsys)
    assert code == 0 and "Project:  \\x1b[2J\\x1b]0;pwned\\x07\\u202eevil" in out
    code, out, _ = run_cli(["adapters", "scope", "project", "--project", str(earlier)], capsys)
    assert code == 0 and out.startswith("\\x1b[2J\\x1b]0;pwned")  # run_cli found no raw escape
    doc["name"] = "Earlier"
    pj.write_text(json.dumps(doc), encoding="utf-8")
    assert_intact(earlier)


# ------------------------------------------------------------------ paths


def _bad_paths(earlier: Path, tmp_path: Path) -> dict[str, tuple[list[str], str]]:
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    long_name = "é" * 200  # 400 bytes
    return {
        "sample root is a file": (["project", "sample", "--root", str(a_file)], "is a file, not a folder"),
        "create root is a file": (["project", "create", "X", "--root", str(a_file)], "Could not create"),
        "create root under a file": (
            ["project", "create", "X", "--root", str(a_file / "sub")],
            "Could not create",
        ),
        "create root name too long": (
            ["project", "create", "X", "--root", str(tmp_path / long_name)],
            "400 bytes",
        ),
        "info of a file": (["project", "info", str(a_file)], "There is no project folder"),
        "info of a missing folder": (
            ["project", "info", str(tmp_path / "nope")],
            "There is no project folder",
        ),
        "info of a plain folder": (["project", "info", str(tmp_path)], "not a TDRI project folder"),
        "info name too long": (["project", "info", str(tmp_path / long_name)], "allow 255 bytes per name"),
        "export into db.json": (
            ["project", "export-annotations", str(earlier), "--out", str(earlier / "db.json")],
            "inside the project",
        ),
        "export into images": (
            ["project", "export-annotations", str(earlier), "--out", str(earlier / "images" / "ea.png")],
            "inside the project",
        ),
        "export onto a folder": (
            ["project", "export-annotations", str(earlier), "--out", str(tmp_path)],
            "is a folder; it must name a file",
        ),
        "export name too long": (
            ["project", "export-annotations", str(earlier), "--out", str(tmp_path / f"{long_name}.jsonl")],
            "allow 255 bytes per name",
        ),
        "pairs into project.json by ..": (
            [
                "export",
                "pairs",
                "--project",
                str(earlier),
                "--out",
                str(earlier / "exports" / ".." / "project.json"),
            ],
            "inside the project",
        ),
        "pairs into loras": (
            ["export", "pairs", "--project", str(earlier), "--out", str(earlier / "loras" / "p.parquet")],
            "inside the project",
        ),
        "generate into images": (
            ["generate", "--prompt", "a coat", "--out", str(earlier / "images" / "new.png")],
            "inside the project",
        ),
        "generate under a file": (
            ["generate", "--prompt", "a coat", "--out", str(a_file / "new.png")],
            "which is a file, not a folder",
        ),
        "pairs under a file": (
            ["export", "pairs", "--project", str(earlier), "--out", str(a_file / "sub" / "p.parquet")],
            "which is a file, not a folder",
        ),
        "generate onto project.json": (
            ["generate", "--prompt", "a coat", "--out", str(earlier / "project.json")],
            "inside the project",
        ),
        "refine project name too long": (
            ["refine", "--project", str(tmp_path / long_name), "--prompt", "a coat", "--rounds", "1"],
            "allow 255 bytes per name",
        ),
    }


BAD_PATH_CASES = [
    "sample root is a file",
    "create root is a file",
    "create root under a file",
    "create root name too long",
    "info of a file",
    "info of a missing folder",
    "info of a plain folder",
    "info name too long",
    "export into db.json",
    "export into images",
    "export onto a folder",
    "export name too long",
    "pairs into project.json by ..",
    "pairs into loras",
    "generate into images",
    "generate onto project.json",
    "refine project name too long",
    "generate under a file",
    "pairs under a file",
]


@pytest.mark.parametrize("case", BAD_PATH_CASES)
def test_a_bad_path_is_refused_with_a_message(
    earlier: Path, tmp_path: Path, case: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
):
    monkeypatch.chdir(tmp_path)
    before = {p: p.read_bytes() for p in earlier.rglob("*") if p.is_file() and p.name != ".lock"}
    argv, words = _bad_paths(earlier, tmp_path)[case]
    code, _, err = run_cli(argv, capsys)
    assert code == 1 and words in err and "what to do:" in err, err
    assert "Traceback" not in err
    assert {p: p.read_bytes() for p in earlier.rglob("*") if p.is_file() and p.name != ".lock"} == before
    assert_intact(earlier)


# ------------------------------------------------------------------ prompts and answers


BAD_PROMPTS = {
    "empty": ("", "The prompt is empty"),
    "blank": (" \t \n ", "The prompt is empty"),
    "escape": ("a coat\x1b[8m hidden", "control character (\\x1b at character 7)"),
    "title set": ("\x1b]0;pwned\x07a coat", "control character (\\x1b at character 1)"),
    "NUL-like DEL": ("a\x7fcoat", "control character (\\x7f at character 2)"),
    "backspace": ("a coat\x08\x08\x08", "control character (\\x08 at character 7)"),
    "C1 CSI": ("\x9b2Ja coat", "control character (\\x9b at character 1)"),
    "not UTF-8": ("a co\udcffat", "not valid UTF-8 text (\\xff at character 5)"),
    "lone surrogate": ("a \ud83d coat", "not valid UTF-8 text (\\ud83d at character 3)"),
    "enormous": ("coat " * 20_000, f"100,000 characters long; the limit is {MAX_PROMPT_CHARS:,}"),
}


@pytest.mark.parametrize("case", sorted(BAD_PROMPTS))
def test_a_bad_prompt_is_refused_before_any_model_loads_and_the_project_keeps_its_work(
    earlier: Path, case: str, capsys: pytest.CaptureFixture
):
    prompt, words = BAD_PROMPTS[case]
    # no models are installed in this test's TDRI_HOME: reaching one would fail another way
    argv = ["refine", "--project", str(earlier), "--prompt", prompt, "--rounds", "2", "--profile", "demo"]
    code, _, err = run_cli(argv, capsys)
    assert code == 1 and words in err and "what to do:" in err, err
    assert_intact(earlier)


SCRIPTS = {
    "Arabic": "فستان أحمر طويل بأكمام",
    "Hebrew with digits": "שמלה אדומה 2025",
    "Persian with ZWNJ": "پیراهن\u200cهای قرمز",
    "Devanagari": "लाल रेशमी साड़ी",
    "Tamil": "சிவப்பு ஆடை",
    "Thai": "ชุดเดรสสีแดง",
    "Chinese": "红色丝绸连衣裙",
    "Japanese": "赤い着物、金の帯",
    "Korean": "빨간 드레스",
    "emoji ZWJ": "a dress for 👩\u200d👩\u200d👧 with 🇫🇷 flags",
    "combining marks": "Z\u0351\u0352a\u0353\u0354l\u0355g\u0356o dress",
    "math letters": "𝐚 𝐫𝐞𝐝 𝐝𝐫𝐞𝐬𝐬",
    "multi-line": "a red dress\nwith long sleeves",
}


@pytest.mark.parametrize("case", sorted(SCRIPTS))
def test_prompts_in_any_script_pass_the_checks_and_round_trip_through_the_project(earlier: Path, case: str):
    text = SCRIPTS[case]
    assert check_text(text, "The prompt", max_chars=MAX_PROMPT_CHARS, multiline=True) == text
    if "\n" not in text:
        assert terminal_safe(text) == text  # letters, joiners and marks are shown as they are
    with open_project(earlier) as store:
        img = store.add_image(Image.new("RGB", (8, 8)), ImageRecord(id="s1", prompt=text, name=text))
        store.put_many(
            [
                Task(id="st", name=text, images=[img.id]),
                Annotation(task_id="st", descriptions={img.id: text}, tags={img.id: [text]}),
            ]
        )
    with open_project(earlier, read_only=True) as store:
        assert store.get(ImageRecord, "s1").prompt == text
        assert store.get(Annotation, "st").tags == {"s1": [text]}
        snippet = pair_html(store, "st")
        if "\n" not in text:
            assert snippet.count(text) >= 2  # description and tag, as written
    assert_intact(earlier, extra_images=1)


ANSWERS = {
    "not UTF-8": (b"red \xff\xfe silk\n", "Answer line 1 is not valid UTF-8 text (byte 0xff at byte 5)"),
    "overlong UTF-8": (b"\xc0\xafetc\n", "not valid UTF-8 text (byte 0xc0 at byte 1)"),
    "escape": (b"red\x1b[2J\n", "control character (\\x1b at character 4)"),
    "NUL": (b"red\x00silk\n", "control character (\\x00 at character 4)"),
    "endless line": (b"x" * 100_000, "longer than 4,000 characters"),
}


@pytest.mark.parametrize("case", sorted(ANSWERS))
def test_a_bad_answer_line_on_stdin_is_refused_with_a_message(earlier: Path, case: str):
    from tdri_engine.cli_session import _read_answer

    data, words = ANSWERS[case]
    stream = io.TextIOWrapper(io.BytesIO(data), encoding="utf-8", errors="surrogateescape")
    with pytest.raises(BadInput) as info:
        _read_answer(stream, interactive=False)
    assert words in info.value.message and info.value.what_to_do
    assert_intact(earlier)


def test_good_answer_lines_in_any_script_are_read_as_typed():
    from tdri_engine.cli_session import _read_answer

    lines = [SCRIPTS["Arabic"], SCRIPTS["emoji ZWJ"], "", "silk"]
    stream = io.TextIOWrapper(io.BytesIO(("\r\n".join(lines) + "\n").encode()), encoding="utf-8")
    assert [_read_answer(stream, interactive=False) for _ in range(5)] == [*lines, None]


# ------------------------------------------------------------------ hand-edited database


HAND_EDITS = {
    "width text": ({"width": "abc"}, "has width 'abc', not a whole number"),
    "width null": ({"width": None}, "has width None, not a whole number"),
    "height negative": ({"height": -3}, "has height -3, not a whole number"),
    "width fraction": ({"width": 1.5}, "has width 1.5, not a whole number"),
    "width true": ({"width": True}, "has width True, not a whole number"),
}


@pytest.mark.parametrize("case", sorted(HAND_EDITS))
def test_a_hand_edited_image_size_gives_a_message_in_the_html_snippet(earlier: Path, case: str):
    change, words = HAND_EDITS[case]
    with open_project(earlier) as store:
        store.put(store.get(ImageRecord, "eb").replace(**change))
        with pytest.raises(TdriError) as info:  # the studio shows a TdriError's message
            pair_html(store, "et")
        assert words in info.value.message and "eb" in info.value.message and info.value.what_to_do
        store.put(store.get(ImageRecord, "eb").replace(width=16, height=16))
    assert_intact(earlier)


def test_control_characters_in_tags_never_reach_the_html_snippet(earlier: Path):
    from html.parser import HTMLParser

    with open_project(earlier) as store:
        ann = store.get(Annotation, "et")
        store.put(
            ann.replace(tags={"ea": ["wool\x1b[31m", "\x00nul", "bell\x07"]}, descriptions={"ea": "\x0c"})
        )
        snippet = pair_html(store, "et")
        assert not any(ord(c) < 32 and c not in "\n" for c in snippet)
        assert "wool\\x1b[31m" in snippet and "\\x00nul" in snippet and "bell\\x07" in snippet
        texts: list[str] = []
        parser = HTMLParser()
        parser.handle_data = texts.append  # type: ignore[method-assign]
        parser.feed(snippet)
        assert "wool\\x1b[31m" in texts
        store.put(ann)
    assert_intact(earlier)
