"""Dialogue-to-Prompt: the structured summarizer's slots, and the LLM summarizer on a tiny LM."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tdri_engine.api import Answer, Feedback, PromptEdit, Skip
from tdri_engine.errors import BadInput
from tdri_engine.llm import extract_reply_line, load_llm
from tdri_engine.models import ModelProfile, ModelRegistry, RoleSpec
from tdri_engine.records import DialogueTurn
from tdri_engine.settings import ASPECTS, EngineSettings
from tdri_engine.summarizer import LLMSummarizer, StructuredSummarizer, Summary, make_summarizer


class Dialogue:
    """Drives a summarizer the way the session does and records turns as the session stores them."""

    def __init__(self, summarizer, prompt: str):
        self.summarizer = summarizer
        first = summarizer.summarize([], prompt, prompt)
        self.summaries = [first]
        self.turns = [DialogueTurn(round=0, kind="prompt", user_input=prompt, prompt=first.prompt)]

    @property
    def prompt(self) -> str:
        return self.turns[-1].prompt

    def ask(self, aspect: str) -> None:
        """The Reflector asked about ``aspect`` after the latest round."""
        self.turns[-1] = self.turns[-1].replace(question_aspect=aspect, question=f"What about {aspect}?")

    def reply(self, reply) -> Summary:
        summary = self.summarizer.summarize(list(self.turns), reply, self.prompt)
        kind, text = {
            Answer: ("answer", getattr(reply, "text", "")),
            Skip: ("skip", ""),
            Feedback: ("feedback", getattr(reply, "text", "")),
            PromptEdit: ("prompt", getattr(reply, "prompt", "")),
        }[type(reply)]
        self.turns.append(
            DialogueTurn(round=len(self.turns), kind=kind, user_input=text, prompt=summary.prompt)
        )
        self.summaries.append(summary)
        return summary


def test_designer_refines_a_dress_over_four_answers() -> None:
    """'a dress' -> Color red -> Others silk -> Background on a beach -> Color navy replaces red."""
    d = Dialogue(StructuredSummarizer(), "a dress")
    assert d.prompt == "a dress"
    assert d.summaries[0].slots["Content"] == "a dress"

    d.ask("Color")
    s1 = d.reply(Answer("Color", "red"))
    assert s1.prompt == "a red dress"
    assert s1.slots["Color"] == "red" and s1.history_prompt == "a dress" and s1.latest_text == "red"

    d.ask("Others")
    s2 = d.reply(Answer("Others", "silk"))
    assert s2.slots["Others"] == "silk" and s2.slots["Color"] == "red"
    assert s2.prompt == "a red silk dress"

    d.ask("Background")
    s3 = d.reply(Answer("Background", "on a beach"))
    assert s3.slots["Background"] == "on a beach"
    assert s3.prompt == "a red silk dress, on a beach"

    d.ask("Color")
    s4 = d.reply(Answer("Color", "navy"))
    assert s4.slots["Color"] == "navy"
    assert s4.prompt == "a navy silk dress, on a beach"
    assert "red" not in s4.prompt and s4.prompt.count("navy") == 1
    assert s4.history_prompt == s3.prompt and s4.latest_text == "navy"
    # every slot the designer filled is in the final prompt, each in its own aspect
    assert {a: v for a, v in s4.slots.items() if v} == {
        "Content": "a dress",
        "Color": "navy",
        "Others": "silk",
        "Background": "on a beach",
    }
    assert set(s4.slots) == set(ASPECTS)


def test_an_answer_in_every_aspect_shows_up_in_the_prompt() -> None:
    d = Dialogue(StructuredSummarizer(), "a coat")
    answers = {
        "Style": "minimalist",
        "Background": "in a snowy city street",
        "Size": "oversized",
        "Color": "camel",
        "Perspective": "full body",
        "Others": "with a belt",
        "Content": "a wool coat",
    }
    for aspect, text in answers.items():
        d.ask(aspect)
        summary = d.reply(Answer(aspect, text))
    for aspect, text in answers.items():
        assert text in summary.slots[aspect]
    for word in (
        "minimalist",
        "snowy city street",
        "oversized",
        "camel",
        "full body",
        "with a belt",
        "wool coat",
    ):
        assert word in summary.prompt
    assert summary.prompt.startswith("an oversized camel wool coat")


def test_refining_answers_add_and_conflicting_details_replace() -> None:
    d = Dialogue(StructuredSummarizer(), "a dress")
    d.ask("Color")
    d.reply(Answer("Color", "red"))
    d.ask("Color")
    assert d.reply(Answer("Color", "and white")).slots["Color"] == "red, white"
    d.ask("Others")
    d.reply(Answer("Others", "silk"))
    d.ask("Others")
    d.reply(Answer("Others", "with a belt"))
    d.ask("Others")
    s = d.reply(Answer("Others", "cotton"))  # a new material replaces the old one, the belt stays
    assert s.slots["Others"] == "with a belt, cotton"
    assert "silk" not in s.prompt and "cotton" in s.prompt and "with a belt" in s.prompt
    d.ask("Others")
    assert d.reply(Answer("Others", "with a belt")).prompt == s.prompt  # not repeated


@pytest.mark.parametrize(
    ("feedback", "aspect", "value"),
    [
        ("make it blue", "Color", "blue"),
        ("make the dress navy blue please", "Color", "navy blue"),
        ("the background should be a forest", "Background", "a forest background"),
        ("in a garden", "Background", "in a garden"),
        ("in watercolor style", "Style", "in watercolor"),
        ("more elegant", "Style", "elegant"),
        ("top view", "Perspective", "top view"),
        ("close-up", "Perspective", "close-up"),
        ("longer", "Size", "longer"),
        ("no belt", "Others", "no belt"),
        ("add a silk scarf", "Others", "silk scarf"),
    ],
)
def test_free_feedback_lands_in_the_right_slot(feedback: str, aspect: str, value: str) -> None:
    d = Dialogue(StructuredSummarizer(), "a dress")
    s = d.reply(Feedback(feedback))
    assert s.slots[aspect] == value
    assert value in s.prompt and "dress" in s.prompt
    assert s.latest_text == feedback


def test_skip_keeps_the_prompt_and_an_edit_is_used_verbatim() -> None:
    d = Dialogue(StructuredSummarizer(), "A red dress on a beach!")
    assert d.reply(Skip()).prompt == "A red dress on a beach!"
    edited = "a long navy silk gown, in a ballroom, top view"
    s = d.reply(PromptEdit(edited))
    assert s.prompt == edited
    assert (s.slots["Color"], s.slots["Size"], s.slots["Background"]) == ("navy", "long", "in a ballroom")
    assert s.slots["Perspective"] == "top view" and s.slots["Others"] == "silk"
    d.ask("Color")
    assert d.reply(Answer("Color", "black")).prompt == "a long black silk gown, in a ballroom, top view"


def test_the_recorded_prompt_wins_over_the_replay() -> None:
    """A prompt written by the LLM summarizer (or a hand edit) is re-read into slots."""
    turns = [
        DialogueTurn(round=0, kind="prompt", user_input="a dress", prompt="a dress", question_aspect="Color"),
        DialogueTurn(round=1, kind="answer", user_input="red", prompt="an elegant red dress in a garden"),
    ]
    s = StructuredSummarizer().summarize(turns, Answer("Color", "green"), turns[-1].prompt)
    assert s.history_prompt == "a red dress, in a garden, elegant"
    assert (s.slots["Style"], s.slots["Background"]) == ("elegant", "in a garden")
    assert s.prompt == "a green dress, in a garden, elegant"


@pytest.mark.parametrize(
    "prompt",
    ["一条红色的连衣裙，在海滩上", "فستان أحمر على الشاطئ", "una falda roja 👗✨", "🌸🍵"],
)
def test_any_language_goes_in_as_given(prompt: str) -> None:
    d = Dialogue(StructuredSummarizer(), prompt)
    assert d.prompt == prompt
    d.ask("Color")
    s = d.reply(Answer("Color", "深蓝色"))
    assert "深蓝色" in s.prompt and s.slots["Color"] == "深蓝色"
    s = d.reply(Feedback("更长一点 🙂"))
    assert "更长一点 🙂" in s.prompt and "更长一点 🙂" in s.slots["Others"] and "深蓝色" in s.prompt
    d.ask("Background")
    assert "على الشاطئ" in d.reply(Answer("Background", "على الشاطئ")).prompt


def test_bad_input_is_refused_with_a_hint() -> None:
    summarizer = StructuredSummarizer()
    with pytest.raises(BadInput) as info:
        summarizer.summarize([], "   ", "")
    assert info.value.what_to_do
    with pytest.raises(BadInput):
        summarizer.summarize([], "x" * 5000, "")
    with pytest.raises(BadInput):
        summarizer.summarize([], Answer("Mood", "happy"), "a dress")


# -- the LLM summarizer -------------------------------------------------------------------------


def test_llm_summarizer_on_a_tiny_lm_falls_back_openly(tiny_language) -> None:
    """A random LM writes noise: the structured prompt is used and the summary says so."""
    llm = tiny_language.llm
    d = Dialogue(LLMSummarizer(llm), "a dress")
    d.ask("Color")
    s = d.reply(Answer("Color", "red"))
    assert s.prompt == "a red dress"
    assert any("summarizer model's reply could not be used" in w for w in s.warnings)
    # the model really ran: greedy decoding gives the same text for the same messages, twice
    messages = [{"role": "user", "content": "Current prompt: a dress\nNew prompt:"}]
    first = llm.generate(messages, max_new_tokens=12, seed=0)
    assert first and first == llm.generate(messages, max_new_tokens=12, seed=7)


class ScriptedChat:
    """Stands in for a capable chat model: returns a fixed reply and records the messages."""

    def __init__(self, reply: str):
        self.reply, self.seen = reply, []
        self.last_warnings = ()

    def generate(self, messages, max_new_tokens=64, seed=0):
        self.seen.append(messages)
        return self.reply


def test_llm_summarizer_uses_a_good_reply_and_shows_it_the_dialogue() -> None:
    chat = ScriptedChat('Sure! Here is the new prompt:\n"A navy silk dress on a sunny beach."\nIt keeps...')
    d = Dialogue(LLMSummarizer(chat), "a dress")
    d.ask("Color")
    s = d.reply(Answer("Color", "navy"))
    assert s.prompt == "A navy silk dress on a sunny beach."
    assert s.warnings == () and s.slots["Color"] == "navy" and s.history_prompt == "a dress"
    user = chat.seen[-1][-1]["content"]
    assert "User: a dress" in user and "Studio: What about Color?" in user and "(Color) navy" in user


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Prompt: a red dress, on a beach", "a red dress, on a beach"),
        ("**New prompt:** “a red dress”", "a red dress"),
        ("<think>the user wants red</think>\n\n- a red dress\nmore text", "a red dress"),
        ("New prompt:\n\n'一条红色的裙子'", "一条红色的裙子"),
        ("\x10\x16  a red \x05dress", "a red dress"),
        ("", ""),
    ],
)
def test_reply_extraction_is_robust(raw: str, expected: str) -> None:
    assert extract_reply_line(raw, 300) == expected


def test_reply_extraction_caps_the_length() -> None:
    line = extract_reply_line("a red dress, " * 50, 100)
    assert len(line) <= 100 and line.startswith("a red dress") and not line.endswith(",")


@pytest.mark.parametrize("raw", ["", "\n\n\n", "#### ??? ////", "orange tabby cat sleeping on a sofa"])
def test_unusable_llm_replies_fall_back_with_a_warning(raw: str) -> None:
    d = Dialogue(LLMSummarizer(ScriptedChat(raw)), "a dress")
    d.ask("Color")
    s = d.reply(Answer("Color", "red"))
    assert s.prompt == "a red dress"
    assert len(s.warnings) == 1 and "built from the dialogue's aspects instead" in s.warnings[0]


def test_plain_template_when_the_tokenizer_has_no_chat_template(language_models) -> None:
    folder = language_models["llm"]
    llm = load_llm(folder, RoleSpec("llm", "causal-lm", str(folder)), torch.device("cpu"), torch.float32)
    llm.tokenizer.chat_template = None
    text = llm.format([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "a dress"}])
    assert text == "System: Be brief.\nUser: a dress\nAssistant:"
    assert isinstance(llm.generate([{"role": "user", "content": "a dress"}], max_new_tokens=4), str)


def test_make_summarizer_follows_the_settings_through_the_registry(language_models) -> None:
    profile = ModelProfile("t", {"llm": RoleSpec("llm", "causal-lm", str(language_models["llm"]))})
    registry = ModelRegistry(profile, device="cpu", dtype="fp32")
    assert isinstance(make_summarizer(EngineSettings(), registry), StructuredSummarizer)
    assert not registry.is_loaded("llm")  # the structured summarizer needs no weights
    llm_summarizer = make_summarizer(EngineSettings(summarizer="llm"), registry)
    assert isinstance(llm_summarizer, LLMSummarizer) and registry.is_loaded("llm")


def test_long_dialogues_are_cut_from_the_oldest_end(language_models) -> None:
    folder = language_models["llm"]
    llm = load_llm(folder, RoleSpec("llm", "causal-lm", str(folder)), torch.device("cpu"), torch.float32)
    llm.context_length = 64
    out = llm.generate([{"role": "user", "content": "a red dress on a beach " * 40}], max_new_tokens=8)
    assert isinstance(out, str)
    assert len(llm.last_warnings) == 1 and "oldest" in llm.last_warnings[0]


def test_templates_are_read_from_resources(tmp_path: Path) -> None:
    from tdri_engine.errors import TdriError
    from tdri_engine.templates import load_templates

    t = load_templates()
    assert set(t.vlm["instructions"]) == set(ASPECTS) and "red" in t.keywords["colors"]
    with pytest.raises(TdriError) as info:
        load_templates(tmp_path)
    assert "keywords.json" in info.value.message and info.value.what_to_do


def test_a_bare_colour_given_to_a_style_question_is_kept_as_the_colour() -> None:
    d = Dialogue(StructuredSummarizer(), "a dress")
    d.ask("Style")
    s = d.reply(Answer("Style", "red"))
    assert s.prompt == "a red dress" and s.slots["Color"] == "red" and s.slots["Style"] == ""
    assert s.warnings == ("'red' reads as Color, not Style; it was put with Color.",)
    d.ask("Perspective")
    assert d.reply(Answer("Perspective", "silk")).prompt == "a red silk dress"
    d.ask("Style")  # a style answer that is not a bare keyword of another aspect stays a style
    s = d.reply(Answer("Style", "like a 1950s housewife"))
    assert s.slots["Style"] == "like a 1950s housewife" and s.warnings == ()
    d.ask("Color")  # and the replay of the recorded dialogue routes the same way
    assert d.reply(Skip()).slots["Color"] == "red"


@pytest.mark.parametrize("pattern", ["stripes", "polka dots", "ruffles"])
@pytest.mark.parametrize("start", ["a red dress", "a long coat, at the beach", "a woman in a navy dress"])
def test_a_pattern_named_as_a_thing_follows_the_garment(start: str, pattern: str) -> None:
    """'stripes' answered to a Details question read "a red stripes dress": a plural pattern noun
    is no modifier. It follows the subject as "with stripes"; "striped" still goes before it."""
    for reply in (Answer("Others", pattern), Feedback(pattern)):
        talk = Dialogue(StructuredSummarizer(), start)
        talk.ask("Others")
        prompt = talk.reply(reply).prompt
        assert f"with {pattern}" in prompt, prompt
        assert f"{pattern} dress" not in prompt and f"{pattern} coat" not in prompt, prompt
    talk = Dialogue(StructuredSummarizer(), start)
    talk.ask("Others")
    assert "striped" in talk.reply(Answer("Others", "striped")).prompt.split(",")[0]
