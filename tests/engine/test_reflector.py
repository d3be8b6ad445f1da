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
    Reflector,
    ambiguity,
    aspect_scores,
    choose_aspect,
    lowest_aspects,
    make_reflector,
)
from tdri_engine.settings import ASPECTS, EngineSettings
from tdri_engine.templates import default_templates

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


def test_an_aspect_score_is_the_image_caption_cosine_and_zero_without_a_caption() -> None:
    captions = {a: f"about {a}" for a in ASPECTS} | {"Size": "  "}
    sims = {a: 0.27 for a in ASPECTS} | {"Size": 0.9, "Color": -0.1, "Style": 1.2}
    s = aspect_scores(captions, sims)
    assert list(s) == list(ASPECTS)
    assert s["Content"] == 0.27 and s["Size"] == 0.0  # nothing said: nothing confirmed
    assert s["Color"] == 0.0 and s["Style"] == 1.0  # clipped into [0, 1]


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
    """Image-caption cosines chosen by the test, keyed by caption. It has no text-text score:
    the Reflector must not compare the prompt with the captions (section 4.3)."""

    def __init__(self, g: dict[str, float]):
        self.g, self.last_warnings = g, ()

    def image_text(self, image, texts):
        return [self.g[t] for t in texts]


CAPTIONS = {a: f"caption about {a.lower()}" for a in ASPECTS}


def reflector_with(g_values: dict[str, float], **settings) -> Reflector:
    g = {CAPTIONS[a]: v for a, v in g_values.items()}
    return Reflector(FixedCaptioner(CAPTIONS), ControlledClip(g), EngineSettings(**settings), rng_seed=5)


# Cosines of real CLIP ViT-B/32 between an image and captions of it (matching pairs score about
# 0.2-0.35) and between an image and captions that miss it (about 0.1-0.2).
MATCHING = {"Content": 0.33, "Style": 0.27, "Background": 0.30, "Size": 0.26, "Color": 0.29,
            "Perspective": 0.24, "Others": 0.28}  # fmt: skip
MISSING = {"Content": 0.19, "Style": 0.15, "Background": 0.17, "Size": 0.14, "Color": 0.16,
           "Perspective": 0.12, "Others": 0.15}  # fmt: skip


def test_no_question_when_the_captions_match_the_image_as_real_clip_scores_them() -> None:
    from tdri_engine.models import load_profile

    tau = load_profile("sd15").thresholds.tau  # estimated for real CLIP ViT-B/32
    prompt = "a long red silk dress, on a beach, watercolor, top view"
    clear = reflector_with(MATCHING, tau=tau).reflect(IMAGE, prompt)
    assert clear.question is None and not clear.reflection.asks
    assert clear.reflection.ambiguity == pytest.approx(1 - sum(MATCHING.values()) / 7)  # 0.7186
    assert clear.reflection.ambiguity < tau
    vague = reflector_with(MISSING, tau=tau).reflect(IMAGE, prompt)
    assert vague.reflection.ambiguity == pytest.approx(1 - sum(MISSING.values()) / 7)  # 0.8457
    assert vague.reflection.asks and vague.question is not None
    assert vague.question.aspect in ("Perspective", "Size", "Style", "Others")  # the lowest three, tied


def test_the_least_confirmed_aspects_are_the_ones_asked_about() -> None:
    g = dict(MATCHING) | {"Background": 0.11}
    r = reflector_with(g, tau=0.5)
    result = r.reflect(IMAGE, "a red dress")
    s = result.reflection.scores
    assert s == pytest.approx(g)
    assert result.reflection.ambiguity == pytest.approx(ambiguity(s, EngineSettings().aspect_weights))
    q = result.question
    assert isinstance(q, Question) and q.aspect in lowest_aspects(s) == ["Background", "Perspective", "Size"]
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
    prompt = "a long red silk dress, on a beach, watercolor, top view"
    asked = set()
    for seed in range(60):
        r = Reflector(
            FixedCaptioner(CAPTIONS),
            ControlledClip({CAPTIONS[a]: v for a, v in g.items()}),
            EngineSettings(tau=0.1),
            rng_seed=seed,
        )
        asked.add(r.reflect(IMAGE, prompt).question.aspect)
    assert asked == {"Color", "Style", "Others"}


def test_aspects_weighted_zero_are_never_asked_about() -> None:
    weights = {a: (0.0 if a == "Color" else 1 / 6) for a in ASPECTS}
    g = {a: (0.0 if a == "Color" else 0.5) for a in ASPECTS}
    r = reflector_with(g, tau=0.0, aspect_weights=weights)
    for _ in range(30):
        assert r.reflect(IMAGE, "a dress").question.aspect != "Color"


def test_template_questions_offer_one_click_answers_not_already_in_the_prompt() -> None:
    r = reflector_with({a: 0.5 for a in ASPECTS})
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
    r = reflector_with({a: 0.2 for a in ASPECTS}, tau=0.5, questioner="llm")
    r.questioner = chat
    result = r.reflect(IMAGE, "a dress")
    assert result.question.text == "Which colour would you like the dress to be?"
    assert result.warnings == ()
    assert f"Aspect to ask about: {result.question.aspect}" in chat.seen[0][-1]["content"]


@pytest.mark.parametrize("reply", ["", "The dress is nice.", "?????", "ingtheself def retur?"])
def test_an_unusable_llm_question_falls_back_to_the_template_with_a_warning(reply: str) -> None:
    r = reflector_with({a: 0.2 for a in ASPECTS}, tau=0.5, questioner="llm")
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
    assert refl.threshold == r.tau and refl.asks == (refl.ambiguity > r.tau)
    assert (result.question is not None) == refl.asks
    # s_i recomputed by hand: the same CLIP, the image against each caption, one at a time
    clip = tiny_language.clip
    for aspect in ASPECTS:
        g = clip.image_text(IMAGE, [refl.captions[aspect]])[0]
        assert refl.scores[aspect] == pytest.approx(g, abs=1e-5)
    if result.question is not None:
        assert result.question.aspect in lowest_aspects(refl.scores)
    # same seed, same image: the same reflection and question
    again = Reflector(tiny_language.vlm, tiny_language.clip, settings, rng_seed=1).reflect(IMAGE, prompt)
    assert again == result


def test_tiny_llm_questioner_falls_back_with_a_warning(tiny_language) -> None:
    for seed in range(3):  # seeded: the aspect asked about (and so the model's prompt) is drawn
        r = Reflector(
            tiny_language.vlm,
            tiny_language.clip,
            EngineSettings(questioner="llm", tau=0.0),
            questioner=tiny_language.llm,
            rng_seed=seed,
        )
        result = r.reflect(IMAGE, "a dress")
        assert result.question is not None and result.question.text.endswith("?")
        assert any("questioner model's reply could not be used" in w for w in result.warnings), seed


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


def test_the_reflectors_ambiguity_is_the_papers_formula_on_hand_computed_values() -> None:
    """Section 4.3: s_i = CLIP(image, caption_i), A = sum_i w_i (1 - s_i). The prompt does not
    enter s_i (it names the subject of the question only). Cosines as real CLIP gives them."""
    cosines = {
        "Content": 0.31,
        "Style": 0.24,
        "Background": 0.28,
        "Size": 0.22,
        "Color": 0.27,
        "Perspective": 0.19,
        "Others": 0.25,
    }
    weights = {
        "Content": 0.25,
        "Style": 0.15,
        "Background": 0.15,
        "Size": 0.10,
        "Color": 0.15,
        "Perspective": 0.10,
        "Others": 0.10,
    }
    # by hand: 0.25*0.69 + 0.15*0.76 + 0.15*0.72 + 0.10*0.78 + 0.15*0.73 + 0.10*0.81 + 0.10*0.75
    expected = 0.1725 + 0.114 + 0.108 + 0.078 + 0.1095 + 0.081 + 0.075
    assert expected == pytest.approx(0.738)
    for prompt in ("a red silk dress, on a beach, watercolor, top view", "a dress", ""):
        r = reflector_with(cosines, tau=0.5, aspect_weights=weights)
        refl = r.reflect(IMAGE, prompt).reflection
        assert refl.scores == pytest.approx(cosines)  # the same whatever the prompt states
        assert refl.ambiguity == pytest.approx(0.738)
