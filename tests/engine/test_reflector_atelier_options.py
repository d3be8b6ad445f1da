"""The atelier profile's one-click answers are the world's own values, worded as its generator
was trained, and a click on one puts exactly that value into the prompt."""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest

from tdri_engine.api import Answer
from tdri_engine.atelier import captions, questions
from tdri_engine.atelier.world import ASPECT_FIELDS, SLEEVED, VOCAB
from tdri_engine.errors import BadInput, TdriError
from tdri_engine.models import load_profile, profile_from_dict
from tdri_engine.paths import resource_path
from tdri_engine.records import DialogueTurn
from tdri_engine.reflector import Reflector, Settled, make_reflector
from tdri_engine.settings import ASPECTS, EngineSettings
from tdri_engine.summarizer import StructuredSummarizer
from tdri_engine.templates import default_templates, questions_templates

ATELIER = questions_templates(load_profile("atelier").questions)
# one-word first prompts: a garment word for every aspect but Content (whose answer is the
# garment: there the word names none of the world's values)
PROMPTS = {a: ("dress", "trousers", "garment") for a in ASPECTS} | {"Content": ("garment", "outfit")}


def reflector(templates=ATELIER) -> Reflector:
    return Reflector(None, None, EngineSettings(), rng_seed=0, templates=templates)


def clicked(prompt: str, aspect: str, option: str):
    """The prompt after a click on ``option``, the way the session makes it: round 0's turn
    (the prompt as typed, the question asked after it), then the summarizer on Answer(aspect, option)."""
    summarizer = StructuredSummarizer()
    first = summarizer.summarize([], prompt, "")
    turn = DialogueTurn(
        round=0,
        kind="prompt",
        user_input=prompt,
        prompt=first.prompt,
        question="?",
        question_aspect=aspect,
        question_options=list(reflector().options(aspect, first.prompt)),
    )
    return summarizer.summarize([turn], Answer(aspect, option), first.prompt)


def read(text: str, fields) -> dict[str, dict[str, int]]:
    m = captions.mentions(text)
    return {f: m[f] for f in fields}


def test_the_committed_atelier_questions_are_what_the_worlds_vocabulary_gives() -> None:
    committed = resource_path("templates", "questions_atelier.json").read_text(encoding="utf-8")
    assert committed == questions.text(), "run: python -m tdri_engine.atelier.questions"
    for aspect in ASPECTS:  # every value of every field of every aspect is offered, once
        offered = ATELIER.questions["aspects"][aspect]["options"]
        assert len(offered) == len(set(offered)) == sum(len(VOCAB[f]) for f in ASPECT_FIELDS[aspect])


@pytest.mark.parametrize("aspect", ASPECTS)
def test_a_click_on_each_option_puts_exactly_its_world_value_into_the_prompt(aspect: str) -> None:
    fields = ASPECT_FIELDS[aspect]
    pairs = questions.aspect_values(aspect)
    assert {(f, v) for f in fields for v in VOCAB[f]} == set(pairs)
    for prompt in PROMPTS[aspect]:
        before = captions.mentions(prompt)
        assert all(not before[f] for f in fields), prompt
        for field, value in pairs:
            option = questions.wording(field, value)
            assert option in ATELIER.questions["aspects"][aspect]["options"]
            summary = clicked(prompt, aspect, option)
            assert not summary.warnings, (prompt, option, summary.warnings)  # it stayed in its aspect
            after = captions.mentions(summary.prompt)
            expected = {f: ({value: 1} if f == field else {}) for f in fields}
            assert {f: after[f] for f in fields} == expected, (prompt, option, summary.prompt)
            others = [f for f in after if f not in fields]
            assert {f: after[f] for f in others} == {f: before[f] for f in others}, summary.prompt


def test_options_the_prompt_states_are_left_out_by_the_worlds_reader() -> None:
    r = reflector()
    assert "red" not in r.options("Color", "a red dress")
    assert "red" in r.options("Color", "a dress")
    assert "a dress" not in r.options("Content", "a red dress")
    prompt = "trousers on the beach with short sleeves and stripes"
    assert "a pair of trousers" not in r.options("Content", prompt)
    assert "on a beach" not in r.options("Background", prompt)
    size = r.options("Size", prompt)
    assert "short sleeves" not in size and "short" in size  # "short sleeves" states no length
    assert "with stripes" not in r.options("Others", prompt)
    for aspect in ASPECTS:
        offered = r.options(aspect, "a dress")
        assert len(offered) <= 6  # the studio's one-click answers: Alt+1 … Alt+6


def test_what_the_image_shows_is_offered_last() -> None:
    r = reflector()
    # twelve colours, six shown: the image's own colour (its caption) makes room for a change
    spread = ("red", "white", "blue", "yellow", "black", "grey", "green")  # farthest-point order
    assert r.options("Color", "a dress") == spread[:6]
    assert r.options("Color", "a dress", "mostly red") == spread[1:]
    size = ("fitted", "sleeveless", "knee-length", "short sleeves", "long", "short")
    assert r.options("Size", "a dress", "short, loose, long sleeves") == size
    # the generic template keeps its order whatever the caption says
    generic = reflector(default_templates())
    assert generic.options("Style", "a dress", "elegant") == generic.options("Style", "a dress")


class _Registry:
    def __init__(self, profile):
        self.profile = profile

    def get(self, role: str):
        return SimpleNamespace(role=role)


def test_the_atelier_profile_asks_with_its_own_options_and_the_others_do_not_change() -> None:
    atelier = make_reflector(EngineSettings(), _Registry(load_profile("atelier")), seed=0)
    q, _ = atelier.question("Style", "a red dress", {"Style": "flat lay"}, {}, 0.9)
    assert q.options == ("line sketch", "on a mannequin", "on a hanger", "flat lay")
    generic = default_templates().questions["aspects"]
    for name in ("demo", "sd15"):
        r = make_reflector(EngineSettings(), _Registry(load_profile(name)), seed=0)
        assert r.templates is default_templates()
        for aspect in ASPECTS:
            assert r.options(aspect, "a dress") == tuple(generic[aspect]["options"][:6])
    q, _ = r.question("Style", "an elegant red dress", {"Style": "casual"}, {}, 0.9)
    assert q.options == ("casual", "minimalist", "vintage", "bohemian", "streetwear", "photorealistic")
    # a profile extending the atelier keeps its questions; one may name them or turn them off
    assert profile_from_dict({"extends": "atelier"}).questions == "atelier"
    assert profile_from_dict({"extends": "atelier", "questions": ""}).questions == ""
    assert profile_from_dict({"extends": "sd15", "questions": "atelier"}).to_dict()["questions"] == "atelier"


def test_a_bad_questions_name_is_a_clear_error() -> None:
    with pytest.raises(BadInput, match="questions"):
        profile_from_dict({"extends": "sd15", "questions": "../etc/passwd"})
    with pytest.raises(TdriError, match="questions_nosuch.json") as err:
        questions_templates("nosuch")
    assert err.value.kind == "resources"


SLEEVE_OPTIONS = {questions.wording("sleeves", v) for v in VOCAB["sleeves"]}


@pytest.mark.parametrize("garment", VOCAB["garment"])
def test_sleeve_answers_are_offered_only_for_a_garment_with_sleeves(garment: str) -> None:
    r = reflector()
    size = ATELIER.questions["aspects"]["Size"]["options"]
    noun = captions.value_prompt("garment", garment)
    for prompt in (noun, f"{noun}, on a mannequin", f"a knee-length red {garment}, in a studio, front view"):
        first = StructuredSummarizer().summarize([], prompt, "").prompt
        offered = r.options("Size", first)
        applicable = [
            o
            for o in size
            if (garment in SLEEVED or o not in SLEEVE_OPTIONS)
            and not re.search(ATELIER.questions["aspects"]["Size"]["stated_by"][o], first.lower())
        ]
        assert bool(SLEEVE_OPTIONS & set(offered)) == (garment in SLEEVED), (prompt, offered)
        # the six one-click answers (Alt+1 … Alt+6) are filled from what applies, in order
        assert offered == tuple(applicable[:6]), (prompt, offered)
        assert len(offered) == min(6, len(applicable)) and len(set(offered)) == len(offered)
        # the question the studio shows numbers the same answers
        q, _ = r.question("Size", first, {"Size": "short, loose"}, {}, 0.9)
        assert not SLEEVE_OPTIONS & set(q.options) or garment in SLEEVED, q.options
        assert len(q.options) == len(offered)
        # the image's caption may rank them, never bring a sleeve back
        assert set(r.options("Size", first, "long sleeves")) == set(offered)


def test_sleeve_answers_stay_where_the_prompt_names_no_garment_or_one_with_sleeves() -> None:
    r = reflector()
    assert "sleeveless" in r.options("Size", "a red garment")
    assert "sleeveless" in r.options("Size", "a skirt and a t-shirt")
    assert "sleeveless" not in r.options("Size", "a pair of trousers")
    # the generic template has no such rule: its answers do not change
    generic = reflector(default_templates())
    assert generic.options("Size", "a skirt") == tuple(
        default_templates().questions["aspects"]["Size"]["options"][:6]
    )


class _RecordingClip:
    """Scores the answer above every other text and keeps the texts it was asked about."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def image_text(self, image, texts):
        self.texts = list(texts)
        return [0.9] + [0.1] * (len(texts) - 1)


def test_an_answer_is_checked_against_the_answers_that_apply_to_the_garment() -> None:
    clip = _RecordingClip()
    r = Reflector(None, clip, EngineSettings(), rng_seed=0, templates=ATELIER)
    assert not r.disagrees(None, Settled("Size", "short"), "a short skirt")
    assert clip.texts[0] == "short" and not SLEEVE_OPTIONS & set(clip.texts[1:]), clip.texts
    assert not r.disagrees(None, Settled("Size", "short"), "a short dress")
    assert {"sleeveless", "long sleeves"} <= set(clip.texts[1:]), clip.texts
