"""D2P keeps every fact the user gave: a corpus of dialogues, each answer and the original subject
checked word by word against the final prompt (structured summarizer, the session's replay)."""

from __future__ import annotations

import re

import pytest

from tdri_engine.api import Answer, Feedback
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


def _run(prompt: str, answers: list[tuple[str, str]]) -> str:
    """Drive the summarizer as the session does: summarize, record the turn, replay next round."""
    summarizer = StructuredSummarizer()
    first = summarizer.summarize([], prompt, prompt)
    turns = [DialogueTurn(round=0, kind="prompt", user_input=prompt, prompt=first.prompt)]
    for aspect, text in answers:
        turns[-1] = turns[-1].replace(question_aspect=aspect, question=f"What about {aspect}?")
        summary = summarizer.summarize(list(turns), Answer(aspect, text), turns[-1].prompt)
        turns.append(DialogueTurn(round=len(turns), kind="answer", user_input=text, prompt=summary.prompt))
    return turns[-1].prompt


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
