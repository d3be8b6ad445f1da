"""Feedback-Reflection: captions on seven aspects, s_i, ambiguity, and the clarification question."""

from __future__ import annotations

import random

import numpy as np
import pytest
from PIL import Image

from tdri_engine.errors import Cancelled
from tdri_engine.events import CancelToken, Question, Reflection
from tdri_engine.models import ModelProfile, ModelRegistry, RoleSpec
from tdri_engine.reflector import (
    PROMPT_WEIGHT,
    Reflector,
    ambiguity,
    aspect_scores,
    choose_aspect,
    lowest_aspects,
    make_reflector,
)
from tdri_engine.settings import ASPECTS, EngineSettings
from tdri_engine.summarizer import PromptParser, default_templates

IMAGE = Image.fromarray((np.random.RandomState(11).rand(96, 80, 3) * 255).astype("uint8"))


# -- the formulas ------------------------------------------------------------------------------


def test_ambiguity_is_the_weighted_sum_of_one_minus_similarity() -> None:
    scores = {
        "Content": 0.9,
        "Style": 0.2,
        "Background": 0.5,
        "Size": 0.7,
        "Color": 0.1,
        "Perspective": 0.6,
        "Others": 0.4,
    }
    weights = {
        "Content": 0.3,
        "Style": 0.1,
        "Background": 0.1,
        "Size": 0.1,
        "Color": 0.2,
        "Perspective": 0.1,
        "Others": 0.1,
    }
    expected = 0.3 * 0.1 + 0.1 * 0.8 + 0.1 * 0.5 + 0.1 * 0.3 + 0.2 * 0.9 + 0.1 * 0.4 + 0.1 * 0.6
    assert ambiguity(scores, weights) == pytest.approx(expected)
    assert ambiguity(scores, {"Color": 1.0}) == pytest.approx(0.9)  # unweighted aspects count 0
    assert ambiguity({a: 1.0 for a in ASPECTS}, weights) == 0.0


def test_aspect_score_mixes_image_and_prompt_similarity() -> None:
    g = {"Content": 0.30, "Color": 0.20, "Style": 0.25}
    m = {"Content": 0.80, "Color": None, "Style": 0.60}  # the prompt says nothing about colour
    s = aspect_scores(g, m)
    assert PROMPT_WEIGHT == 0.5
    assert s["Content"] == pytest.approx(0.5 * 0.30 + 0.5 * 0.80)
    assert s["Color"] == pytest.approx(0.5 * 0.20)  # an unstated aspect scores low: worth asking
    assert s["Style"] == pytest.approx(0.5 * 0.25 + 0.5 * 0.60)
    assert aspect_scores(g, m, prompt_weight=0.0) == pytest.approx(g)


def test_the_question_targets_one_of_the_three_lowest_aspects() -> None:
    scores = {
        "Content": 0.8,
        "Style": 0.15,
        "Background": 0.6,
        "Size": 0.5,
        "Color": 0.05,
        "Perspective": 0.3,
        "Others": 0.7,
    }
    assert lowest_aspects(scores) == ["Color", "Style", "Perspective"]
    picks = [choose_aspect(scores, random.Random(seed)) for seed in range(300)]
    assert set(picks) == {"Color", "Style", "Perspective"}  # only those, and each of them
    again = [choose_aspect(scores, random.Random(seed)) for seed in range(300)]
    assert picks == again  # the seeded choice is reproducible


def test_ties_keep_the_paper_order() -> None:
    assert lowest_aspects({a: 0.5 for a in ASPECTS}) == ["Content", "Style", "Background"]


# -- the Reflector with controlled similarities ------------------------------------------------


class FixedCaptioner:
    """Returns one caption per aspect, keyed by the aspect's instruction."""

    def __init__(self, captions: dict[str, str]):
        instructions = default_templates().vlm["instructions"]
        self.by_instruction = {instructions[a]: captions[a] for a in ASPECTS}

    def caption(self, image, instruction):
        return self.by_instruction[instruction]


class ControlledClip:
    """Similarities chosen by the test: g by caption, m by (component, caption)."""

    def __init__(self, g: dict[str, float], m: dict[str, float]):
        self.g, self.m, self.last_warnings = g, m, ()

    def image_text(self, image, texts):
        return [self.g[t] for t in texts]

    def text_text(self, a, b):
        return self.m[b]


CAPTIONS = {a: f"caption about {a.lower()}" for a in ASPECTS}


def reflector_with(g_values: dict[str, float], m_values: dict[str, float], **settings) -> Reflector:
    g = {CAPTIONS[a]: v for a, v in g_values.items()}
    m = {CAPTIONS[a]: v for a, v in m_values.items()}
    return Reflector(FixedCaptioner(CAPTIONS), ControlledClip(g, m), EngineSettings(**settings), rng_seed=5)


def test_no_question_when_the_image_is_clear_enough() -> None:
    r = reflector_with({a: 0.9 for a in ASPECTS}, {a: 0.9 for a in ASPECTS}, tau=0.35)
    prompt = "a long red silk dress, on a beach, watercolor, top view"  # states every aspect
    result = r.reflect(IMAGE, prompt)
    assert result.question is None
    assert result.reflection.scores == pytest.approx({a: 0.9 for a in ASPECTS})
    assert result.reflection.ambiguity == pytest.approx(0.1) and not result.reflection.asks
    # the same similarities, a stricter threshold: now it asks
    assert (
        reflector_with({a: 0.9 for a in ASPECTS}, {a: 0.9 for a in ASPECTS}, tau=0.05)
        .reflect(IMAGE, prompt)
        .question
    )


def test_unstated_aspects_are_the_ones_asked_about() -> None:
    # every caption fits the image equally; the prompt names only the subject and its colour
    r = reflector_with({a: 0.6 for a in ASPECTS}, {a: 0.9 for a in ASPECTS}, tau=0.2)
    result = r.reflect(IMAGE, "a red dress")
    s = result.reflection.scores
    assert s["Content"] == pytest.approx(0.75) and s["Color"] == pytest.approx(0.75)
    assert all(s[a] == pytest.approx(0.3) for a in ("Style", "Background", "Size", "Perspective", "Others"))
    assert result.reflection.ambiguity == pytest.approx(ambiguity(s, EngineSettings().aspect_weights))
    q = result.question
    assert isinstance(q, Question) and q.aspect in lowest_aspects(s)
    assert q.scores == s and q.ambiguity == result.reflection.ambiguity
    assert "the dress" in q.text


def test_questions_over_many_seeds_stay_among_the_three_lowest() -> None:
    g = {
        "Content": 0.9,
        "Style": 0.2,
        "Background": 0.4,
        "Size": 0.8,
        "Color": 0.1,
        "Perspective": 0.85,
        "Others": 0.3,
    }
    m = {a: 0.9 for a in ASPECTS}
    prompt = "a long red silk dress, on a beach, watercolor, top view"
    asked = set()
    for seed in range(60):
        r = Reflector(
            FixedCaptioner(CAPTIONS),
            ControlledClip({CAPTIONS[a]: v for a, v in g.items()}, {CAPTIONS[a]: v for a, v in m.items()}),
            EngineSettings(tau=0.1),
            rng_seed=seed,
        )
        asked.add(r.reflect(IMAGE, prompt).question.aspect)
    assert asked == {"Color", "Style", "Others"}


def test_aspects_weighted_zero_are_never_asked_about() -> None:
    weights = {a: (0.0 if a == "Color" else 1 / 6) for a in ASPECTS}
    g = {a: (0.0 if a == "Color" else 0.5) for a in ASPECTS}
    r = reflector_with(g, {a: 0.5 for a in ASPECTS}, tau=0.0, aspect_weights=weights)
    for _ in range(30):
        assert r.reflect(IMAGE, "a dress").question.aspect != "Color"


def test_template_questions_offer_one_click_answers_not_already_in_the_prompt() -> None:
    r = reflector_with({a: 0.5 for a in ASPECTS}, {a: 0.5 for a in ASPECTS})
    q, warnings = r.question("Color", "a red dress", CAPTIONS, {a: 0.5 for a in ASPECTS}, 0.5)
    assert warnings == () and q.aspect == "Color" and "the dress" in q.text and q.text.endswith("?")
    assert "navy" in q.options and "red" not in q.options and len(q.options) <= 6
    tired, _ = r.question("Color", "a tired model in a coat", CAPTIONS, {}, 0.5)
    assert "red" in tired.options  # whole words only: "tired" does not state "red"
    chinese, _ = r.question("Background", "一条红色的裙子 👗", CAPTIONS, {}, 0.5)
    assert "一条红色的裙子 👗" in chinese.text
    nothing, _ = r.question("Style", "", CAPTIONS, {}, 0.5)
    assert "the image" in nothing.text


class ScriptedChat:
    def __init__(self, reply: str):
        self.reply, self.seen, self.last_warnings = reply, [], ()

    def generate(self, messages, max_new_tokens=64, seed=0):
        self.seen.append(messages)
        return self.reply


def test_the_llm_questioner_writes_the_question_when_its_reply_is_usable() -> None:
    chat = ScriptedChat("Question: Which colour would you like the dress to be?")
    r = reflector_with({a: 0.2 for a in ASPECTS}, {a: 0.2 for a in ASPECTS}, questioner="llm")
    r.questioner = chat
    result = r.reflect(IMAGE, "a dress")
    assert result.question.text == "Which colour would you like the dress to be?"
    assert result.warnings == ()
    assert f"Aspect to ask about: {result.question.aspect}" in chat.seen[0][-1]["content"]


@pytest.mark.parametrize("reply", ["", "The dress is nice.", "?????", "ingtheself def retur?"])
def test_an_unusable_llm_question_falls_back_to_the_template_with_a_warning(reply: str) -> None:
    r = reflector_with({a: 0.2 for a in ASPECTS}, {a: 0.2 for a in ASPECTS}, questioner="llm")
    r.questioner = ScriptedChat(reply)
    result = r.reflect(IMAGE, "a dress")
    templates = default_templates().questions["aspects"][result.question.aspect]["templates"]
    assert result.question.text in [t.replace("{subject}", "the dress") for t in templates]
    assert any("questioner model's reply could not be used" in w for w in result.warnings)


# -- end to end on the tiny demo models ---------------------------------------------------------


def test_captioner_answers_every_aspect_from_a_saved_qwen2_vl(tiny_language) -> None:
    captioner = tiny_language.vlm
    r = Reflector(captioner, tiny_language.clip, EngineSettings())
    captions = r.captions(IMAGE)
    assert list(captions) == list(ASPECTS)
    assert all(isinstance(c, str) and c for c in captions.values())
    assert all(c.isprintable() for c in captions.values())
    one = captioner.caption(IMAGE, default_templates().vlm["instructions"]["Color"])
    assert one == captioner.caption(IMAGE, default_templates().vlm["instructions"]["Color"])  # greedy
    # batched captions equal one-by-one captions (left padding keeps every row's continuation)
    assert one == captions["Color"]


def test_reflector_end_to_end_on_tiny_models(tiny_language) -> None:
    settings = EngineSettings()
    r = Reflector(tiny_language.vlm, tiny_language.clip, settings, rng_seed=1)
    prompt = "a red silk dress on a beach"
    result = r.reflect(IMAGE, prompt)
    refl = result.reflection
    assert isinstance(refl, Reflection) and list(refl.scores) == list(ASPECTS)
    assert all(0.0 <= s <= 1.0 for s in refl.scores.values())
    assert refl.ambiguity == pytest.approx(ambiguity(refl.scores, settings.aspect_weights))
    assert refl.threshold == settings.tau and refl.asks == (refl.ambiguity > settings.tau)
    assert (result.question is not None) == refl.asks
    # s_i recomputed by hand from the same CLIP, captions and prompt components
    clip = tiny_language.clip
    components = PromptParser(default_templates().keywords).components(prompt)
    assert {a for a, c in components.items() if c} == {"Content", "Color", "Others", "Background"}
    for aspect in ASPECTS:
        g = clip.image_text(IMAGE, [refl.captions[aspect]])[0]
        m = clip.text_text(components[aspect], refl.captions[aspect]) if components[aspect] else 0.0
        assert refl.scores[aspect] == pytest.approx(0.5 * g + 0.5 * m, abs=1e-5)
    if result.question is not None:
        assert result.question.aspect in lowest_aspects(refl.scores)
    # same seed, same image: the same reflection and question
    again = Reflector(tiny_language.vlm, tiny_language.clip, settings, rng_seed=1).reflect(IMAGE, prompt)
    assert again == result


def test_tiny_llm_questioner_falls_back_with_a_warning(tiny_language) -> None:
    r = Reflector(
        tiny_language.vlm,
        tiny_language.clip,
        EngineSettings(questioner="llm", tau=0.0),
        questioner=tiny_language.llm,
    )
    result = r.reflect(IMAGE, "a dress")
    assert result.question is not None and result.question.text.endswith("?")
    assert any("questioner model's reply could not be used" in w for w in result.warnings)


def test_cancel_stops_the_reflection(tiny_language) -> None:
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        Reflector(tiny_language.vlm, tiny_language.clip, EngineSettings()).reflect(
            IMAGE, "a dress", cancel=token
        )


def test_make_reflector_takes_its_models_from_the_registry(language_models) -> None:
    roles = {
        "vlm": RoleSpec("vlm", "image-text-to-text", str(language_models["vlm"])),
        "clip": RoleSpec("clip", "open_clip", str(language_models["clip"])),
        "llm": RoleSpec("llm", "causal-lm", str(language_models["llm"])),
    }
    registry = ModelRegistry(ModelProfile("t", roles), device="cpu", dtype="fp32")
    r = make_reflector(EngineSettings(), registry, seed=3)
    assert not registry.is_loaded("llm")  # template questions need no LLM
    result = r.reflect(IMAGE, "一条红色的裙子 👗")
    assert len(result.reflection.scores) == 7
    r_llm = make_reflector(EngineSettings(questioner="llm"), registry, seed=3)
    assert r_llm.questioner is registry.get("llm")
