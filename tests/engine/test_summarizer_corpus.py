"""D2P keeps every fact the user gave: a corpus of dialogues, each answer and the original subject
checked word by word against the final prompt (structured summarizer, the session's replay)."""

from __future__ import annotations

import itertools
import re
from typing import Any

import pytest

from tdri_engine.api import Answer, Feedback
from tdri_engine.atelier import captions, questions
from tdri_engine.atelier.world import ASPECT_FIELDS, SLEEVED, VOCAB
from tdri_engine.records import DialogueTurn
from tdri_engine.summarizer import StructuredSummarizer

# Words that carry no fact of their own (articles, prepositions, connectives in a few languages).
STOP = set(
    "a an the of in on at by to and or with for from into onto over under near its it is are "
    "de la le les el los las un une una en et y del des du al au".split()
)


def content_words(text: str) -> set[str]:
    return {w for w in re.findall(r"[\w'’-]+", text.casefold()) if w.strip("'’-") and w not in STOP}


def missing(words: set[str], prompt: str) -> set[str]:
    said = content_words(prompt)
    low = prompt.casefold()
    # a word written without spaces (CJK) is found as a substring
    return {w for w in words if w not in said and not (not w.isascii() and w in low)}


# (first prompt, [(aspect, answer), ...], words the user replaced on purpose)
DIALOGUES: list[tuple[str, list[tuple[str, str]], set[str]]] = [
    # the issue's cases
    ("a woman in a dress", [("Color", "red"), ("Background", "on a beach at sunset")], set()),
    ("flowers float on the tea", [("Background", "in a garden"), ("Color", "pink")], set()),
    ("flowers float on the tea", [("Others", "with steam"), ("Style", "watercolor")], set()),
    # garments
    ("a dress", [("Color", "red"), ("Others", "silk"), ("Background", "on a beach")], set()),
    ("a long coat", [("Color", "camel"), ("Perspective", "full body"), ("Style", "minimalist")], set()),
    (
        "a pleated skirt",
        [("Size", "knee-length"), ("Color", "navy"), ("Background", "in a city street")],
        set(),
    ),
    (
        "a denim jacket with patches",
        [("Color", "light blue"), ("Others", "embroidered"), ("Style", "vintage")],
        set(),
    ),
    ("a knitted sweater", [("Color", "beige"), ("Size", "oversized"), ("Perspective", "flat lay")], set()),
    (
        "a pair of sneakers",
        [("Color", "white"), ("Background", "on a wooden table"), ("Others", "leather")],
        set(),
    ),
    ("a silk scarf", [("Others", "floral print"), ("Color", "emerald"), ("Perspective", "close-up")], set()),
    ("an evening gown", [("Color", "black"), ("Background", "on a runway"), ("Style", "elegant")], set()),
    ("a wool suit", [("Color", "charcoal"), ("Size", "fitted"), ("Background", "in an office")], set()),
    ("a raincoat", [("Color", "yellow"), ("Background", "in the rain"), ("Perspective", "side view")], set()),
    ("a t-shirt with a logo", [("Color", "grey"), ("Size", "cropped"), ("Style", "streetwear")], set()),
    ("a straw hat", [("Background", "on a chair in a garden"), ("Others", "with a ribbon")], set()),
    (
        "a leather handbag",
        [("Color", "cognac"), ("Others", "with gold buckles"), ("Background", "studio backdrop")],
        set(),
    ),
    ("a wedding dress", [("Others", "lace"), ("Size", "floor-length"), ("Background", "in a church")], set()),
    ("a pair of jeans", [("Size", "wide"), ("Color", "indigo"), ("Perspective", "back view")], set()),
    (
        "a summer blouse",
        [("Color", "pastel pink"), ("Others", "with puff sleeves"), ("Style", "romantic")],
        set(),
    ),
    # people wearing, holding, doing things
    ("a woman in a dress", [("Background", "on a beach at sunset"), ("Others", "with a straw hat")], set()),
    (
        "a man in a suit",
        [("Color", "navy"), ("Background", "in a city street"), ("Perspective", "full body")],
        set(),
    ),
    ("a girl holding a cat", [("Background", "in the park"), ("Style", "watercolor")], set()),
    ("a child in a raincoat", [("Color", "yellow"), ("Background", "in the rain")], set()),
    ("a model wearing a trench coat", [("Color", "beige"), ("Perspective", "front view")], set()),
    (
        "a dancer in a flowing skirt",
        [("Color", "white"), ("Perspective", "side view"), ("Style", "cinematic")],
        set(),
    ),
    ("a boy with a kite", [("Background", "on a hill"), ("Color", "red")], set()),
    ("an old man reading a newspaper", [("Background", "in a café"), ("Style", "vintage")], set()),
    (
        "two friends walking a dog",
        [("Background", "in a park in autumn"), ("Perspective", "wide shot")],
        set(),
    ),
    ("a woman", [("Color", "red"), ("Background", "in a garden")], set()),
    ("a bride in a veil", [("Others", "lace"), ("Background", "in a church")], set()),
    ("a chef holding a knife", [("Background", "in a kitchen"), ("Perspective", "close-up")], set()),
    ("a woman wearing a hat", [("Color", "black"), ("Style", "elegant")], set()),
    # objects and scenes
    ("a cat on a sofa", [("Color", "orange"), ("Background", "in a living room")], set()),
    ("a cup of tea", [("Background", "on a wooden table"), ("Others", "with lemon slices")], set()),
    ("a bowl of ramen", [("Background", "in a kitchen"), ("Perspective", "top view")], set()),
    ("a bicycle leaning against a wall", [("Color", "green"), ("Style", "photorealistic")], set()),
    ("a vintage car", [("Color", "red"), ("Background", "on a desert road")], set()),
    ("a lighthouse", [("Style", "oil painting"), ("Background", "by the sea at night")], set()),
    ("a vase of sunflowers", [("Background", "on a windowsill"), ("Style", "impressionist")], set()),
    ("a teapot with steam", [("Color", "white"), ("Others", "porcelain")], set()),
    ("a book on a desk", [("Others", "open pages"), ("Perspective", "from above")], set()),
    ("a clock tower", [("Background", "at sunset"), ("Perspective", "low angle")], set()),
    ("a sailboat on the lake", [("Color", "white"), ("Style", "watercolor")], set()),
    ("a dog chasing a ball", [("Background", "on a beach"), ("Color", "brown")], set()),
    ("birds fly over the river", [("Background", "at sunrise"), ("Style", "cinematic")], set()),
    ("a candle burns on the table", [("Color", "gold"), ("Perspective", "close-up")], set()),
    # places
    ("a mountain lake", [("Perspective", "aerial view"), ("Style", "photorealistic")], set()),
    ("a cozy café with wooden tables", [("Background", "at night"), ("Style", "warm and cinematic")], set()),
    ("a busy market street", [("Perspective", "wide shot"), ("Others", "with lanterns")], set()),
    ("a library with tall shelves", [("Style", "gothic"), ("Perspective", "from below")], set()),
    ("a garden path", [("Others", "with roses"), ("Background", "in the morning fog")], set()),
    # punctuation, accents and other languages
    ("a woman in a dress!", [("Color", "crimson"), ("Background", "on a beach at sunset.")], set()),
    ("une robe rouge", [("Background", "sur la plage"), ("Style", "élégante")], set()),
    ("un café crème on a table", [("Background", "in a Parisian café"), ("Perspective", "close-up")], set()),
    ("a naïve painting of a village", [("Color", "ochre and blue"), ("Others", "with a church")], set()),
    ("una falda roja", [("Background", "¿en la playa?"), ("Others", "¡con volantes!")], set()),
    ("ein Kleid aus Seide", [("Color", "dunkelblau"), ("Background", "„am Strand“")], set()),
    ("一条红色的连衣裙", [("Background", "在海滩上"), ("Style", "优雅")], set()),
    ("白いシャツ", [("Background", "「公園で」"), ("Perspective", "全身")], set()),
    ("فستان أحمر", [("Background", "على الشاطئ"), ("Style", "أنيق")], set()),
    ("a jalapeño on a plate", [("Color", "green"), ("Perspective", "macro shot")], set()),
    ("a façade in Lisbon", [("Others", "azulejo tiles"), ("Style", "photorealistic")], set()),
    ("a «retro» poster", [("Color", "mustard and teal"), ("Others", "with bold type")], set()),
    # a Content answer of another kind adds to the subject; one repeating every word refines it
    ("a dress", [("Content", "a handbag"), ("Color", "red")], set()),
    ("a coat", [("Content", "a wool coat"), ("Color", "camel"), ("Size", "long")], set()),
    ("a woman in a dress", [("Content", "a small dog"), ("Background", "in a park")], set()),
    ("a café", [("Content", "with a dog"), ("Style", "watercolor")], set()),
    # answers that change what the prompt said are replaced on purpose
    ("a red dress", [("Color", "navy"), ("Background", "on a beach")], {"red"}),
    ("a short skirt, on a beach", [("Size", "long"), ("Background", "in a garden")], {"short", "beach"}),
    # a Content answer of the subject's own kind replaces it: the user named a new subject
    ("a dress, on a mannequin", [("Color", "navy"), ("Content", "a coat")], {"dress"}),
    ("a woman in a dress", [("Content", "a jumpsuit"), ("Background", "on a beach")], {"dress"}),
    ("a cat on a sofa", [("Color", "orange"), ("Content", "a dog")], {"cat"}),
]


def _replay(prompt: str, answers: list[tuple[str, str]]) -> list[Any]:
    """Drive the summarizer as the session does: summarize, record the turn with the question
    asked, replay next round. Returns every round's summary, the first prompt's first."""
    summarizer = StructuredSummarizer()
    summaries = [summarizer.summarize([], prompt, prompt)]
    turns = [DialogueTurn(round=0, kind="prompt", user_input=prompt, prompt=summaries[0].prompt)]
    for aspect, text in answers:
        turns[-1] = turns[-1].replace(question_aspect=aspect, question=f"What about {aspect}?")
        summary = summarizer.summarize(list(turns), Answer(aspect, text), turns[-1].prompt)
        summaries.append(summary)
        turns.append(DialogueTurn(round=len(turns), kind="answer", user_input=text, prompt=summary.prompt))
    return summaries


def _run(prompt: str, answers: list[tuple[str, str]]) -> str:
    """The final prompt of a replayed dialogue."""
    return _replay(prompt, answers)[-1].prompt


def test_the_corpus_is_large_and_varied() -> None:
    assert len(DIALOGUES) >= 60
    assert len({p for p, _, _ in DIALOGUES}) >= 55


@pytest.mark.parametrize(("prompt", "answers", "replaced"), DIALOGUES, ids=[d[0] for d in DIALOGUES])
def test_every_fact_the_user_gave_is_in_the_final_prompt(
    prompt: str, answers: list[tuple[str, str]], replaced: set[str]
) -> None:
    final = _run(prompt, answers)
    for aspect, text in answers:
        assert not missing(content_words(text), final), f"{aspect} {text!r} lost in {final!r}"
    assert not missing(content_words(prompt) - replaced, final), f"{prompt!r} lost words in {final!r}"
    for word in replaced:
        assert word not in content_words(final), f"{word!r} should have been replaced in {final!r}"


def test_the_issues_cases_read_as_the_user_meant() -> None:
    assert _run("a woman in a dress", [("Color", "red")]) == "a woman in a red dress"
    assert (
        _run("a woman in a dress", [("Color", "red"), ("Background", "on a beach at sunset")])
        == "a woman in a red dress, on a beach at sunset"
    )
    assert _run("flowers float on the tea", [("Background", "in a garden")]) == (
        "flowers float on the tea, in a garden"
    )
    assert _run("a woman", [("Color", "red")]) == "a woman in red"
    assert _run("a dress", [("Content", "a handbag")]) == "a dress and a handbag"
    assert (
        _run("a dress", [("Color", "red"), ("Content", "a model wearing it")])
        == "a model wearing a red dress"
    )
    assert _run("a «retro» poster", [("Color", "teal")]) == "a teal poster, retro"


def test_feedback_about_a_subject_with_a_garment_keeps_its_prepositions() -> None:
    summarizer = StructuredSummarizer()
    first = summarizer.summarize([], "a woman in a dress", "a woman in a dress")
    turns = [DialogueTurn(round=0, kind="prompt", user_input="a woman in a dress", prompt=first.prompt)]
    said = summarizer.summarize(turns, Feedback("in a garden"), first.prompt)
    assert said.prompt == "a woman in a dress, in a garden"
    assert summarizer.summarize(turns, Feedback("make the dress red"), first.prompt).prompt == (
        "a woman in a red dress"
    )


# --------------------------------------------------------------------------------------------
# Content answers: An answer to the Content question names what the image should show: one of the
# same kind as the subject replaces it and every other fact of the dialogue stays; an answer that
# says it adds ("and a bag", "with a hat"), or names a thing of another kind, is shown as well.
# --------------------------------------------------------------------------------------------

# a dialogue on the Atelier before the Content question, one-click answers of every other aspect
ATELIER_ANSWERS = [
    ("Color", "red"),
    ("Style", "on a mannequin"),
    ("Background", "in a studio"),
    ("Perspective", "front view"),
    ("Others", "with stripes"),
    ("Size", "knee-length"),
]


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


# --------------------------------------------------------------------------------------------
# One-click answers on the Atelier: A Designer on the Atelier clicks one-click answers round after
# round: each click is one world value, and the prompt keeps every value clicked so far, a later
# value of the same field replacing the earlier one (length, fit and sleeves are three fields of
# one Size aspect; pattern and accessory two of Others).
# --------------------------------------------------------------------------------------------


def _clicks(prompt: str, clicks: list[tuple[str, str]]) -> list[str]:
    """The prompts of a dialogue in which every answer is a click (recorded and replayed as the
    session does)."""
    summaries = _replay(prompt, clicks)
    for (_, text), summary in zip(clicks, summaries[1:], strict=True):
        assert not summary.warnings, (text, summary.warnings)
    return [s.prompt for s in summaries]


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
        == "a loose coat with long sleeves"
    )
    # what a reparsed prompt says is what the slots say: a recorded prompt reads back the same
    parser = StructuredSummarizer().parser
    assert parser.components("a loose coat with long sleeves")["Size"] == "loose, long sleeves"
    assert parser.components("a loose coat, with long sleeves")["Size"] == "loose, long sleeves"
    # a size of no group is a whole new answer; "bigger" is a scale, not a length
    assert _clicks("a dress", [("Size", "short"), ("Size", "much shorter than now")])[-1] == (
        "a dress, much shorter than now"
    )
    assert _clicks("a dress", [("Size", "short"), ("Size", "big")])[-1] == "a big short dress"


# --------------------------------------------------------------------------------------------
# Patterns and accessories in the Atelier's words: "checks", "dots" and "plain" are patterns, and
# what a garment is "with" reads as one list, as the captions say it ("a red dress with long
# sleeves, stripes and a belt"), never "a red dress, checks" or "a red plain dress".
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("pattern", ["checks", "dots", "gingham checks", "stripes"])
def test_a_pattern_answer_follows_the_garment_with_with(pattern: str) -> None:
    assert (
        _run("a red dress in a studio", [("Others", pattern)]) == f"a red dress with {pattern}, in a studio"
    )


def test_plain_goes_before_the_colour_and_replaces_the_pattern() -> None:
    assert _run("a red dress", [("Others", "plain")]) == "a plain red dress"
    assert _run("a red dress", [("Others", "stripes"), ("Others", "plain")]) == "a plain red dress"
    assert (
        _run("a dress", [("Size", "short"), ("Others", "plain"), ("Color", "navy")])
        == "a short plain navy dress"
    )


def test_what_the_garment_is_with_reads_as_one_list_and_a_new_pattern_replaces_only_the_pattern() -> None:
    clicks = [("Size", "long sleeves"), ("Others", "stripes"), ("Others", "a belt")]
    assert _run("a red dress", clicks) == "a red dress with long sleeves, stripes and a belt"
    assert (
        _run("a red dress", [*clicks, ("Others", "checks")])
        == "a red dress with long sleeves, a belt and checks"
    )
    assert _run("a red dress", [("Others", "a hat")]) == "a red dress with a hat"
    # the one-click wordings ("with checks", "with a hat") join the list the same way
    clicks = [("Size", "long sleeves"), ("Others", "with stripes"), ("Others", "with a hat")]
    assert _run("a red dress", clicks) == "a red dress with long sleeves, stripes and a hat"
    # a recorded prompt in that form reads back into the same slots
    parser = StructuredSummarizer().parser
    parts = parser.parse("a red dress with long sleeves, stripes and a belt, in a studio")
    assert parts["Size"] == ["long sleeves"] and parts["Others"] == ["stripes", "a belt"]
    assert parser.parse("a red dress with long sleeves and stripes")["Others"] == ["stripes"]
    # after a garment, such a list is its details, not part of the subject (the Content question
    # asks about "the dress", and a new garment keeps them); a person keeps the hat she wears
    parts = parser.parse("a yellow dress with long sleeves and a belt, in a studio")
    assert parts["Content"] == ["a dress"] and parts["Others"] == ["a belt"], parts
    assert parser.parse("a girl with a hat")["Content"] == ["a girl with a hat"]
    # two adjectives joined by "and" both come out of the subject, and so does their "and"
    assert parser.parse("a silk and lace dress")["Content"] == ["a dress"]
    assert parser.parse("a striped and fitted dress")["Content"] == ["a dress"]
    # a list with something the keyword lists do not know stays one phrase
    assert parser.parse("a café with a dog and a cat")["Others"] == ["with a dog and a cat"]


@pytest.mark.parametrize("seed", range(5))
def test_a_canonical_atelier_caption_reads_back_to_its_own_values(seed: int) -> None:
    """The world's caption, parsed and rendered by the summarizer, still names every value once."""
    import random

    from tdri_engine.atelier.world import random_record

    parser = StructuredSummarizer().parser
    rng = random.Random(seed)
    for i in range(40):
        record = random_record(rng)
        caption = captions.full_caption(record, None if i % 2 else seed * 100 + i)  # canonical, worded
        rendered = parser.render(parser.parse(caption))
        assert captions.mentions(rendered) == captions.mentions(caption), (caption, rendered)
