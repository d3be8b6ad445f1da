"""An answer to the Content question names what the image should show: one of the same kind as
the subject replaces it and every other fact of the dialogue stays; an answer that says it adds
("and a bag", "with a hat"), or names a thing of another kind, is shown as well."""

from __future__ import annotations

import itertools

import pytest

from tdri_engine.api import Answer
from tdri_engine.atelier import captions
from tdri_engine.atelier.world import VOCAB
from tdri_engine.records import DialogueTurn
from tdri_engine.summarizer import StructuredSummarizer

# a dialogue on the Atelier before the Content question, one-click answers of every other aspect
ATELIER_ANSWERS = [
    ("Color", "red"),
    ("Style", "on a mannequin"),
    ("Background", "in a studio"),
    ("Perspective", "front view"),
    ("Others", "with stripes"),
    ("Size", "knee-length"),
]


def _run(prompt: str, answers: list[tuple[str, str]]) -> str:
    """The session's way: summarize, record the turn with the question asked, replay next round."""
    summarizer = StructuredSummarizer()
    first = summarizer.summarize([], prompt, prompt)
    turns = [DialogueTurn(round=0, kind="prompt", user_input=prompt, prompt=first.prompt)]
    for aspect, text in answers:
        turns[-1] = turns[-1].replace(question_aspect=aspect, question=f"What about {aspect}?")
        summary = summarizer.summarize(list(turns), Answer(aspect, text), turns[-1].prompt)
        turns.append(DialogueTurn(round=len(turns), kind="answer", user_input=text, prompt=summary.prompt))
    return turns[-1].prompt


def test_the_reported_case_a_coat_instead_of_a_dress() -> None:
    assert _run("a dress", [("Style", "on a mannequin")]) == "a dress, on a mannequin"
    assert _run("a dress", [("Style", "on a mannequin"), ("Content", "a coat")]) == "a coat, on a mannequin"


@pytest.mark.parametrize(("old", "new"), list(itertools.permutations(VOCAB["garment"], 2)))
def test_a_garment_answer_replaces_the_garment_and_keeps_every_other_value(old: str, new: str) -> None:
    start = captions.value_prompt("garment", old)
    before = _run(start, ATELIER_ANSWERS)
    after = _run(start, [*ATELIER_ANSWERS, ("Content", captions.value_prompt("garment", new))])
    if new == "trousers":  # the pair takes the adjectives, as the captions say it
        assert after.startswith("a pair of knee-length red trousers"), after
    read_before, read_after = captions.mentions(before), captions.mentions(after)
    assert read_before["garment"] == {old: 1}, before
    assert read_after["garment"] == {new: 1}, (before, after)
    for field in read_before:
        if field != "garment":
            assert read_after[field] == read_before[field], (field, before, after)


def test_the_answer_replaces_the_phrase_of_its_own_kind_in_any_subject() -> None:
    # no kind the keyword lists know on either side: the answer names the new main subject
    assert _run("a cat on a sofa", [("Content", "a dog")]) == "a dog on a sofa"
    assert _run("a cat on a sofa", [("Color", "orange"), ("Content", "a dog")]) == "an orange dog on a sofa"
    assert _run("a café with a dog", [("Content", "a bakery")]) == "a bakery, with a dog"
    assert _run("a vase of sunflowers", [("Content", "a jug of tulips")]) == "a jug of tulips"
    # a garment for the garment, a person for the person; the rest of the subject stays
    assert _run("a woman in a red dress", [("Content", "a coat")]) == "a woman in a red coat"
    assert _run("a woman in a dress", [("Content", "a man")]) == "a man in a dress"
    assert _run("a model wearing a dress", [("Content", "a pair of trousers")]) == (
        "a model wearing a pair of trousers"
    )
    # an answer that places itself replaces the whole subject it stands for
    assert _run("a cat on a sofa", [("Content", "a dog on a rug")]) == "a dog on a rug"
    # the answer's own colour or size replaces the dialogue's, never stands beside it
    assert _run("a navy dress", [("Content", "a red coat")]) == "a red coat"
    assert _run("a long navy dress, on a beach", [("Content", "a short coat")]) == (
        "a short navy coat, on a beach"
    )
    assert _run("a woman in a dress", [("Content", "a tall man")]) == "a tall man in a dress"
    # a refinement that repeats the subject still refines it
    assert _run("a coat", [("Content", "a wool coat")]) == "a wool coat"
    assert _run("a dress", [("Color", "red"), ("Content", "a model wearing it")]) == (
        "a model wearing a red dress"
    )


def test_an_answer_that_adds_or_names_another_kind_keeps_the_subject() -> None:
    assert _run("a dress", [("Content", "and a bag")]) == "a dress and a bag"
    assert _run("a dress", [("Content", "with a hat")]) == "a dress with a hat"
    assert _run("a café", [("Content", "with a dog")]) == "a café with a dog"
    assert _run("a café", [("Content", "and a dog")]) == "a café and a dog"
    # an accessory is not a garment of the same kind: the generic template's one-click answers
    assert _run("a dress", [("Content", "a handbag")]) == "a dress and a handbag"
    assert _run("a red coat", [("Content", "a hat")]) == "a red coat and a hat"
    assert _run("a dress", [("Content", "a red handbag")]) == "a dress and a red handbag"
    assert _run("a woman in a dress", [("Content", "a small dog")]) == "a woman in a dress and a small dog"
    # a second Content answer of the accessory's kind replaces the accessory, not the dress
    assert _run("a dress", [("Content", "a handbag"), ("Content", "a hat")]) == "a dress and a hat"
    assert _run("a dress", [("Content", "a handbag"), ("Content", "a coat")]) == "a coat and a handbag"


@pytest.mark.parametrize("sleeves", VOCAB["sleeves"])
def test_sleeves_leave_with_a_garment_for_one_that_has_none_and_the_user_is_told(sleeves: str) -> None:
    answers = [("Size", "short"), ("Size", sleeves), ("Color", "red")]
    for new in VOCAB["garment"]:
        after = _run("a dress", [*answers, ("Content", captions.value_prompt("garment", new))])
        read = captions.mentions(after)
        assert read["garment"] == {new: 1} and read["length"] == {"short": 1} and read["color"] == {"red": 1}
        assert read["sleeves"] == ({} if new in ("skirt", "trousers") else {sleeves: 1}), after
    summarizer = StructuredSummarizer()
    prompt = _run("a dress", answers)
    turns = [
        DialogueTurn(round=0, kind="prompt", user_input=prompt, prompt=prompt, question_aspect="Content")
    ]
    summary = summarizer.summarize(turns, Answer("Content", "a skirt"), prompt)
    assert summary.prompt == "a short red skirt"
    assert summary.warnings == (f"'{sleeves}' was left out: a skirt has no sleeves.",)
    # a skirt and a top: the top keeps its sleeves
    assert sleeves in _run("a dress", [*answers, ("Content", "and a skirt")])
