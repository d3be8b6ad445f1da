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
was said about its own aspect (navy replaces red; a new background the old one), and a Content
answer that does not repeat the subject is added to it. ``tests/engine/test_summarizer_corpus.py``
checks this word by word on a corpus of dialogues in several languages.

The same parser (:class:`PromptParser`) decomposes a prompt into aspect components for the
Reflector (the subject of its questions).
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, Union

from .api import Answer, Feedback, PromptEdit, Skip
from .errors import BadInput, ModelBroken, TdriError
from .records import DialogueTurn
from .settings import ASPECTS

if TYPE_CHECKING:
    import torch

    from .settings import EngineSettings

SummarizerInput = Union[str, Answer, Skip, Feedback, PromptEdit]

MAX_PROMPT_CHARS = 1000  # a prompt longer than this is a paste accident, not a wish


# --------------------------------------------------------------------------------------------
# templates and keyword lists (resources/templates/*.json)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Templates:
    """Everything D2P and FR read from ``resources/templates``: keyword lists, VLM aspect
    instructions, question templates with options, and the LLM chat prompts."""

    keywords: dict[str, list[str]]
    vlm: dict[str, Any]
    questions: dict[str, Any]
    llm: dict[str, Any]
    folder: Path | None = None


_TEMPLATE_FILES = {"keywords": "keywords.json", "vlm": "vlm_aspects.json", "questions": "questions.json",
                   "llm": "llm_prompts.json"}  # fmt: skip


def load_templates(folder: Path | None = None) -> Templates:
    """Read the template files (default: ``resources/templates``); say clearly which one is bad."""
    from .paths import resource_path

    folder = Path(folder) if folder is not None else resource_path("templates")
    data: dict[str, Any] = {}
    for key, name in _TEMPLATE_FILES.items():
        path = folder / name
        try:
            data[key] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise TdriError(
                f"The template file {path} could not be read ({exc}).",
                "Restore resources/templates from the installation (or set TDRI_RESOURCES to a folder that has it).",
                kind="resources",
            ) from exc
    missing = [a for a in ASPECTS if a not in data["vlm"].get("instructions", {})]
    missing += [a for a in ASPECTS if a not in data["questions"].get("aspects", {})]
    if missing:
        raise TdriError(
            f"The templates in {folder} lack the aspects {sorted(set(missing))}.",
            "Every aspect needs a VLM instruction (vlm_aspects.json) and a question (questions.json).",
            kind="resources",
        )
    return Templates(folder=folder, **data)


_default_templates: Templates | None = None


def default_templates() -> Templates:
    """The installed templates, read once."""
    global _default_templates
    if _default_templates is None:
        _default_templates = load_templates()
    return _default_templates


# --------------------------------------------------------------------------------------------
# the keyword parser: text <-> one slot per aspect
# --------------------------------------------------------------------------------------------

Slots = dict[str, list[str]]


def empty_slots() -> Slots:
    return {a: [] for a in ASPECTS}


def _no_space_script(text: str) -> bool:
    """True for scripts written without spaces between words (CJK, Thai ...)."""
    return any(ord(ch) >= 0x2E80 or 0x0E00 <= ord(ch) <= 0x0EFF for ch in text)


def _phrase_regex(phrases: list[str]) -> re.Pattern[str]:
    """One alternation, longest first; whole words for spaced scripts, substrings otherwise."""
    parts = []
    for p in sorted({p.strip() for p in phrases if p.strip()}, key=len, reverse=True):
        body = r"\s+".join(re.escape(w) for w in p.split())
        parts.append(body if _no_space_script(p) else rf"(?<![\w-]){body}(?![\w-])")
    return re.compile("|".join(parts) if parts else r"(?!x)x", re.IGNORECASE)


_SEGMENT_SPLIT = re.compile(r"\s*(?:[,;，；、\n]|\.(?=\s|$)|[。！？!?](?=\s|$)?)\s*")
_WORD = re.compile(r"[\w'’-]+")
_MEDIUM_OF = re.compile(
    r"^(?:(?:an?|the)\s+)?(?P<medium>(?:[\w'-]+\s+){0,3}?)"
    r"(?P<noun>painting|illustration|photo|photograph|sketch|drawing|render|rendering|portrait|image|"
    r"picture|artwork|poster)\s+of\s+(?P<rest>.+)$",
    re.IGNORECASE,
)
_BACKGROUND_IS = re.compile(
    r"^(?:the\s+)?(?:background|backdrop|setting|scene)\s+(?:is\s+|should\s+be\s+|to\s+be\s+|as\s+|of\s+)?(?P<rest>.+)$",
    re.IGNORECASE,
)


class PromptParser:
    """Splits prompts and feedback into aspect slots and renders slots back into a prompt."""

    def __init__(self, keywords: dict[str, list[str]]):
        kw = {k: [w.casefold() for w in v] for k, v in keywords.items() if isinstance(v, list)}
        self.kw = kw
        self._re = {name: _phrase_regex(kw.get(name, [])) for name in (
            "colors", "color_modifiers", "sizes", "styles", "perspectives", "materials", "patterns", "places",
            "command_prefixes",
        )}  # fmt: skip
        self._sets = {name: set(kw.get(name, [])) for name in kw}
        bounds = kw.get("place_prepositions", []) + kw.get("detail_connectives", [])
        self._boundary = _phrase_regex(bounds)
        self._place_prep = _phrase_regex(kw.get("place_prepositions", []))
        self._detail = _phrase_regex(kw.get("detail_connectives", []))
        refine = sorted(kw.get("refining_connectives", []), key=len, reverse=True)
        self._refine = re.compile(
            r"^(?:" + "|".join(re.escape(r) for r in refine) + r")(?:\s+|$)" if refine else r"(?!x)x",
            re.IGNORECASE,
        )
        self._article = re.compile(
            r"^(" + "|".join(re.escape(a) for a in kw.get("articles", ["a", "an", "the"])) + r")\s+(.*)$",
            re.IGNORECASE | re.DOTALL,
        )

    # -- small predicates ----------------------------------------------------------------------
    def _only(self, text: str, *lists: str, extra: tuple[str, ...] = ()) -> bool:
        """True if every word of ``text`` belongs to one of the keyword lists (or ``extra``)."""
        rest = text.casefold()
        for name in lists:
            rest = self._re[name].sub(" ", rest)
        for word in extra:
            rest = re.sub(rf"(?<![\w-]){re.escape(word)}(?![\w-])", " ", rest)
        return bool(text.strip()) and not re.sub(r"[\s,&/+-]", "", rest)

    def is_pure_color(self, text: str) -> bool:
        return bool(self._re["colors"].search(text)) and self._only(
            text, "colors", "color_modifiers", extra=("and", "with", "or")
        )

    def is_pure_size(self, text: str) -> bool:
        return self._only(text, "sizes", extra=("and",))

    def is_pure_material(self, text: str) -> bool:
        return self._only(text, "materials", "patterns", extra=("and",))

    def is_pure_perspective(self, text: str) -> bool:
        return self._only(text, "perspectives")

    def evident_aspect(self, text: str) -> str | None:
        """The aspect a short answer plainly names by itself ("red" -> Color), if any."""
        for aspect, test in (
            ("Color", self.is_pure_color),
            ("Size", self.is_pure_size),
            ("Perspective", self.is_pure_perspective),
            ("Others", self.is_pure_material),
        ):
            if test(text):
                return aspect
        return None

    def _starts_with(self, rx: re.Pattern[str], text: str) -> re.Match[str] | None:
        m = rx.match(text)
        return m if m and m.start() == 0 else None

    # -- parsing -------------------------------------------------------------------------------
    def segments(self, text: str) -> list[str]:
        text = unicodedata.normalize("NFC", text)
        return [s.strip(" .\"'“”‘’") for s in _SEGMENT_SPLIT.split(text) if s and s.strip(" .\"'“”‘’")]

    def parse(self, text: str, *, feedback: bool = False, subject: str = "") -> Slots:
        """Slots of a prompt (first segment's head noun phrase -> Content) or of feedback
        (no Content; words of ``subject`` and filler words are dropped, commands stripped)."""
        slots = empty_slots()
        # the subject's own words, not its prepositions ("in a dress" must not eat "in a garden")
        glue = {
            w for name in ("place_prepositions", "detail_connectives") for w in self._sets.get(name, set())
        }
        subject_words = {w.casefold() for w in _WORD.findall(subject)} - glue
        for i, seg in enumerate(self.segments(text)):
            if feedback:
                seg = self._strip_edges(self._strip_commands(seg), subject_words)
            for aspect, phrase in self._parse_segment(seg, head_is_content=(i == 0 and not feedback)):
                phrase = _tidy(phrase)
                if feedback and aspect in ("Others", "Content"):
                    aspect = "Others"
                    kept = [w for w in _WORD.findall(phrase) if w.casefold() not in subject_words]
                    kept = [w for w in kept if w.casefold() not in self._sets.get("filler_words", set())]
                    if not kept and not _no_space_script(phrase):
                        continue  # "make the dress ..." -> nothing left to say
                if phrase and phrase.casefold() not in (p.casefold() for p in slots[aspect]):
                    slots[aspect].append(phrase)
        return slots

    def _strip_commands(self, seg: str) -> str:
        while True:
            m = self._starts_with(self._re["command_prefixes"], seg)
            if not m:
                return seg
            seg = seg[m.end() :].strip()

    def _strip_edges(self, seg: str, subject_words: set[str]) -> str:
        """Feedback: drop leading and trailing filler and subject words ("the dress ... please")."""
        drop = subject_words | self._sets.get("filler_words", set())
        words = seg.split()
        while words and words[0].casefold().strip(".,!?") in drop:
            words.pop(0)
        while words and words[-1].casefold().strip(".,!?") in drop:
            words.pop()
        return " ".join(words)

    def _parse_segment(self, seg: str, *, head_is_content: bool) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        m = _MEDIUM_OF.match(seg)
        if m:  # "a watercolor painting of a dress": the medium is the style, the rest goes on
            medium = (m.group("medium") + m.group("noun")).strip()
            if m.group("noun").casefold() not in ("image", "picture") or m.group("medium").strip():
                out.append(("Style", medium))
            seg = m.group("rest")
        for pm in list(self._re["perspectives"].finditer(seg)):
            out.append(("Perspective", pm.group(0)))
        seg = _tidy(self._re["perspectives"].sub(" ", seg))
        if not seg:
            return out
        if not head_is_content:  # a later segment or feedback speaks about one aspect as a whole
            return out + self._clause(seg)
        cuts = [b.start() for b in self._boundary.finditer(seg) if b.start() > 0]
        clauses = [seg[a:b].strip() for a, b in zip([0] + cuts, cuts + [len(seg)], strict=True)]
        head, tails = clauses[0], clauses[1:]
        lead = self._boundary.match(head)
        if lead is not None and lead.start() == 0:
            tails, head = [head] + tails, ""
        parts = [head] if head else []
        for clause in tails:
            if parts and self._belongs_to_subject(clause):
                parts.append(clause)  # "in a dress", "on the tea": part of what is shown
            else:
                out.extend(self._clause(clause))
        if parts:
            out[:0] = self._subject(parts)
        return out

    # -- the subject: its noun phrases and the one that takes the adjectives --------------------
    def _has(self, name: str, text: str) -> bool:
        words = {w.casefold() for w in _WORD.findall(text)}
        listed = self._sets.get(name, set())
        return bool(words & listed) or any(" " in p and p in text.casefold() for p in listed)

    def _belongs_to_subject(self, clause: str) -> bool:
        """A phrase after the subject that describes the subject itself, not an aspect: a
        preposition before something that is no place, colour, material, size or style ("in a
        dress", "on the tea", "on a sofa"), or a detail naming a garment ("wearing a coat")."""
        prep = self._starts_with(self._place_prep, clause)
        if prep:
            rest = clause[prep.end() :].strip()
            if not rest or self._re["places"].search(rest) or self._re["styles"].search(rest):
                return False
            if self.is_pure_color(rest) or self._color_first(rest) or self.is_pure_material(rest):
                return False
            return not self.is_pure_size(rest)
        return bool(self._starts_with(self._detail, clause)) and self._has("garments", clause)

    def _subject(self, parts: list[str]) -> list[tuple[str, str]]:
        """Content = the subject's phrases as written; the adjectives of the phrase that takes
        them (:meth:`_target`) come out into their aspects, so that an answer replaces them."""
        i = self._target(parts)
        attributes = self._head(parts[i])
        kept = [c for a, c in attributes if a == "Content"]
        parts = parts[:i] + ([kept[0]] if kept else []) + parts[i + 1 :]
        content = " ".join(p for p in parts if p)
        return [("Content", content)] + [(a, c) for a, c in attributes if a != "Content"]

    def _target(self, parts: list[str]) -> int:
        """The subject phrase that colours, sizes and materials describe: the first naming a
        garment ("a woman in a dress" -> "a dress"), else the first one."""
        for i, part in enumerate(parts):
            if self._has("garments", part):
                return i
        return 0

    def person_only(self, content: str) -> bool:
        """The subject is a person and names no garment: a colour is what they wear ("in red")."""
        return self._has("people", content) and not self._has("garments", content)

    def _split_subject(self, content: str) -> list[str]:
        cuts = [b.start() for b in self._boundary.finditer(content) if b.start() > 0]
        return [content[a:b].strip() for a, b in zip([0] + cuts, cuts + [len(content)], strict=True)]

    def _head(self, head: str) -> list[tuple[str, str]]:
        """The subject's noun phrase: adjectives of colour, size, material, style come out."""
        out: list[tuple[str, str]] = []
        rest = head
        color_spans = self._color_spans(rest)
        for a, b in color_spans:
            out.append(("Color", rest[a:b]))
        rest = _cut(rest, color_spans)
        for name, aspect in (
            ("sizes", "Size"),
            ("patterns", "Others"),
            ("materials", "Others"),
            ("styles", "Style"),
        ):
            spans = [(m.start(), m.end()) for m in self._re[name].finditer(rest)]
            out.extend((aspect, rest[a:b]) for a, b in spans)
            rest = _cut(rest, spans)
        content = _fix_article(_tidy(rest))
        if content and content.casefold() not in self._sets.get("articles", set()):
            out.insert(0, ("Content", content))
        return out

    def _color_spans(self, text: str) -> list[tuple[int, int]]:
        """Spans of colour phrases: colour words with their modifiers, joined by and / - / slash."""
        spans: list[tuple[int, int]] = []
        for m in self._re["colors"].finditer(text):
            a, b = m.start(), m.end()
            before = text[:a]
            mod = re.search(r"([\w-]+)\s+$", before)
            if mod and mod.group(1).casefold() in self._sets.get("color_modifiers", set()):
                a = mod.start(1)
            if spans and re.fullmatch(r"\s*(?:and|&|/|-|\s)\s*", text[spans[-1][1] : a], re.IGNORECASE):
                spans[-1] = (spans[-1][0], b)
            else:
                spans.append((a, b))
        return spans

    def _clause(self, clause: str) -> list[tuple[str, str]]:
        """A whole phrase that is not the subject: find the one aspect it speaks about."""
        low = clause.casefold()
        if self._starts_with(self._detail, clause):
            return [("Others", clause)]
        bg = _BACKGROUND_IS.match(clause)
        if bg:
            rest = bg.group("rest").strip()
            return [
                ("Background", rest if self._starts_with(self._place_prep, rest) else f"{rest} background")
            ]
        prep = self._starts_with(self._place_prep, clause)
        if prep:
            rest = clause[prep.end() :].strip()
            if self._re["styles"].search(rest):
                return [("Style", clause)]
            if self.is_pure_color(rest) or (self._color_first(rest) and not self._re["places"].search(rest)):
                return [("Color", rest)]
            if self.is_pure_material(rest):
                return [("Others", rest)]
            if self.is_pure_size(rest):
                return [("Size", rest)]
            first = _WORD.findall(rest.casefold())[:1]
            if self._re["places"].search(rest) or (first and first[0] in self._sets.get("articles", set())):
                return [("Background", clause)]
            return [("Others", clause)]
        if self._re["styles"].search(clause):
            return [("Style", clause)]
        if self._color_first(clause):
            return [("Color", clause)]
        if self.is_pure_size(clause):
            return [("Size", clause)]
        if self.is_pure_material(clause):
            return [("Others", clause)]
        if self._re["places"].search(low):
            return [("Background", clause)]
        return [("Others", clause)]

    def _color_first(self, text: str) -> bool:
        """The phrase starts with a colour (after modifiers): "navy with white trim"."""
        spans = self._color_spans(text)
        return bool(spans) and not text[: spans[0][0]].strip(" -")

    # -- merging and rendering -----------------------------------------------------------------
    def merge(self, slots: Slots, aspect: str, phrase: str) -> None:
        """Merge one phrase into its aspect's slot.

        Content, Style, Background, Size, Color and Perspective hold one value: a new one
        replaces the old (navy replaces red), unless it starts with a refining connective
        ("and ...", "also ...", "with ...", "+ ...") and then is added. A Content answer
        replaces the subject only when it repeats every word of it ("a wool coat" for "a coat");
        otherwise it is shown as well ("a dress and a handbag"): the user's subject is never
        dropped by an answer about something else. Others collects details;
        a new material replaces an older material, a new pattern an older pattern, and a
        detail already present is not repeated.
        """
        phrase = _tidy(phrase)
        if not phrase or aspect not in slots:
            return
        current = slots[aspect]
        existing = {p.casefold() for p in current}
        refine = self._refine.match(phrase)
        if refine and refine.group(0).strip().casefold() != "with":
            phrase = phrase[refine.end() :].strip()  # "and white trim" -> "white trim"
        if not phrase or phrase.casefold() in existing:
            return
        if aspect == "Content" and current and not refine:
            # "a model wearing it": "it" is the subject so far
            phrase = re.sub(r"\b(?:it|them)\b", lambda _m: " ".join(current), phrase, flags=re.IGNORECASE)
            old_words = {w.casefold() for w in _WORD.findall(" ".join(current))}
            new_words = {w.casefold() for w in _WORD.findall(phrase)}
            fillers = self._sets.get("articles", set())
            if not (old_words - fillers) <= new_words:  # not a refinement: the subject stays
                current.append(phrase)
                return
        if aspect == "Others":
            for group in ("materials", "patterns"):
                if self._only(phrase, group, extra=("and",)):
                    current[:] = [p for p in current if not self._only(p, group, extra=("and",))]
            current.append(phrase)
        elif refine and current:
            current.append(phrase)
        else:
            slots[aspect] = [phrase]

    def render(self, slots: Slots) -> str:
        """One prompt that states every filled slot: adjectives go before the subject phrase
        that takes them ("a long navy silk dress", "a woman in a red dress"; a person with no
        garment named wears the colour: "a woman in red"), everything else follows,
        comma-separated. Several Content values are joined with "and"."""
        adjectives: list[str] = []
        after: list[str] = []
        size, color = slots.get("Size", []), slots.get("Color", [])
        if size and all(self.is_pure_size(s) for s in size):
            adjectives += size
        else:
            after += size
        if color and all(self.is_pure_color(c) and " with " not in f" {c.casefold()} " for c in color):
            adjectives.append(" and ".join(color))
        elif color:
            joined = " ".join(color)
            plain = self._starts_with(self._boundary, joined) or _no_space_script(joined)
            after.append(joined if plain else f"in {joined}")
        others_after: list[str] = []
        worn: list[str] = []  # colours and materials of a person with no garment named
        content = " and ".join(slots.get("Content", []))
        person = bool(content) and self.person_only(content)
        for o in slots.get("Others", []):
            (adjectives if self.is_pure_material(o) else others_after).append(o)
        if person:
            sizes = [a for a in adjectives if a in size]
            worn = [a for a in adjectives if a not in size]
            adjectives = sizes
        parts = self._split_subject(content) if content else [""]
        if worn:  # right after the person: "a woman in red on a sofa"
            parts[0] = f"{parts[0]} in {' '.join(worn)}"
        i = self._target(parts)
        lead = self._starts_with(self._boundary, parts[i]) if i else None
        if lead:  # "in a dress" -> "in" + "a red dress"
            body = _insert_adjectives(parts[i][lead.end() :].strip(), adjectives, self._article)
            parts[i] = f"{parts[i][: lead.end()]} {body}"
        else:
            parts[i] = _insert_adjectives(parts[i], adjectives, self._article)
        head = " ".join(p for p in parts if p)
        backgrounds = []
        for bg in slots.get("Background", []):
            cue = self._starts_with(self._place_prep, bg) or re.search(
                r"\b(background|backdrop|setting|scene)\b", bg, re.IGNORECASE
            )
            backgrounds.append(bg if cue or _no_space_script(bg) else f"{bg} background")
        parts = [
            head,
            *after,
            *others_after,
            *backgrounds,
            *slots.get("Style", []),
            *slots.get("Perspective", []),
        ]
        return ", ".join(p for p in (_tidy(x) for x in parts) if p)

    def components(self, prompt: str) -> dict[str, str]:
        """The prompt's component per aspect (eq. 5's p_i); "" for an aspect it does not mention."""
        return {a: ", ".join(v) for a, v in self.parse(prompt).items()}


_EMPTY_PAIR = re.compile(r"""(?:«\s*»|“\s*”|„\s*“|"\s*"|'\s*'|「\s*」|『\s*』|\(\s*\)|\[\s*\])""")


def _tidy(text: str) -> str:
    text = _EMPTY_PAIR.sub(" ", text)  # quotes or brackets whose words went to another aspect
    text = re.sub(r"\s+", " ", text).strip(" ,;.")
    return re.sub(r"\s+([,;])", r"\1", text)


def _cut(text: str, spans: list[tuple[int, int]]) -> str:
    for a, b in sorted(spans, reverse=True):
        text = text[:a] + " " + text[b:]
    return _tidy(text)


def _a_or_an(word: str) -> str:
    w = word.casefold()
    vowel = w[:1] in ("a", "e", "i", "o") or (w[:1] == "u" and not w.startswith(("uni", "use", "usu", "uk")))
    return "an" if vowel or w.startswith(("hour", "honest", "heir")) else "a"


def _fix_article(text: str) -> str:
    m = re.match(r"^(a|an)\s+(\S+)(.*)$", text, re.IGNORECASE | re.DOTALL)
    if not m:
        return text
    article = _a_or_an(m.group(2))
    if m.group(1)[0].isupper():
        article = article.capitalize()
    return f"{article} {m.group(2)}{m.group(3)}"


def _insert_adjectives(content: str, adjectives: list[str], article_rx: re.Pattern[str]) -> str:
    adjs = " ".join(a for a in adjectives if a)
    if not adjs:
        return content
    if not content:
        return adjs
    m = article_rx.match(content)
    if m:
        return _fix_article(f"{m.group(1)} {adjs} {m.group(2)}")
    return f"{adjs} {content}"


# --------------------------------------------------------------------------------------------
# the local chat model
# --------------------------------------------------------------------------------------------


class LocalLLM:
    """A local transformers chat model: greedy, bounded, deterministic.

    ``generate(messages)`` formats the messages with the tokenizer's chat template when it has
    one, else with a plain "System: / User: / Assistant:" template, and returns only the new text.
    Inputs longer than the model's context are cut from the left (the oldest dialogue first) and
    ``last_warnings`` says so.
    """

    def __init__(self, model: Any, tokenizer: Any, device: torch.device, *, name: str = "LLM"):
        self.model, self.tokenizer, self.device, self.name = model, tokenizer, device, name
        self.last_warnings: tuple[str, ...] = ()
        cfg = getattr(model, "config", None)
        text_cfg = getattr(cfg, "text_config", None) or cfg
        self.context_length = int(getattr(text_cfg, "max_position_embeddings", 2048) or 2048)

    def format(self, messages: list[dict[str, str]]) -> str:
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        lines = [f"{m['role'].capitalize()}: {m['content']}" for m in messages]
        return "\n".join(lines) + "\nAssistant:"

    def _stop_ids(self) -> list[int]:
        tok = self.tokenizer
        ids = {tok.eos_token_id} if tok.eos_token_id is not None else set()
        for special in ("<|im_end|>", "<|endoftext|>", "<|eot_id|>"):
            tid = tok.convert_tokens_to_ids(special)
            if isinstance(tid, int) and tid != tok.unk_token_id and tid >= 0:
                ids.add(tid)
        gen_eos = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        ids.update([gen_eos] if isinstance(gen_eos, int) else (gen_eos or []))
        return sorted(i for i in ids if i is not None)

    def generate(self, messages: list[dict[str, str]], max_new_tokens: int = 64, seed: int = 0) -> str:
        import torch
        from transformers import GenerationConfig

        if not 1 <= max_new_tokens <= 1024:
            raise BadInput("max_new_tokens must be between 1 and 1024.", "Ask for a shorter answer.")
        text = self.format(messages)
        ids = self.tokenizer(text, return_tensors="pt", add_special_tokens=False, verbose=False)["input_ids"]
        room = max(8, self.context_length - max_new_tokens)
        warnings = []
        if ids.shape[1] > room:
            warnings.append(
                f"The {self.name} reads at most {self.context_length} tokens; the oldest "
                f"{ids.shape[1] - room} tokens of the dialogue were left out."
            )
            ids = ids[:, -room:]
        self.last_warnings = tuple(warnings)
        stop = self._stop_ids()
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else (stop or [0])[0]
        config = GenerationConfig(
            do_sample=False, max_new_tokens=max_new_tokens, eos_token_id=stop or None, pad_token_id=pad
        )
        ids = ids.to(self.device)
        with torch.random.fork_rng(devices=[]), torch.inference_mode():
            torch.manual_seed(seed)  # greedy decoding needs no randomness; this keeps it so
            out = self.model.generate(
                input_ids=ids, attention_mask=torch.ones_like(ids), generation_config=config
            )
        return self.tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)


def load_llm(path: Path, spec: Any, device: torch.device, dtype: torch.dtype) -> LocalLLM:
    """Loader of the ``llm`` role: any local transformers causal LM folder with its tokenizer
    (AutoModelForCausalLM + AutoTokenizer, e.g. Qwen/Qwen2.5-1.5B-Instruct)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .metrics import _role, load_transformers_folder

    fix = (
        "Put a transformers chat model folder (config.json, *.safetensors, tokenizer files) there, "
        "or point the profile's llm role at one (e.g. Qwen/Qwen2.5-1.5B-Instruct); "
        "`tdri models demo` builds a tiny one."
    )
    model, tokenizer = load_transformers_folder(
        path, spec, "llm", fix, AutoModelForCausalLM, AutoTokenizer, device, dtype
    )
    return LocalLLM(model, tokenizer, device, name=f"{_role(spec, 'llm')} model")


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
                self.parser.merge(slots, aspect, text)
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

_LABEL_PREFIX = re.compile(
    r"^(?:(?:sure|okay|ok|certainly)[,!.]?\s*)?(?:here(?:'s| is)\s+(?:the|your|a)\s+)?"
    r"(?:(?:new|final|updated|refined|improved|image|revised)\s+)*(?:prompt|answer|question)\s*[:：\-–]\s*",
    re.IGNORECASE,
)
_QUOTES = "\"'`“”‘’«»「」『』"


def extract_reply_line(raw: str, max_chars: int) -> str:
    """The useful line of a chat model's reply: no reasoning block, label, bullet, quotes or
    markdown; the first non-empty line; cut at a word or comma boundary to ``max_chars``."""
    from .metrics import printable

    text = re.sub(r"<think>.*?(</think>|$)", " ", raw or "", flags=re.DOTALL | re.IGNORECASE)
    for line in text.splitlines():
        line = printable(line)
        line = re.sub(r"^(?:[-*•]\s+|\d+[.)]\s+|#+\s*)", "", line)
        line = line.replace("**", "").replace("__", "").strip()
        stripped = _LABEL_PREFIX.sub("", line).strip()
        if not stripped:
            continue  # a bare "Prompt:" label line
        line = stripped.strip(_QUOTES).strip()
        if line:
            break
    else:
        return ""
    line = re.sub(r"\s+", " ", line)
    if len(line) > max_chars:
        cut = line[:max_chars]
        at = max(cut.rfind(","), cut.rfind(" "))
        line = cut[:at] if at > max_chars // 2 else cut
    return line.strip(" ,;")


def _content_words(text: str, fillers: AbstractSet[str]) -> set[str]:
    """Words that carry meaning (for grounding checks); CJK runs give their character pairs."""
    out: set[str] = set()
    for w in _WORD.findall(text.casefold()):
        if _no_space_script(w):
            out.update(w[i : i + 2] for i in range(max(1, len(w) - 1)))
        elif len(w) >= 3 and w not in fillers:
            out.add(w)
    return out


def unusable_reason(
    candidate: str, grounding_text: str, fillers: AbstractSet[str] = frozenset()
) -> str | None:
    """Why a model's reply cannot be used (None when it can): empty, mostly symbols, or not
    mentioning anything the dialogue talks about (a random or confused model)."""
    if not candidate.strip():
        return "it was empty"
    letters = sum(ch.isalpha() for ch in candidate)
    plain = sum(ch.isalpha() or ch.isspace() or ch in ",.'-!?;:()&/" for ch in candidate)
    if letters < 2 or plain / len(candidate) < 0.8:
        return "it was not text"
    words = _content_words(grounding_text, fillers)
    if words and not words & _content_words(candidate, fillers):
        return "it mentioned nothing from the dialogue"
    return None


@dataclass(frozen=True)
class ChatTemplate:
    """A system + user message pair with ``{placeholders}``, from llm_prompts.json."""

    system: str
    user: str
    max_new_tokens: int = 60
    max_chars: int = 300

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ChatTemplate:
        return cls(
            system=str(data["system"]),
            user=str(data["user"]),
            max_new_tokens=int(data.get("max_new_tokens", 60)),
            max_chars=int(data.get("max_chars", 300)),
        )

    def messages(self, **values: str) -> list[dict[str, str]]:
        # str.replace, not str.format: user text may hold braces of its own
        user = self.user
        for key, value in values.items():
            user = user.replace("{" + key + "}", value)
        return [{"role": "system", "content": self.system}, {"role": "user", "content": user}]


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
