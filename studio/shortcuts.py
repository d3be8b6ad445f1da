"""Every keyboard shortcut in one table: the views bind from it and Help lists it.

Single keys (1-4, +, -, 0, L) act only when no text box has focus: Qt gives a focused text
box the key first, so typing "1" in a description types a 1. Esc leaves a text box. Tab moves
through the annotation view as Help says: left image, right image, left description, right
description, the choices, then the side panel; text boxes let Tab move on.

``CHIP_KEYS`` are the quick-tag keys: F2-F9 toggle the eight most used tags of the project on
the selected image (function keys, because they are the same on every keyboard layout).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Shortcut:
    keys: tuple[str, ...]  # QKeySequence strings; the first is shown in buttons
    text: str
    where: str  # "Annotate", "Refine", "Everywhere", "Image"


SHORTCUTS: dict[str, Shortcut] = {
    # annotation view
    "annotate.left_better": Shortcut(("1",), "Left image is better", "Annotate"),
    "annotate.right_better": Shortcut(("2",), "Right image is better", "Annotate"),
    "annotate.tie": Shortcut(("3",), "Tie: both equally good", "Annotate"),
    "annotate.both_bad": Shortcut(("4",), "Both bad", "Annotate"),
    "annotate.focus_left": Shortcut(("Alt+1",), "Describe the left image (focus its box)", "Annotate"),
    "annotate.focus_right": Shortcut(("Alt+2",), "Describe the right image (focus its box)", "Annotate"),
    "annotate.leave_text": Shortcut(("Esc",), "Leave the text box (then 1-4 choose)", "Annotate"),
    "annotate.save": Shortcut(("Ctrl+S",), "Save Task (mark it done)", "Annotate"),
    "annotate.save_next": Shortcut(("Ctrl+Return",), "Save Task and go to the next task to do", "Annotate"),
    "annotate.next": Shortcut(("Alt+Right", "Ctrl+PgDown"), "Next task", "Annotate"),
    "annotate.previous": Shortcut(("Alt+Left", "Ctrl+PgUp"), "Previous task", "Annotate"),
    "annotate.jump": Shortcut(("Ctrl+J",), "Jump to task number", "Annotate"),
    "annotate.tag": Shortcut(("Ctrl+T",), "Add a tag to the selected image", "Annotate"),
    "annotate.switch_image": Shortcut(("Ctrl+Tab",), "Tags: switch between left and right image", "Annotate"),
    "annotate.load_images": Shortcut(("Ctrl+O",), "Load Image(s)", "Annotate"),
    "annotate.load_folder": Shortcut(("Ctrl+Shift+O",), "Load a folder of images", "Annotate"),
    "annotate.load_last": Shortcut(("Ctrl+L",), "Load Last: the task you worked on last", "Annotate"),
    "annotate.copy_html": Shortcut(("Ctrl+Shift+C",), "Copy the pair's HTML snippet", "Annotate"),
    "annotate.reopen": Shortcut(("Ctrl+Shift+S",), "Mark the task as to do again (reopen it)", "Annotate"),
    "annotate.replace_image": Shortcut(
        ("Ctrl+R",), "Replace the selected image of this task with another file", "Annotate"
    ),
    "annotate.toggle_html": Shortcut(("Ctrl+Shift+H",), "Show or hide the task's HTML snippet", "Annotate"),
    "annotate.toggle_details": Shortcut(("Ctrl+I",), "Show or hide the task and image details", "Annotate"),
    "annotate.task_list": Shortcut(("Ctrl+Shift+L",), "Go to the task list (Enter opens a task)", "Annotate"),
    # refinement view
    "refine.send": Shortcut(
        ("Ctrl+Return",),
        "Generate (first round), Refine with what you typed, or run the edited D2P prompt",
        "Refine",
    ),
    "refine.focus_prompt": Shortcut(
        ("Ctrl+L",), "Type in the prompt box (prompt, answer, feedback)", "Refine"
    ),
    "refine.answer": Shortcut(
        ("Alt+1", "Alt+2", "Alt+3", "Alt+4", "Alt+5", "Alt+6"),
        "Answer the question with its 1st to 6th one-click answer",
        "Refine",
    ),
    "refine.previous_round": Shortcut(("Alt+Left",), "Show the previous round on the right", "Refine"),
    "refine.next_round": Shortcut(("Alt+Right",), "Show the next round on the right", "Refine"),
    "refine.gallery": Shortcut(("Ctrl+G",), "All rounds of the dialogue (Enter shows one)", "Refine"),
    "refine.save_as": Shortcut(("Ctrl+S",), "Save the right round's image as a PNG file", "Refine"),
    "refine.copy": Shortcut(("Ctrl+Shift+C",), "Copy the right round's image", "Refine"),
    "refine.star": Shortcut(("Ctrl+D",), "Star or unstar the right round", "Refine"),
    "refine.reference": Shortcut(
        ("Ctrl+U",), "Next round edits the right round (again: back to the latest)", "Refine"
    ),
    "refine.open_folder": Shortcut(("Ctrl+Shift+F",), "Open the folder of the right round's image", "Refine"),
    "refine.formula": Shortcut(("Ctrl+I",), "Show or hide the formula behind the question", "Refine"),
    "refine.skip": Shortcut(("Ctrl+K",), "Skip the clarification question", "Refine"),
    "refine.cancel": Shortcut(("Esc",), "Cancel the running round", "Refine"),
    "refine.edit_prompt": Shortcut(("Ctrl+E",), "Edit the prompt the studio made (D2P)", "Refine"),
    "refine.pose": Shortcut(("Ctrl+P",), "Show or hide the pose overlay", "Refine"),
    "refine.left_better": Shortcut(("1",), "Left round is better", "Refine"),
    "refine.right_better": Shortcut(("2",), "Right round is better", "Refine"),
    "refine.tie": Shortcut(("3",), "Tie", "Refine"),
    "refine.both_bad": Shortcut(("4",), "Both bad", "Refine"),
    # everywhere
    "app.annotate": Shortcut(("Ctrl+1",), "Show the annotation view", "Everywhere"),
    "app.refine": Shortcut(("Ctrl+2",), "Show the refinement view", "Everywhere"),
    "app.undo": Shortcut(("Ctrl+Z",), "Undo the last annotation edit", "Everywhere"),
    "app.redo": Shortcut(("Ctrl+Shift+Z", "Ctrl+Y"), "Redo", "Everywhere"),
    "app.settings": Shortcut(("Ctrl+,",), "Settings", "Everywhere"),
    "app.help": Shortcut(("F1",), "Guidelines and shortcuts", "Everywhere"),
    "app.quit": Shortcut(("Ctrl+Q",), "Quit (everything is already saved)", "Everywhere"),
    "app.messages": Shortcut(
        ("Ctrl+Shift+M",), "Message history (every message of this session)", "Everywhere"
    ),
    "app.dismiss_message": Shortcut(
        ("Ctrl+Shift+D",), "Dismiss the message shown in the strip", "Everywhere"
    ),
    # image panels
    "image.zoom_in": Shortcut(("+",), "Zoom in (or the mouse wheel)", "Image"),
    "image.zoom_out": Shortcut(("-",), "Zoom out", "Image"),
    "image.fit": Shortcut(("0",), "Fit / 100% (or double-click); drag to pan", "Image"),
    "image.loupe": Shortcut(("L",), "Loupe: magnify three times under a square (again: hide)", "Image"),
    "image.pan": Shortcut(
        ("Left", "Right", "Up", "Down"), "Pan when zoomed in; move the loupe when shown", "Image"
    ),
}

CHIP_KEYS = ("F2", "F3", "F4", "F5", "F6", "F7", "F8", "F9")
for _n, _key in enumerate(CHIP_KEYS, 1):
    SHORTCUTS[f"annotate.chip{_n}"] = Shortcut(
        (_key,), f"Quick tag {_n}: toggle the project's {_n}. most used tag on the selected image", "Annotate"
    )


def keys(name: str) -> tuple[str, ...]:
    return SHORTCUTS[name].keys


def label(name: str) -> str:
    return SHORTCUTS[name].keys[0]
