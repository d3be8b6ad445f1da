"""A Designer on the Atelier clicks one-click answers round after round: each click is one world
value, and the prompt keeps every value clicked so far, a later value of the same field
replacing the earlier one (length, fit and sleeves are three fields of one Size aspect; pattern
and accessory two of Others)."""

from __future__ import annotations

import pytest

from tdri_engine.api import Answer
from tdri_engine.atelier import captions, questions
from tdri_engine.atelier.world import ASPECT_FIELDS, SLEEVED, VOCAB
from tdri_engine.records import DialogueTurn
from tdri_engine.summarizer import StructuredSummarizer


def _clicks(prompt: str, clicks: list[tuple[str, str]]) -> list[str]:
    """The prompts of a dialogue in which every answer is a click (recorded and replayed as the
    session does)."""
    summarizer = StructuredSummarizer()
    first = summarizer.summarize([], prompt, prompt)
    turns = [DialogueTurn(round=0, kind="prompt", user_input=prompt, prompt=first.prompt)]
    for aspect, text in clicks:
        turns[-1] = turns[-1].replace(question_aspect=aspect, question=f"What about {aspect}?")
        summary = summarizer.summarize(list(turns), Answer(aspect, text), turns[-1].prompt)
        assert not summary.warnings, (text, summary.warnings)
        turns.append(DialogueTurn(round=len(turns), kind="answer", user_input=text, prompt=summary.prompt))
    return [t.prompt for t in turns]


def _click(field: str, value: str) -> tuple[str, str]:
    aspect = next(a for a in ("Size", "Others", "Color") if field in ASPECT_FIELDS[a])
    return aspect, questions.wording(field, value)


@pytest.mark.parametrize("garment", VOCAB["garment"])
def test_every_clicked_value_stays_until_its_own_field_is_clicked_again(garment: str) -> None:
    sequence = [
        ("length", "short"),
        ("color", "red"),
        ("fit", "fitted"),
        ("sleeves", "sleeveless"),
        ("pattern", "stripes"),
        ("accessory", "belt"),
        ("length", "long"),
        ("sleeves", "long sleeves"),
        ("pattern", "dots"),
        ("fit", "loose"),
        ("length", "knee-length"),
        ("sleeves", "short sleeves"),
    ]
    if garment not in SLEEVED:  # no sleeve answers are offered for it
        sequence = [(f, v) for f, v in sequence if f != "sleeves"]
    prompts = _clicks(captions.value_prompt("garment", garment), [_click(f, v) for f, v in sequence])
    expected: dict[str, str] = {"garment": garment}
    for (field, value), prompt in zip(sequence, prompts[1:], strict=True):
        expected[field] = value
        read = captions.mentions(prompt)
        for f, v in expected.items():
            assert read[f] == {v: 1}, (f, v, prompt)
        for f in ("length", "fit", "sleeves", "pattern", "color"):
            if f not in expected:
                assert not read[f], (f, prompt)


def test_sizes_read_in_english_order_and_sleeves_with_a_length_follow() -> None:
    prompts = _clicks("a dress", [("Size", "sleeveless"), ("Size", "fitted"), ("Size", "short")])
    assert prompts[-1] == "a short fitted sleeveless dress"
    # "sleeveless" goes next to the garment, as the captions say it ("short" before "sleeveless"
    # would read as a sleeve length, not the length of the dress)
    assert _clicks("a dress", [("Size", "short"), ("Size", "sleeveless"), ("Color", "red")])[-1] == (
        "a short red sleeveless dress"
    )
    assert (
        _clicks("a coat", [("Size", "long sleeves"), ("Size", "loose")])[-1]
        == "a loose coat, with long sleeves"
    )
    # what a reparsed prompt says is what the slots say: a recorded prompt reads back the same
    parser = StructuredSummarizer().parser
    assert parser.components("a loose coat, with long sleeves")["Size"] == "loose, long sleeves"
    # a size of no group is a whole new answer; "bigger" is a scale, not a length
    assert _clicks("a dress", [("Size", "short"), ("Size", "much shorter than now")])[-1] == (
        "a dress, much shorter than now"
    )
    assert _clicks("a dress", [("Size", "short"), ("Size", "big")])[-1] == "a big short dress"
