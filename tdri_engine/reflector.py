"""Feedback-Reflection (FR, paper section 3.2.2 and 4.3): caption, score, and maybe ask.

1. A vision-language model captions the image on the seven aspects (``settings.ASPECTS``), one
   instruction per aspect from ``resources/templates/vlm_aspects.json`` (eq. 4: F = V(I)).
2. Each aspect gets a similarity ``s_i`` (eq. 5's sim): the CLIP score of the image against
   the aspect's caption, as the paper's section 4.3 does ("We compare the CLIP similarity
   scores between the current generated image and each caption")::

       s_i = CLIP(image, f_i)      cosine of the L2-normalised embeddings, clipped at 0 (metrics)

   An empty caption (the VLM said nothing about the aspect) gives s_i = 0. The prompt does not
   enter s_i; it names the subject of the question and its one-click options. Real CLIP gives
   matching image-caption pairs cosines of about 0.2-0.35, never near 1, so A sits near
   1 - mean(s_i) (about 0.7 with weights summing to 1) and moves by a few hundredths between
   images: tau is therefore a property of the profile's models, calibrated by
   ``tdri models calibrate`` (``tdri_engine.calibration``), not a guess.
3. Ambiguity A = sum_i w_i (1 - s_i) (eq. 5) with ``settings.aspect_weights`` (an aspect without
   a weight counts 0). If A > tau (``settings.tau``; when unset, the profile's calibrated value
   filled in by the session, else :data:`FALLBACK_TAU`) one clarification question is asked about an
   aspect drawn at random (seeded) among the three lowest-scoring aspects with a weight above
   zero (paper 4.3); otherwise none. The question comes from the per-aspect templates in
   ``questions.json`` (with one-click options) or, with ``settings.questioner == "llm"``, from the
   local chat model, falling back to the template with a warning when its reply is unusable.
4. No question on the aspect the user just settled (the paper is silent; a designer who answered
   "red" or skipped the colour question should not get it again at once). The session passes the
   previous round's question aspect with the answer (:class:`Settled`); that aspect leaves the
   candidates unless the image still disagrees with the answer, measured with the same CLIP::

       disagrees  <=>  CLIP(image, answer) < max over the aspect's other one-click options o of CLIP(image, o)

   A skip has no answer to disagree with, so a skipped aspect is never asked again in the next
   round. When the settled aspect was the only candidate, no question is asked.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import events
from .errors import BadInput
from .llm import extract_reply_line, unusable_reason
from .prompt_parser import PromptParser
from .settings import ASPECTS
from .templates import ChatTemplate, Templates, default_templates, questions_templates

if TYPE_CHECKING:
    import torch

    from .settings import EngineSettings

# tau when neither the settings nor a profile give one: the estimate for real CLIP ViT-B/32
# (see models.ESTIMATED_THRESHOLDS); a session always passes its profile's value.
FALLBACK_TAU = 0.74
CAPTION_MAX_CHARS = 300


# --------------------------------------------------------------------------------------------
# the captioner (VLM)
# --------------------------------------------------------------------------------------------


class Captioner:
    """A transformers image-text-to-text model (Qwen2-VL and kin): greedy, bounded captions."""

    def __init__(self, model: Any, processor: Any, device: torch.device, *, max_new_tokens: int = 40):
        self.model, self.processor, self.device = model, processor, device
        self.max_new_tokens = max_new_tokens
        tok = getattr(processor, "tokenizer", None)
        if tok is not None:
            tok.padding_side = "left"  # batched generation continues every row at its end

    def _text(self, instruction: str) -> str:
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": instruction}]}]
        if getattr(self.processor, "chat_template", None):
            return self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        image_token = getattr(self.processor, "image_token", "<image>")
        return f"{image_token}\n{instruction}\n"

    def caption(self, image: Any, instruction: str, *, max_new_tokens: int | None = None) -> str:
        """The model's answer to ``instruction`` about ``image``."""
        return self.caption_many(image, [instruction], max_new_tokens=max_new_tokens)[0]

    def caption_many(
        self,
        image: Any,
        instructions: Sequence[str],
        *,
        max_new_tokens: int | None = None,
        cancel: events.CancelToken | None = None,
    ) -> list[str]:
        """Answers to several instructions about one image, in one batched generate call.
        ``cancel`` is polled after every generated token."""
        import torch
        from transformers import GenerationConfig, StoppingCriteria, StoppingCriteriaList

        from .metrics import _as_rgb

        picture = _as_rgb(image)
        limit = max_new_tokens or self.max_new_tokens
        if not 1 <= limit <= 512:
            raise BadInput("max_new_tokens must be between 1 and 512.", "Ask for a shorter caption.")
        texts = [self._text(i) for i in instructions]
        inputs = self.processor(text=texts, images=[picture] * len(texts), return_tensors="pt", padding=True)
        inputs = inputs.to(self.device)
        dtype = next(self.model.parameters()).dtype
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(dtype)

        class _Cancel(StoppingCriteria):
            def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> Any:
                stop = bool(cancel is not None and cancel.cancelled)
                return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)

        tok = self.processor.tokenizer
        gen = GenerationConfig(
            do_sample=False,
            max_new_tokens=limit,
            eos_token_id=getattr(self.model.generation_config, "eos_token_id", None) or tok.eos_token_id,
            pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
        )
        with torch.inference_mode():
            out = self.model.generate(
                **inputs, generation_config=gen, stopping_criteria=StoppingCriteriaList([_Cancel()])
            )
        if cancel is not None:
            cancel.raise_if_cancelled()
        new = out[:, inputs["input_ids"].shape[1] :]
        return [_clean_caption(t) for t in tok.batch_decode(new, skip_special_tokens=True)]


def _clean_caption(text: str) -> str:
    from .metrics import printable

    text = printable(text)
    if len(text) > CAPTION_MAX_CHARS:
        text = text[:CAPTION_MAX_CHARS].rsplit(" ", 1)[0]
    return text


def load_captioner(path: Path, spec: Any, device: torch.device, dtype: torch.dtype) -> Captioner:
    """Loader of the ``vlm`` role: any transformers image-text-to-text folder
    (AutoModelForImageTextToText + AutoProcessor; e.g. Qwen/Qwen2-VL-2B-Instruct)."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from .metrics import load_transformers_folder

    fix = (
        "Put a transformers image-text-to-text model folder (config.json, *.safetensors, processor and "
        "tokenizer files) there, or point the profile's vlm role at one (e.g. Qwen/Qwen2-VL-2B-Instruct); "
        "`tdri models demo` builds a tiny one."
    )
    model, processor = load_transformers_folder(
        path, spec, "vlm", fix, AutoModelForImageTextToText, AutoProcessor, device, dtype
    )
    max_new = int(default_templates().vlm.get("max_new_tokens", 40))
    return Captioner(model, processor, device, max_new_tokens=max_new)


# --------------------------------------------------------------------------------------------
# the formulas
# --------------------------------------------------------------------------------------------


def aspect_scores(captions: Mapping[str, str], image_sims: Mapping[str, float]) -> dict[str, float]:
    """s_i = CLIP(image, caption_i) for every aspect, in the paper's order; 0 where the caption
    is empty (nothing seen, so nothing confirmed). Scores are clipped into [0, 1]."""
    out = {}
    for aspect in ASPECTS:
        s = float(image_sims.get(aspect, 0.0)) if (captions.get(aspect) or "").strip() else 0.0
        out[aspect] = min(1.0, max(0.0, s))
    return out


def ambiguity(scores: Mapping[str, float], weights: Mapping[str, float]) -> float:
    """A = sum_i w_i (1 - s_i), eq. (5); aspects without a weight count 0."""
    return float(sum(float(weights.get(a, 0.0)) * (1.0 - float(s)) for a, s in scores.items()))


def lowest_aspects(scores: Mapping[str, float], k: int = 3) -> list[str]:
    """The k lowest-scoring aspects, lowest first; ties keep the paper's aspect order."""
    order = {a: i for i, a in enumerate(ASPECTS)}
    return sorted(scores, key=lambda a: (scores[a], order.get(a, len(order)), a))[:k]


def choose_aspect(scores: Mapping[str, float], rng: random.Random) -> str:
    """One of the three lowest-scoring aspects, drawn with ``rng`` (paper 4.3)."""
    if not scores:
        raise BadInput("No aspect scores to choose from.", "Score at least one aspect.")
    return rng.choice(lowest_aspects(scores, 3))


# --------------------------------------------------------------------------------------------
# the Reflector
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settled:
    """The aspect the user answered (``answer``) or skipped (``answer`` None) in the last round."""

    aspect: str
    answer: str | None = None


@dataclass(frozen=True)
class ReflectionResult:
    reflection: events.Reflection
    question: events.Question | None
    warnings: tuple[str, ...] = field(default_factory=tuple)


class Reflector:
    """FR: captions on seven aspects, CLIP similarities, ambiguity, and the clarification question."""

    def __init__(
        self,
        captioner: Any,
        clip: Any,
        settings: EngineSettings,
        *,
        questioner: Any | None = None,
        rng_seed: int | None = None,
        templates: Templates | None = None,
    ):
        self.captioner, self.clip, self.settings = captioner, clip, settings
        self.questioner = questioner
        self.templates = templates or default_templates()
        self.parser = PromptParser(self.templates.keywords)
        self.rng = random.Random(rng_seed)

    # -- steps, each usable alone ----------------------------------------------------------
    def captions(self, image: Any, *, cancel: events.CancelToken | None = None) -> dict[str, str]:
        """Step 1: one caption per aspect from the VLM."""
        instructions = [self.templates.vlm["instructions"][a] for a in ASPECTS]
        many = getattr(self.captioner, "caption_many", None)
        if many is not None:
            texts = many(image, instructions, cancel=cancel)
        else:  # any object with caption(image, instruction)
            texts = []
            for instruction in instructions:
                if cancel is not None:
                    cancel.raise_if_cancelled()
                texts.append(self.captioner.caption(image, instruction))
        return dict(zip(ASPECTS, (t.strip() for t in texts), strict=True))

    def similarities(
        self, image: Any, captions: Mapping[str, str]
    ) -> tuple[dict[str, float], tuple[str, ...]]:
        """Step 2: s_i = CLIP(image, caption_i), one batched CLIP call; 0 for an empty caption."""
        said = [a for a in ASPECTS if (captions.get(a) or "").strip()]
        sims: dict[str, float] = {}
        warnings: tuple[str, ...] = ()
        if said:
            texts = [captions[a] for a in said]
            with_warnings = getattr(self.clip, "image_text_with_warnings", None)
            if with_warnings is not None:
                scores, warnings = with_warnings(image, texts)
            else:  # any scorer with image_text(image, texts)
                scores = self.clip.image_text(image, texts)
                warnings = tuple(getattr(self.clip, "last_warnings", ()) or ())
            sims.update(zip(said, (float(v) for v in scores), strict=True))
        return aspect_scores(captions, sims), tuple(dict.fromkeys(warnings))

    @property
    def tau(self) -> float:
        """The ambiguity threshold in force: the settings' (the session fills in the profile's)."""
        tau = getattr(self.settings, "tau", None)
        return FALLBACK_TAU if tau is None else float(tau)

    def disagrees(self, image: Any, settled: Settled, prompt: str = "") -> bool:
        """Whether the image still contradicts the user's answer about ``settled.aspect``: the
        answer scores below one of the aspect's other one-click options that can apply to
        ``prompt`` (:meth:`applicable`; CLIP, image vs text). A skip, or an aspect without
        other options to compare with, never disagrees."""
        answer = (settled.answer or "").strip()
        if not answer or settled.aspect not in self.templates.questions["aspects"]:
            return False
        said = answer.lower()
        others = [
            o
            for o in self.applicable(settled.aspect, prompt)
            if o.lower() not in said and said not in o.lower()
        ]
        if not others:
            return False
        texts = [answer, *others]
        with_warnings = getattr(self.clip, "image_text_with_warnings", None)
        sims = (
            with_warnings(image, texts)[0]
            if with_warnings is not None
            else self.clip.image_text(image, texts)
        )
        values = [float(v) for v in sims]
        return values[0] < max(values[1:])

    def reflect(
        self,
        image: Any,
        prompt: str,
        *,
        cancel: events.CancelToken | None = None,
        settled: Settled | None = None,
    ) -> ReflectionResult:
        """FR on one image; ``settled``: the aspect the user just answered or skipped (rule 4)."""
        if not isinstance(prompt, str):
            raise BadInput("The prompt must be text.", "Pass the prompt the image was generated from.")
        captions = self.captions(image, cancel=cancel)
        if cancel is not None:
            cancel.raise_if_cancelled()
        scores, warnings = self.similarities(image, captions)
        weights = self.settings.aspect_weights
        a_score = ambiguity(scores, weights)
        tau = self.tau
        asks = a_score > tau
        weighted = {a: s for a, s in scores.items() if weights.get(a, 0.0) > 0} or scores
        if asks and settled is not None and settled.aspect in weighted:
            if cancel is not None:
                cancel.raise_if_cancelled()
            if not self.disagrees(image, settled, prompt):
                weighted = {a: s for a, s in weighted.items() if a != settled.aspect}
                asks = bool(weighted)
        reflection = events.Reflection(
            captions=captions, scores=scores, ambiguity=a_score, threshold=tau, asks=asks
        )
        if not asks:
            return ReflectionResult(reflection, None, warnings)
        if getattr(self.settings, "question_aspect", "lowest3") == "random":
            aspect = self.rng.choice(sorted(weighted, key=ASPECTS.index))  # FR off: any weighted aspect
        else:
            aspect = choose_aspect(weighted, self.rng)
        if cancel is not None:
            cancel.raise_if_cancelled()
        question, q_warnings = self.question(aspect, prompt, captions, scores, a_score)
        return ReflectionResult(reflection, question, warnings + q_warnings)

    # -- the clarification question (eq. 6) ---------------------------------------------------
    def subject(self, prompt: str) -> str:
        content = self.parser.components(prompt).get("Content", "")
        if not content:
            return str(self.templates.questions.get("fallback_subject", "the image"))
        m = re.match(r"^(a|an|one|some)\s+(.+)$", content, re.IGNORECASE)
        return f"the {m.group(2)}" if m else content

    def options(self, aspect: str, prompt: str, shown: str = "") -> tuple[str, ...]:
        """One-click answers for the aspect, minus those the prompt already states, at most
        ``max_options``.

        An option is stated when the text matches its ``stated_by`` pattern where the template
        gives one (the atelier profile's: the world's own reader, ``captions.mentions``, so
        "trousers on the beach" states "a pair of trousers" and "on a beach", and "short
        sleeves" states no length "short"), else when the text holds it as a whole phrase. With ``shown_last`` in the template, options that
        ``shown`` (the image's caption for the aspect) states go after the others: the answers
        offered first are the changes the image does not show yet (the studio shows six).

        An option the template lists in ``applies_to`` (option -> the Content options it can
        apply to) is offered only when the prompt states one of those, or states none of the
        Content options at all (then nothing tells it cannot apply): the atelier's sleeve
        answers are offered for a dress or a coat, not for a skirt or a pair of trousers
        (``world.SLEEVED``). What does not apply is left out before the six are taken, so the
        one-click answers (Alt+1 … Alt+6) stay numbered from 1 without gaps.
        """
        spec = self.templates.questions["aspects"][aspect]
        limit = int(self.templates.questions.get("max_options", 6))
        candidates = [o for o in self.applicable(aspect, prompt) if not _stated(spec, o, prompt)]
        if shown and self.templates.questions.get("shown_last"):
            candidates.sort(key=lambda o: _stated(spec, o, shown))  # stable: the template's order otherwise
        return tuple(candidates[:limit])

    def applicable(self, aspect: str, prompt: str) -> list[str]:
        """The aspect's one-click answers that can apply to what ``prompt`` shows, in the
        template's order: an option listed in ``applies_to`` only where the prompt states one
        of its Content options, or none at all (see :meth:`options`)."""
        aspects = self.templates.questions["aspects"]
        spec = aspects[aspect]
        applies_to = spec.get("applies_to", {})
        if not applies_to:
            return list(spec.get("options", []))
        content = aspects.get("Content", {})
        named = {o for o in content.get("options", []) if _stated(content, o, prompt)}
        return [
            o
            for o in spec.get("options", [])
            if not applies_to.get(o) or not named or named & set(applies_to[o])
        ]

    def template_question(self, aspect: str, prompt: str) -> str:
        spec = self.templates.questions["aspects"][aspect]
        templates = spec.get("templates") or ["What about the {aspect} of {subject}?"]
        template = self.rng.choice(templates)
        return template.replace("{subject}", self.subject(prompt)).replace("{aspect}", aspect.lower())

    def question(
        self,
        aspect: str,
        prompt: str,
        captions: Mapping[str, str],
        scores: Mapping[str, float],
        a_score: float,
    ) -> tuple[events.Question, tuple[str, ...]]:
        warnings: tuple[str, ...] = ()
        text = None
        if self.settings.questioner == "llm" and self.questioner is not None:
            text, warnings = self._llm_question(aspect, prompt, captions)
        elif self.settings.questioner == "llm":
            warnings = ("No questioner model is loaded; the question comes from the template.",)
        if text is None:
            text = self.template_question(aspect, prompt)
        question = events.Question(
            aspect=aspect,
            text=text,
            scores=dict(scores),
            ambiguity=a_score,
            options=self.options(aspect, prompt, captions.get(aspect, "")),
        )
        return question, warnings

    def _llm_question(
        self, aspect: str, prompt: str, captions: Mapping[str, str]
    ) -> tuple[str | None, tuple[str, ...]]:
        template = ChatTemplate.from_dict(self.templates.llm["questioner"])
        caption_lines = "\n".join(f"- {a}: {captions.get(a) or '(nothing)'}" for a in ASPECTS)
        messages = template.messages(prompt=prompt, captions=caption_lines, aspect=aspect)
        assert self.questioner is not None  # the caller asks only when there is one
        raw = self.questioner.generate(messages, max_new_tokens=template.max_new_tokens, seed=0)
        warnings = tuple(getattr(self.questioner, "last_warnings", ()) or ())
        candidate = extract_reply_line(raw, template.max_chars)
        grounding = " ".join(
            [aspect, *self.templates.questions.get("aspect_words", {}).get(aspect, []), prompt]
        )
        reason = unusable_reason(candidate, grounding, set(self.templates.keywords.get("filler_words", [])))
        if reason is None and not re.search(r"[?？؟]", candidate):
            reason = "it was not a question"
        if reason is not None:
            note = f"The questioner model's reply could not be used ({reason}); the question comes from the template."
            return None, warnings + (note,)
        return candidate, warnings


def _stated(spec: Mapping[str, Any], option: str, text: str) -> bool:
    """Whether ``text`` states ``option`` of a question's ``spec``: its ``stated_by`` pattern where
    the template gives one (the template's reader decides alone: "short" is not in "short
    sleeves"), else the option as a whole phrase."""
    pattern = spec.get("stated_by", {}).get(option)
    if pattern:
        return re.search(pattern, text.lower()) is not None
    return re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text, re.IGNORECASE) is not None


def make_reflector(settings: EngineSettings, registry: Any, seed: int | None = None) -> Reflector:
    """The Reflector of a session: the registry's ``vlm`` and ``clip`` roles, plus ``llm`` when
    ``settings.questioner == "llm"``; its questions template is the profile's own where the
    profile names one (``ModelProfile.questions``), else the generic questions.json."""
    questioner = registry.get("llm") if settings.questioner == "llm" else None
    templates = questions_templates(getattr(getattr(registry, "profile", None), "questions", "") or "")
    return Reflector(
        registry.get("vlm"),
        registry.get("clip"),
        settings,
        questioner=questioner,
        rng_seed=seed,
        templates=templates,
    )


__all__ = [
    "Captioner",
    "FALLBACK_TAU",
    "ReflectionResult",
    "Reflector",
    "Settled",
    "ambiguity",
    "aspect_scores",
    "choose_aspect",
    "load_captioner",
    "lowest_aspects",
    "make_reflector",
]
