"""The rule-based prompt parser: text <-> one slot per aspect (``settings.ASPECTS``).

:class:`PromptParser` splits a prompt or a piece of feedback into aspect slots with the keyword
lists of ``resources/templates/keywords.json`` and renders slots back into one prompt. The
structured summarizer (D2P, paper 3.2.1) keeps its dialogue state in these slots; the Reflector
(FR, paper 3.2.2) reads a prompt's component per aspect (eq. 5's p_i) from
:meth:`PromptParser.components`. What it keeps and how it places adjectives and phrases is told
in ``summarizer.py``'s docstring and checked by ``tests/engine/test_summarizer_corpus.py``.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from .settings import ASPECTS

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
# pattern words that name a thing rather than describe one: they follow the subject ("a red dress
# with stripes"), where "striped", "polka dot" or "floral" go before it
_PATTERN_NOUNS = frozenset({"stripes", "dots", "ruffles", "embroidery", "checks", "sequins"})
# patterns that say there is none: before the colour, as English puts it ("a plain red dress")
_BEFORE_COLOUR = frozenset({"plain", "solid"})
# sizes before the subject in English order ("a big short loose sleeveless dress"); free phrases first
_SIZE_ORDER = (None, "scale", "length", "fit", "sleeves")
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
            "colors", "color_modifiers", "sizes", "sleeves", "styles", "perspectives", "materials", "patterns",
            "places", "command_prefixes",
        )}  # fmt: skip
        groups: Any = keywords.get("size_groups", {})  # {group: [size words]}
        self._size_group = {
            w.casefold(): name
            for name, words in (groups.items() if isinstance(groups, dict) else ())
            for w in words
        }
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
        return self._only(text, "sleeves", "sizes", extra=("and",))

    def _size_rank(self, phrase: str) -> int:
        group = self.size_group(phrase)
        return _SIZE_ORDER.index(group) if group in _SIZE_ORDER else len(_SIZE_ORDER)

    def size_group(self, phrase: str) -> str | None:
        """The group a one-word Size phrase belongs to: "sleeves" ("sleeveless", "long
        sleeves"), else its ``size_groups`` entry ("length", "fit", "scale"); None for anything
        longer or unknown ("short and loose", "much longer")."""
        text = _tidy(phrase).casefold()
        if self._only(text, "sleeves"):
            return "sleeves"
        return self._size_group.get(text)

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
            if parts and self._belongs_to_subject(clause) and not self._garment_details(parts[-1], clause):
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

    def _garment_details(self, phrase: str, clause: str) -> bool:
        """ "with long sleeves and a belt" after a garment: its sleeves, pattern and accessories,
        which go to their aspects (so that the Content question names the garment alone, and a
        new garment keeps them), where "a girl with a hat" keeps the hat in the subject."""
        rest = re.match(r"^with\s+(.+)$", clause, re.IGNORECASE)
        if rest is None or self.kind(phrase) != "garment":
            return False
        return bool(self._with_list(rest.group(1), least=1))

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

    def kind(self, phrase: str) -> str | None:
        """What a noun phrase of the subject names, as far as the keyword lists tell: "person"
        ("a woman"), "garment" ("in a dress", "a pair of trousers"), "accessory" ("a handbag",
        "with a hat": a garment worn with an outfit rather than as it), else None (a cat, a
        café, a word in a language the lists do not know)."""
        if self._has("people", phrase):
            return "person"
        if not self._has("garments", phrase):
            return None
        words = {w.casefold() for w in _WORD.findall(phrase)}
        low = phrase.casefold()
        clothes = self._sets.get("garments", set()) - self._sets.get("accessories", set())
        if words & clothes or any(" " in p and p in low for p in clothes):
            return "garment"
        return "accessory"

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
            ("sleeves", "Size"),
            ("sizes", "Size"),
            ("patterns", "Others"),
            ("materials", "Others"),
            ("styles", "Style"),
        ):
            spans = [(m.start(), m.end()) for m in self._re[name].finditer(rest)]
            out.extend((aspect, rest[a:b]) for a, b in spans)
            rest = _cut(rest, spans)
        # "a silk and lace dress": with both adjectives out, their "and" must not stay ("an and dress")
        rest = re.sub(r"^((?:an?|the)\s+)?(?:and|&|or)\s+", r"\1", _tidy(rest), flags=re.IGNORECASE)
        content = _fix_article(rest)
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
        with_size = re.match(r"^with\s+(.+)$", clause, re.IGNORECASE)
        if with_size and self.is_pure_size(with_size.group(1)):
            return [("Size", with_size.group(1))]  # "with long sleeves"
        listed = self._with_list(with_size.group(1)) if with_size else []
        if listed:  # "with long sleeves and stripes"
            return listed
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
        return self._with_list(clause) or [("Others", clause)]  # "stripes and a belt"

    def _with_list(self, text: str, least: int = 2) -> list[tuple[str, str]]:
        """The items of a list of what a garment is "with" ("long sleeves, stripes and a belt"),
        each to its aspect: sleeves to Size, patterns and accessories to Others, one phrase each,
        so that a later pattern can replace the pattern alone. Empty unless there are ``least``
        items or more and every one is of those kinds."""
        items = [i for i in re.split(r"\s*(?:,|\band\b)\s*", text, flags=re.IGNORECASE) if i.strip()]
        out = []
        for item in items:
            if self.is_pure_size(item):
                out.append(("Size", item))
            elif self.is_pure_material(item) or self.kind(item) == "accessory":
                out.append(("Others", item))
            else:
                return []
        return out if len(out) >= least else []

    def _color_first(self, text: str) -> bool:
        """The phrase starts with a colour (after modifiers): "navy with white trim"."""
        spans = self._color_spans(text)
        return bool(spans) and not text[: spans[0][0]].strip(" -")

    # -- merging and rendering -----------------------------------------------------------------
    def merge(self, slots: Slots, aspect: str, phrase: str) -> list[str]:
        """Merge one phrase into its aspect's slot; returns what had to leave another slot (see
        the last paragraph), usually nothing.

        Content, Style, Background, Size, Color and Perspective hold one value: a new one
        replaces the old (navy replaces red), unless it starts with a refining connective
        ("and ...", "also ...", "with ...", "+ ...") and then is added ("with a hat" joins the
        subject phrase: "a dress with a hat"). Size holds one value per group of
        ``size_groups`` (length, fit, scale) and one for the sleeves: a Designer who clicks
        "short", then "fitted", then "sleeveless" asked for all three ("a short fitted sleeveless
        dress"), while "long" replaces "short"; a size phrase of no group replaces them all.
        Others collects details; a new material replaces an older material, a new pattern an
        older pattern ("with dots" replaces "with stripes"), and a detail already present is not
        repeated.

        Content (the paper is silent; the rule chosen): the Content question asks what the
        image should show, so an answer names the subject, and it replaces the subject's
        phrase of its own :meth:`kind`, keeping everything else the dialogue gave (colour,
        size, style, place stay in their slots and go to the new phrase)::

            "a dress" + "a coat"              -> "a coat"            (a garment for a garment)
            "a woman in a dress" + "a coat"   -> "a woman in a coat"
            "a woman in a dress" + "a man"    -> "a man in a dress"  (a person for a person)
            "a cat on a sofa" + "a dog"       -> "a dog on a sofa"   (no known kind on either
                                                 side: the head phrase, the main subject)
            "a cat on a sofa" + "a dog on a rug" -> "a dog on a rug" (an answer with its own
                                                 phrases replaces the whole subject value)

        It is shown as well when it says so ("and a bag", "with a hat") or when the subject
        has no phrase of its kind ("a dress" + "a handbag" -> "a dress and a handbag": an
        accessory goes with a garment; "a woman in a dress" + "a small dog" adds the dog). An
        answer that repeats every word of the subject refines it ("a wool coat" for "a coat"),
        and "it" in an answer is the subject so far ("a model wearing it"). An answer that
        replaces brings its own adjectives into their slots ("a long navy dress" + "a short
        coat" -> "a short navy coat", never "a long navy short coat"); one that adds keeps
        them ("a dress and a red handbag").

        A garment with no sleeves ("bottoms": a skirt, a pair of trousers) cannot keep an
        answer about sleeves: when a Content answer leaves a subject whose garments are all
        bottoms, the sleeve sizes leave with the old garment ("a sleeveless dress" + "a skirt"
        -> "a skirt"), as the Atelier's world drops them (``world.Record.replace``); the
        summarizer tells the user.
        """
        self._merge(slots, aspect, phrase)
        return self._drop_sleeves(slots) if aspect == "Content" else []

    def _drop_sleeves(self, slots: Slots) -> list[str]:
        """Remove the sleeve sizes when every garment of the subject is one without sleeves."""
        content = " ".join(slots.get("Content", [])).casefold()
        clothes = self._sets.get("garments", set()) - self._sets.get("accessories", set())
        named = {w for w in _WORD.findall(content) if w in clothes}
        if not named or not named <= self._sets.get("bottoms", set()):
            return []
        sizes = slots.get("Size", [])
        dropped = [p for p in sizes if self.size_group(p) == "sleeves"]
        if dropped:
            slots["Size"] = [p for p in sizes if p not in dropped]
        return dropped

    def _merge(self, slots: Slots, aspect: str, phrase: str) -> None:
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
            if not (old_words - fillers) <= new_words:  # not a refinement of the whole subject
                # "a short red coat" in place of "a long navy dress": the noun replaces the noun,
                # its colour, size, material or pattern replace those of the dialogue
                said = self._head(phrase) if len(self._split_subject(phrase)) == 1 else []
                nouns = [c for a, c in said if a == "Content"]
                split = (
                    len(nouns) == 1
                    and not any(a == "Style" for a, _ in said)
                    and self.kind(nouns[0]) != "person"  # "a tall man": his size, not the dress's
                )
                if self._replace_subject(current, nouns[0] if split else phrase):
                    for a, c in said if split else []:
                        if a != "Content":
                            self._merge(slots, a, c)
                    return
                current.append(phrase)  # another kind of thing: shown with the subject
                return
        if aspect == "Others":
            for group in ("materials", "patterns"):
                # "with dots" is a pattern: the pattern nouns the renderer puts after "with" count
                extra = ("and", "with", *(_PATTERN_NOUNS if group == "patterns" else ()))
                if self._only(phrase, group, extra=extra):
                    current[:] = [p for p in current if not self._only(p, group, extra=extra)]
            current.append(phrase)
        elif refine and current:
            if aspect == "Content" and self._starts_with(self._detail, phrase):
                current[-1] = f"{current[-1]} {phrase}"  # "with a hat" goes with the subject
            else:
                current.append(phrase)
        elif aspect == "Size" and self.size_group(phrase):
            own = self.size_group(phrase)  # "fitted" keeps "short", "long" replaces it
            current[:] = [p for p in current if self.size_group(p) not in (own, None)]
            current.append(phrase)
        else:
            slots[aspect] = [phrase]

    def _replace_subject(self, current: list[str], answer: str) -> bool:
        """Put a Content answer in place of the subject's phrase of its own kind (see
        :meth:`merge`); False when the subject has none (the answer is then added)."""
        answer_parts = self._split_subject(answer)
        kind = self.kind(answer_parts[0])
        for i, value in enumerate(current):
            parts = self._split_subject(value)
            # a known kind: its first phrase anywhere; no known kind: only the main subject
            places = range(len(parts)) if kind is not None else ([0] if i == 0 else [])
            for j in places:
                if self.kind(parts[j]) != kind:
                    continue
                if len(answer_parts) > 1:  # "a dog on a rug": the answer says all of it
                    current[i] = answer
                    return True
                lead = self._starts_with(self._boundary, parts[j]) if j else None
                own = self._starts_with(self._boundary, answer)
                parts[j] = f"{parts[j][: lead.end()]} {answer}" if lead and not own else answer
                current[i] = " ".join(parts)
                return True
        return False

    def render(self, slots: Slots) -> str:
        """One prompt that states every filled slot: adjectives go before the subject phrase
        that takes them ("a long navy silk dress", "a woman in a red dress"; a person with no
        garment named wears the colour: "a woman in red"; sizes in the order scale, length,
        fit, and "sleeveless" last, next to the garment: "a short fitted red sleeveless dress";
        sleeves with a length follow: "with long sleeves"), everything else follows,
        comma-separated. Several Content values are joined with "and"."""
        adjectives: list[str] = []
        after: list[str] = []
        # what the subject is "with": sleeves with a length, patterns named as things, accessories
        # ("a red dress with long sleeves, stripes and a belt", as the Atelier's captions say it)
        with_items: list[str] = []
        size, color = slots.get("Size", []), slots.get("Color", [])
        next_to_noun: list[str] = []  # "sleeveless": right before the garment ("a red sleeveless dress")
        for s in sorted(size, key=self._size_rank):
            if not self.is_pure_size(s):
                after.append(s)
            elif s.casefold().split()[-1] == "sleeves":
                with_items.append(s)  # "a dress with long sleeves"
            elif self.size_group(s) == "sleeves":
                next_to_noun.append(s)
            else:
                adjectives.append(s)
        color_at = len(adjectives)  # "plain" and "solid" go before the colour: "a plain red dress"
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
            low = o.casefold()
            bare = re.sub(r"^with\s+", "", o, flags=re.IGNORECASE)  # a one-click "with a hat"
            if bare != o and self._with_list(bare, least=1):
                with_items.append(bare)  # "with checks", "with a hat": items of the list
            elif not self.is_pure_material(o):
                accessory = self.kind(o) == "accessory" and not self._starts_with(self._detail, o)
                (with_items if accessory else others_after).append(o)  # "a hat" -> "with a hat"
            elif low.split()[-1] in _PATTERN_NOUNS:
                with_items.append(o)
            elif low in _BEFORE_COLOUR:
                adjectives.insert(color_at, o)
            else:
                adjectives.append(o)
        adjectives += next_to_noun
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
        if with_items:
            listed = join_and(with_items)
            joint = ", with" if " with " in f" {head.casefold()} " else " with"  # not "with a belt with"
            head = f"{head}{joint} {listed}".strip(", ")
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


def join_and(items: list[str]) -> str:
    """ "A", "A and B", "A, B and C"."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


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


_PAIR_OF = re.compile(r"^((?:pair|pairs)\s+of)\s+(.+)$", re.IGNORECASE | re.DOTALL)


def _insert_adjectives(content: str, adjectives: list[str], article_rx: re.Pattern[str]) -> str:
    adjs = " ".join(a for a in adjectives if a)
    if not adjs:
        return content
    if not content:
        return adjs
    m = article_rx.match(content)
    if m:
        pair = _PAIR_OF.match(m.group(2))
        if pair:  # "a pair of long red trousers", not "a long red pair of trousers"
            return f"{m.group(1)} {pair.group(1)} {adjs} {pair.group(2)}"
        return _fix_article(f"{m.group(1)} {adjs} {m.group(2)}")
    return f"{adjs} {content}"
