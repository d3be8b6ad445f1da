"""Dialogue-to-Prompt (D2P, paper section 3.2.1): dialogue history H_t + latest input u_t -> P_t.

Two implementations behind one interface (:class:`Summarizer`):

* :class:`StructuredSummarizer` needs no weights. It keeps one slot per aspect (``settings.ASPECTS``),
  merges each answer into the slot of its aspect and renders a prompt that states every filled
  slot. (An answer that plainly names another aspect by itself, such as a bare colour given to a
  style question, goes to that aspect's slot, and the summary notes it.) Free feedback is split into slots by the keyword lists in
  ``resources/templates/keywords.json``; words the lists do not know go to Content (a first
  prompt) or Others (later feedback), in whatever language they were written.
* :class:`LLMSummarizer` asks a local chat model (any transformers causal LM, through
  :class:`LocalLLM`) with the template in ``resources/templates/llm_prompts.json``. Its reply is
  checked; an empty or unusable reply (a tiny random demo LM gives nothing else) falls back to the
  structured prompt, and the summary carries a warning that says so.

Both return a :class:`Summary`. Eq. (2) weighs the history against the latest input
(alpha E(H_t) + beta E(u_t)); the generator does that blend on text embeddings, so a summary
also carries ``history_prompt`` (the prompt before this input) and ``latest_text`` (u_t).

How the structured summarizer reads the dialogue (``turns``, oldest first, as the session stores
them in ``records.DialogueTurn``): ``kind`` ``"prompt"`` is a new prompt (round 0), ``"answer"``
answers the question asked after the previous turn (its ``question_aspect``), ``"feedback"`` is
free text, ``"skip"`` changes nothing, ``"edit"`` replaced the prompt by hand. Each turn's
recorded ``prompt`` is authoritative: where the replay does not render to it (it came from the
LLM summarizer or a hand edit), the slots are re-read from that prompt.

What the structured summarizer keeps: every fact the user gave. The subject is kept as written,
with the phrases that describe it rather than an aspect ("a woman in a dress", "flowers float on
the tea": a preposition before something that is no place, colour, material, size or style, or a
detail that names a garment); only a phrase naming a place is a Background. Adjectives go to the
subject phrase that takes them: the first garment ("a woman in a red dress"), else the head; a
person with no garment named wears the colour ("a woman in red"). An answer replaces only what
was said about its own aspect (navy replaces red; a new background the old one; a length the
length, keeping the fit and the sleeves: see ``PromptParser.merge``). A Content answer
names what the image should show: it replaces the subject's phrase of its own kind ("a dress,
on a mannequin" + "a coat" -> "a coat, on a mannequin"; "a cat on a sofa" + "a dog" -> "a dog on
a sofa"), and every other slot stays; one that says it adds ("and a bag", "with a hat") or names
another kind of thing ("a dress" + "a handbag") is shown as well (``PromptParser.merge`` gives
the rule). ``tests/engine/test_summarizer_corpus.py`` checks this word by word on a corpus of
dialogues in several languages, and the Content rule on every pair of Atelier garments.

Where the parts live: the rule-based parser in ``prompt_parser.py`` (the Reflector reads a
prompt's aspect components with it too), the template files in ``templates.py``, the local chat
model and the checks of its replies in ``llm.py``.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, Union

from .api import Answer, Feedback, PromptEdit, Skip
from .errors import BadInput, ModelBroken
from .llm import extract_reply_line, unusable_reason
from .prompt_parser import PromptParser, Slots, empty_slots
from .records import DialogueTurn
from .settings import ASPECTS
from .templates import ChatTemplate, Templates, default_templates

if TYPE_CHECKING:
    from .settings import EngineSettings

SummarizerInput = Union[str, Answer, Skip, Feedback, PromptEdit]

MAX_PROMPT_CHARS = 1000  # a prompt longer than this is a paste accident, not a wish


# --------------------------------------------------------------------------------------------
# summaries
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Summary:
    """The Summarizer's result for one round.

    ``prompt`` is P_t for the generator; ``history_prompt`` the prompt the slots rendered before
    this input and ``latest_text`` the user's latest input u_t (eq. 2's two terms); ``slots`` the
    prompt's component per aspect ("" when unfilled); ``warnings`` things the user should see.
    """

    prompt: str
    history_prompt: str
    latest_text: str
    slots: dict[str, str]
    warnings: tuple[str, ...] = field(default_factory=tuple)


class Summarizer(Protocol):
    def summarize(
        self, turns: list[DialogueTurn], reply: SummarizerInput, current_prompt: str
    ) -> Summary: ...


def _flat(slots: Slots) -> dict[str, str]:
    return {a: ", ".join(slots.get(a, [])) for a in ASPECTS}


def _check_text(text: Any, what: str) -> str:
    if not isinstance(text, str):
        raise BadInput(f"The {what} must be text, not {type(text).__name__}.", "Type some words.")
    text = unicodedata.normalize("NFC", text).strip()
    if len(text) > MAX_PROMPT_CHARS:
        raise BadInput(
            f"The {what} has {len(text)} characters; at most {MAX_PROMPT_CHARS} are accepted.",
            "Shorten it to what matters for the image.",
        )
    return text


class StructuredSummarizer:
    """D2P without weights: one slot per aspect, answers merged into their slot."""

    def __init__(self, templates: Templates | None = None):
        self.templates = templates or default_templates()
        self.parser = PromptParser(self.templates.keywords)

    # -- state from the dialogue ---------------------------------------------------------------
    def slots_from(self, turns: list[DialogueTurn], current_prompt: str) -> Slots:
        """Replay the recorded dialogue into slots (see the module docstring)."""
        slots = empty_slots()
        previous: DialogueTurn | None = None
        for turn in sorted(turns, key=lambda t: t.round):
            kind = (turn.kind or "").casefold()
            if kind == "prompt":
                slots = self.parser.parse(turn.user_input or turn.prompt)
            elif kind == "answer":
                aspect = previous.question_aspect if previous is not None else None
                if aspect in ASPECTS:
                    self.parser.merge(slots, self.answer_aspect(aspect, turn.user_input), turn.user_input)
                else:
                    self._apply_feedback(slots, turn.user_input)
            elif kind == "feedback":
                self._apply_feedback(slots, turn.user_input)
            elif kind != "skip":  # "edit" or anything newer: the recorded prompt says it all
                slots = self.parser.parse(turn.prompt or turn.user_input)
            if turn.prompt and self.parser.render(slots) != turn.prompt.strip():
                slots = self.parser.parse(turn.prompt)
            previous = turn
        if current_prompt.strip() and self.parser.render(slots) != current_prompt.strip():
            slots = self.parser.parse(current_prompt)
        return slots

    def _apply_feedback(self, slots: Slots, text: str) -> None:
        subject = " ".join(slots.get("Content", []))
        for aspect, phrases in self.parser.parse(text, feedback=True, subject=subject).items():
            for phrase in phrases:
                self.parser.merge(slots, aspect, phrase)

    def answer_aspect(self, asked: str, text: str) -> str:
        """The slot an answer goes to: the aspect asked about, unless the answer is plainly about
        another one by itself (a bare colour given to a style question goes to Color)."""
        evident = self.parser.evident_aspect(text)
        return evident if evident is not None else asked

    # -- the interface -------------------------------------------------------------------------
    def summarize(self, turns: list[DialogueTurn], reply: SummarizerInput, current_prompt: str) -> Summary:
        if isinstance(reply, str):  # round 0: the user's prompt, as typed
            prompt = _check_text(reply, "prompt")
            if not prompt:
                raise BadInput("The prompt is empty.", "Describe the image you want, e.g. 'a red dress'.")
            return Summary(prompt, "", prompt, _flat(self.parser.parse(prompt)))
        current_prompt = _check_text(current_prompt or "", "current prompt")
        slots = self.slots_from(turns, current_prompt)
        history_prompt = self.parser.render(slots)
        if isinstance(reply, Skip):
            return Summary(current_prompt or history_prompt, history_prompt, "", _flat(slots))
        if isinstance(reply, PromptEdit):
            prompt = _check_text(reply.prompt, "edited prompt")
            if not prompt:
                raise BadInput("The edited prompt is empty.", "Type the prompt you want, or skip.")
            return Summary(prompt, history_prompt, prompt, _flat(self.parser.parse(prompt)))
        notes: tuple[str, ...] = ()
        if isinstance(reply, Answer):
            text = _check_text(reply.text, "answer")
            if reply.aspect not in ASPECTS:
                raise BadInput(f"Unknown aspect '{reply.aspect}'.", f"Use one of: {', '.join(ASPECTS)}.")
            aspect = self.answer_aspect(reply.aspect, text)
            if aspect != reply.aspect:
                notes = (f"'{text}' reads as {aspect}, not {reply.aspect}; it was put with {aspect}.",)
            if text:
                dropped = self.parser.merge(slots, aspect, text)
                if dropped:
                    subject = " and ".join(slots.get("Content", []))
                    notes += (f"'{', '.join(dropped)}' was left out: {subject} has no sleeves.",)
        elif isinstance(reply, Feedback):
            text = _check_text(reply.text, "feedback")
            self._apply_feedback(slots, text)
        else:
            raise BadInput(
                f"Unknown reply {type(reply).__name__}.", "Answer, skip, give feedback or edit the prompt."
            )
        prompt = self.parser.render(slots) or history_prompt or current_prompt
        return Summary(prompt, history_prompt, text, _flat(slots), notes)


# --------------------------------------------------------------------------------------------
# LLM summarizer
# --------------------------------------------------------------------------------------------


def history_lines(turns: list[DialogueTurn]) -> str:
    """H_t as text: the user's inputs u_i and the studio's responses r_i, oldest first."""
    lines = []
    for turn in sorted(turns, key=lambda t: t.round):
        if turn.kind == "skip":
            lines.append("User: (skipped the question)")
        elif turn.user_input:
            lines.append(f"User: {turn.user_input}")
        response = turn.system_response or turn.question
        if response:
            lines.append(f"Studio: {response}")
    return "\n".join(lines) if lines else "(none)"


class LLMSummarizer:
    """D2P with a local chat model; the structured summarizer is its safety net."""

    def __init__(self, llm: Any, template: ChatTemplate | None = None, *, templates: Templates | None = None,
                 seed: int = 0):  # fmt: skip
        self.llm = llm
        self.templates = templates or default_templates()
        self.template = template or ChatTemplate.from_dict(self.templates.llm["summarizer"])
        self.structured = StructuredSummarizer(self.templates)
        self.seed = seed

    def summarize(self, turns: list[DialogueTurn], reply: SummarizerInput, current_prompt: str) -> Summary:
        fallback = self.structured.summarize(turns, reply, current_prompt)
        if not isinstance(reply, (Answer, Feedback)):
            return fallback  # round 0, a skip or a hand edit: nothing to summarize
        latest = f"({reply.aspect}) {reply.text}" if isinstance(reply, Answer) else reply.text
        messages = self.template.messages(
            history=history_lines(turns),
            current_prompt=current_prompt or fallback.history_prompt,
            latest=latest,
        )
        raw = self.llm.generate(messages, max_new_tokens=self.template.max_new_tokens, seed=self.seed)
        warnings = tuple(getattr(self.llm, "last_warnings", ()) or ())
        candidate = extract_reply_line(raw, self.template.max_chars)
        fillers = set(self.templates.keywords.get("filler_words", []))
        reason = unusable_reason(candidate, f"{current_prompt} {latest}", fillers)
        if reason is not None:
            note = (
                f"The summarizer model's reply could not be used ({reason}); the prompt was built "
                f"from the dialogue's aspects instead."
            )
            return Summary(
                fallback.prompt, fallback.history_prompt, fallback.latest_text, fallback.slots,
                fallback.warnings + warnings + (note,),
            )  # fmt: skip
        slots = _flat(self.structured.parser.parse(candidate))
        return Summary(
            candidate, fallback.history_prompt, fallback.latest_text, slots, fallback.warnings + warnings
        )


def make_summarizer(settings: EngineSettings, registry: Any) -> Summarizer:
    """The summarizer the settings ask for; ``"llm"`` loads the registry's ``llm`` role."""
    if settings.summarizer == "llm":
        return LLMSummarizer(registry.get("llm"))
    if settings.summarizer == "structured":
        return StructuredSummarizer()
    raise ModelBroken(f"Unknown summarizer '{settings.summarizer}'.", "Use 'structured' or 'llm'.")
