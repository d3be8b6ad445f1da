"""Attend-and-Excite (Chefer et al., 2023) on diffusers attention processors.

The diffusers Attend-and-Excite pipeline is deprecated and frozen, and it is a whole pipeline;
this is a step callback that any SD-1.x or SDXL pipeline (text-to-image, img2img, ControlNet)
accepts as ``callback_on_step_end``. The reference (the authors' code, kept verbatim in
diffusers' ``StableDiffusionAttendAndExcitePipeline``) is the specification; how it works:

1. ``StoringAttnProcessor`` replaces the processors of the UNet's cross-attention layers. While
   the store is capturing, it computes the attention probabilities explicitly and keeps them for
   the layers at the chosen resolution (16x16 for SD-1.x at 512 px, 32x32 for SDXL at 1024 px:
   the resolution nearest a quarter of the latent's, the reference's ``ceil(width / 32)``);
   otherwise it calls the original processor (SDPA), so generation is as fast as without it.
2. After each denoising step the callback looks at the latents the next step will denoise. It
   runs the pipeline's conditional forward on them (ControlNet residuals included when the
   pipeline has a ControlNet), averages the stored maps over layers and heads, and for each
   subject token takes the maximum of its softmaxed (tokens ``1:-1``, x100), Gaussian-smoothed
   (the reference's 3x3 kernel, sigma 0.5 as they write it, reflect padding) map.
   ``L_AE = max_s (1 - max attention of s)``.
3. The latents move against the gradient of ``L_AE`` (step ``scale_factor * sqrt(scale)``,
   scale falling linearly from 1 to 0.5 over the schedule) during the first half of the
   schedule; at 0 %, 20 % and 40 % of it (the reference's steps 0/10/20 of 50) they are refined
   until every subject reaches the target attention (0.05, 0.5, 0.8) or 20 refinements pass.
   Steps count on the full schedule, also in an edit (see ``AttendExcite``).

Difference from the reference: the callback runs after a step, so the very first denoising
step is not excited (its 0.05 target is demanded at the second step instead). The reference's
step indices (25, and 0/10/20) are for 50 steps; here they are the same fractions of any
schedule.

Subject tokens come from ``find_subject_tokens``: subject nouns are guessed from the prompt's
words (``subject_nouns``: no NLTK or spaCy model can be downloaded here, so a heuristic that
suits image prompts) and located with the pipeline's own tokenizer's character offsets, each
index checked against the end-of-text position.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

# --------------------------------------------------------------------------------------------
# Subject nouns
# --------------------------------------------------------------------------------------------

# Words that open a noun phrase: what follows them is a noun phrase, so a word that could be a
# verb or a noun ("float", "watch", "drink") is a noun here ("on a float", "the watch").
_DETERMINERS = frozenset(
    """a an the this these those some any each every no another either neither both
    my our your his her its their one two three four five six seven eight nine ten eleven twelve
    dozen hundred thousand several many few much more most less least all half pair couple
    's ’s""".split()
)

_PREPOSITIONS = frozenset(
    """of in on at by for with without from into onto over under above below behind beside besides
    between near through across along around against among amongst toward towards upon within off
    out up down via inside outside beneath underneath beyond past atop amid amidst during after
    before than as like unlike throughout next""".split()
)

# Nouns that with "of" make a preposition ("in front of", "on top of", "at the edge of").
_LOCATIVES = frozenset("front top middle center centre edge side bottom corner back rest".split())

# Neither open nor belong to a noun phrase. "that/which/who" are relative pronouns here (in an
# image prompt "a cat that sleeps" is far more common than "that cat").
_OTHER_FUNCTION_WORDS = frozenset(
    """to and or but nor so yet plus versus vs while whereas & +
    i me we us you he him she they them it who whom whose which what that there here where when
    how why not also just only even then very really quite too
    is are was were be been being am has have had having do does did will would can could should
    may might must shall get gets got getting
    please make give show create generate imagine draw paint depict render""".split()
)

# Verbs of image prompts (base forms; their -s, -ing and -ed forms are derived below). Several
# are nouns too ("a float", "a drink"); context decides, see ``subject_nouns``.
_VERBS = """float fly swim run sit stand lie lay walk jump dance play hold wear eat drink read ride
    sleep look stare gaze smile laugh cry sing fight chase climb hang rest lean grow glow shine fall
    rise burn melt pour drift hover perch graze bloom sparkle reflect surround watch hug kiss carry
    push pull throw catch cook sail drive crawl roll spin twirl wave kneel crouch squat bend stretch
    pose peek hide emerge soar glide dive splash wade bathe relax lounge nap doze wander roam stroll
    hike skate ski surf bark meow roar howl chirp buzz shimmer glisten glitter flicker blaze flow
    sway bounce flutter tower loom sprawl curl wrap scatter spill overflow dangle sprout wilt fade
    hunt stalk pounce prowl feed nibble sniff lick chew bite grip grab cuddle embrace battle race
    march gather huddle cluster sip paddle row pedal hop skip run smoke steam drip rain snow blow
    fill cover frame line border decorate adorn dot litter crowd gleam beam crash break lap swirl
    twist cling leap stride peer blink yawn purr smile read""".split()

_IRREGULAR_VERB_FORMS = frozenset(
    """flew flown swam swum ran sat stood lay lain laid worn wore ate eaten drank drunk rode ridden
    slept sang sung fought caught threw thrown held hung fell fallen rose risen grew grown shone
    drove driven knelt bent hid hidden dove bit bitten spun wept went gone came seen saw took taken
    made found kept left brought built sent""".split()
)

# Words ending in -ing or -ed that are nouns (or noun modifiers), not participles.
_ING_NOUNS = frozenset(
    """wedding evening morning building painting drawing clothing ceiling pudding stocking stockings
    bedding frosting icing railing awning duckling gosling sapling earring earrings herring
    dumpling sibling seedling lining stuffing filling topping dressing carving etching engraving
    landing crossing opening clearing setting string spring thing sling swing lightning ring king
    wing viking darling shilling lighting""".split()
)


def _inflections(base: str) -> set[str]:
    """base, -s, -ing and -ed forms of a regular English verb (spelling rules, not a lexicon)."""
    vowels = "aeiou"
    if base.endswith(("s", "sh", "ch", "x", "z", "o")):
        third = base + "es"
    elif base.endswith("y") and base[-2] not in vowels:
        third = base[:-1] + "ies"
    else:
        third = base + "s"
    if base.endswith("ie"):
        stem = base[:-2] + "y"
    elif base.endswith("e") and not base.endswith(("ee", "ye", "oe")):
        stem = base[:-1]
    elif (
        len(base) <= 4
        and base[-1] not in vowels + "wxy"
        and base[-2] in vowels
        and (len(base) < 3 or base[-3] not in vowels)
    ):
        stem = base + base[-1]  # run -> running, sit -> sitting, nap -> napped
    else:
        stem = base
    ing = (base[:-2] + "ying") if base.endswith("ie") else stem + "ing"
    if base.endswith("e"):
        past = base + "d"
    elif base.endswith("y") and base[-2] not in vowels:
        past = base[:-1] + "ied"
    else:
        past = stem + "ed"
    return {base, third, ing, past}


_VERB_FORMS = frozenset(form for base in _VERBS for form in _inflections(base)) | _IRREGULAR_VERB_FORMS

# Verbs whose -s form is also a common plural noun of image prompts ("waves", "drinks").
_NOUNISH_S_FORMS = frozenset(
    """waves drinks rides plays dances races kisses hugs watches covers frames borders beams towers
    smokes steams rains snows drips flows rolls spins falls rises marches clusters crowds dots rows
    pedals paddles hops skips bites naps hikes lounges strolls battles feeds catches grips gathers
    spills sprouts curls wraps lines blows fills floats rests swings stretches poses dives splashes
    glows blazes glitters sparkles blooms perches hangs""".split()
)

# Words that modify a noun; a noun phrase that ends in one has no head noun ("a dress, red").
_ADJECTIVES = frozenset(
    """red orange yellow green blue purple violet pink brown black white gray grey golden gold silver
    beige ivory cream navy teal turquoise maroon burgundy olive khaki tan crimson scarlet emerald
    pastel neon dark light bright pale vivid muted colorful colourful monochrome transparent sheer
    big small large tiny huge little long short tall wide narrow thin thick slim loose tight fitted
    oversized cropped high low deep shallow heavy round square flat giant mini medium
    new old young modern vintage retro classic elegant casual formal simple plain fancy cute pretty
    beautiful handsome ugly stylish chic trendy luxurious luxury cozy cosy soft hard smooth rough shiny
    matte glossy floral striped checked plaid dotted polka patterned embroidered knitted knit woven
    silk cotton wool woolen woollen leather denim linen satin velvet lace chiffon cashmere suede
    wooden metal metallic plastic
    realistic photorealistic detailed highly ultra hd uhd hdr 4k 8k cinematic dramatic studio
    professional sunny rainy snowy cloudy foggy misty stormy winter summer spring autumn fall
    happy sad angry calm serene lonely quiet busy empty full open closed
    sleeveless strapless backless hooded zip zipped buttoned double single
    lovely friendly curly silly early daily elderly chilly hilly woolly wooly oily jolly bubbly
    cuddly frilly sparkly wrinkly prickly burly costly deadly lively stately timely holy""".split()
)

# Words ending in -ly that are nouns; other -ly words are adverbs ("gently") or the adjectives above.
_LY_NOUNS = frozenset(
    """fly butterfly dragonfly firefly housefly lily family jelly belly holly bully ally rally italy
    assembly anomaly monopoly""".split()
)

# Nouns that name the picture rather than a subject in it.
_STYLE_WORDS = frozenset(
    """photo photograph photography picture image illustration painting drawing sketch render
    rendering art artwork style shot closeup close-up view portrait scene background foreground
    lighting light quality resolution detail details composition wallpaper poster design concept
    masterpiece trending artstation octane unreal engine bokeh dof 3d 2d anime cartoon""".split()
)

_IRREGULAR_PLURALS = frozenset(
    "people men women children mice geese feet teeth sheep deer fish cattle police oxen".split()
)

# letters (with inner hyphens or apostrophes: "t-shirt", "don't", but "'s" on its own), digits,
# or a run of anything else that is not a space (punctuation, emoji, symbols).
_ITEM = re.compile(r"[^\W\d_]+(?:-[^\W\d_]+|['’](?![sS]\b)[^\W\d_]+)*|['’][sS]\b|\d+|(?:(?![^\W\d_]|\d)\S)+")


@dataclass(frozen=True)
class Word:
    """One item of a prompt: a word, a number or a run of other marks, with its span."""

    text: str
    start: int
    end: int

    @property
    def kind(self) -> str:
        c = self.text[0]
        if c.isdigit():
            return "number"
        return "word" if c.isalpha() or self.text.lower() in ("'s", "’s") else "mark"


def prompt_words(prompt: str) -> list[Word]:
    """The prompt cut into words, numbers and marks (a compound like "t-shirt" is one word)."""
    return [Word(m.group(), m.start(), m.end()) for m in _ITEM.finditer(prompt)]


def _is_latin(word: str) -> bool:
    return all(not c.isalpha() or (c.isascii() or "LATIN" in unicodedata.name(c, "")) for c in word)


def _plural_looking(word: str) -> bool:
    return word in _IRREGULAR_PLURALS or (
        word.endswith("s") and not word.endswith(("ss", "us", "is", "'s", "’s")) and len(word) > 3
    )


def _verb_form(word: str) -> bool:
    """Only a verb (participle, past, irregular) whatever comes before it."""
    if word in _ING_NOUNS or word in _ADJECTIVES:
        return False
    if word in _IRREGULAR_VERB_FORMS:
        return True
    if word.endswith("ing") and len(word) >= 5:
        return True
    return word.endswith("ed") and len(word) >= 6 and not word.endswith("eed")


def _ends_noun_phrase(word: str, previous: str, first_in_phrase: bool, opener: str, plural: bool) -> bool:
    """Whether ``word``, after ``previous`` in a run of content words, is the clause's verb.

    English agreement decides the words that are both nouns and verbs. After a plural
    ("flowers float", "birds fly") or a coordinated subject ("a cat and a dog play") a base
    form is a verb; after a singular it continues a compound noun ("a mountain stream", "a book
    cover"). An -s form after a singular is a verb ("an old man reads"), except for the verbs
    whose -s form is a common plural noun ("ocean waves", "cold drinks", "book covers"): those
    are verbs only right after "a/the" + one noun ("a girl waves").
    """
    if _verb_form(word):
        return True
    if word not in _VERB_FORMS:
        return False
    plural = plural or _plural_looking(previous)
    if word.endswith("s") and not word.endswith("ss"):  # an -s form
        if plural:
            return False
        return word not in _NOUNISH_S_FORMS or (first_in_phrase and opener == "det")
    return plural


def _is_adverb(word: str) -> bool:
    return word.endswith("ly") and len(word) > 3 and word not in _LY_NOUNS and word not in _ADJECTIVES


def subject_nouns(prompt: str) -> list[Word]:
    """The subject nouns of ``prompt``, each distinct word once, in prompt order.

    No tagger model can be downloaded here, so nouns come from a heuristic that suits image
    prompts (English). The prompt is cut into runs of content words at function words,
    punctuation, adverbs and words of other scripts; a run opened by a determiner or a
    preposition is a noun phrase, and English noun phrases end in their head noun. Inside a
    run, a word that can only be a verb (a participle, a past form) or a verb that agrees with
    the words before it (see ``_ends_noun_phrase``) ends the noun phrase: "flowers float on
    the tea" gives flowers, tea. A run of one verb-or-noun word is a noun only when a
    determiner or a preposition opened it ("on a float"). The head is the last word that is not
    an adjective or a style word ("a photo of a cat" gives cat, "a dress embroidered with
    roses" dress, roses). A possessive ends a noun phrase and opens the next ("a girl's cat":
    girl, cat). After "by" without a determiner and after "style of" comes a name, not a
    subject. Marks, numbers, emoji and words in other scripts are never subjects: CLIP's
    English vocabulary cuts those into byte pieces that name nothing it can draw.
    """
    items = prompt_words(prompt)
    nouns: list[Word] = []
    run: list[Word] = []
    state: dict[str, Any] = {"opener": "start", "plural": False, "name": False, "last": "", "head": None}

    def close() -> None:
        if not run:
            return
        words = [w.text.lower() for w in run]
        start, opener = 0, str(state["opener"])
        for k in range(1, len(words) + 1):
            if k == len(words) or _ends_noun_phrase(
                words[k], words[k - 1], k - start == 1, opener, bool(state["plural"]) and start == 0
            ):
                head = _head_of(words, list(range(start, k)), opener)
                if head >= 0 and not state["name"]:
                    nouns.append(run[head])
                    state["head"] = run[head]
                start, opener = k + 1, "verb"
        state.update(last=words[-1], plural=False)
        run.clear()

    for k, item in enumerate(items):
        w = item.text.lower()
        function = w in _DETERMINERS or w in _PREPOSITIONS or w in _OTHER_FUNCTION_WORDS
        unit = k > 0 and items[k - 1].kind == "number" and items[k - 1].end == item.start  # "35mm"
        if item.kind == "word" and _is_latin(w) and not function and not _is_adverb(w) and not unit:
            run.append(item)
            continue
        close()
        if w == "of" and nouns and nouns[-1] is state["head"] and nouns[-1].text.lower() in _LOCATIVES:
            nouns.pop()  # "in front of", "on the edge of": part of a preposition
        plural = bool(state["plural"])
        after_style = state["last"] in ("style", "styles")
        state.update(opener="other", name=False, last="")
        if w in _DETERMINERS or item.kind == "number" or unit:  # "'s" too: a possessive opens one
            state.update(opener="det", plural=plural)
        elif w in _PREPOSITIONS:
            state.update(opener="prep", name=w == "by" or (w == "of" and after_style))
        elif w in ("and", "&", "+"):
            state.update(plural=True)
        elif w in ("or", "nor"):
            state.update(plural=plural)
    close()

    seen: set[str] = set()
    out = []
    for word in nouns:  # one index per distinct noun: exciting "dress" twice gains nothing
        if word.text.lower() not in seen:
            seen.add(word.text.lower())
            out.append(word)
    return out


def _head_of(words: list[str], phrase: list[int], opener: str) -> int:
    """Index (in ``words``) of the head noun of a noun phrase, or -1 when it has none."""
    if len(phrase) == 1 and opener not in ("det", "prep"):
        w = words[phrase[0]]
        if w in _VERB_FORMS or _verb_form(w):
            return -1  # "a dog that runs", "cats, sleeping": a verb, not a noun
    for k in reversed(phrase):
        w = words[k]
        if w in _ADJECTIVES:
            continue  # a post-modifier ("a dress, embroidered")
        if w in _STYLE_WORDS:
            return -1  # the picture itself ("a photo", "an oil painting"), not a subject in it
        return k if len(w) > 1 else -1
    return -1


# --------------------------------------------------------------------------------------------
# Subject tokens
# --------------------------------------------------------------------------------------------

CLIP_MAX_LENGTH = 77  # CLIP's sequence: start token, 75 text tokens, end token (or padding)


@dataclass(frozen=True)
class SubjectTokens:
    """Where a prompt's subject nouns sit in the token sequence the text encoder reads.

    ``indices[k]`` is the position (start token at 0) of the last BPE piece of ``words[k]``,
    ``pieces[k]`` all its pieces' positions. Every index is >= 1 and < ``eot``, the position of
    the end-of-text token, which is < ``max_length``. ``notes`` says what was left out and why.
    """

    words: tuple[str, ...] = ()
    indices: tuple[int, ...] = ()
    pieces: tuple[tuple[int, ...], ...] = ()
    eot: int = 1
    max_length: int = CLIP_MAX_LENGTH
    notes: tuple[str, ...] = ()


def _max_length(tokenizer: Any) -> int:
    n = getattr(tokenizer, "model_max_length", None)
    return int(n) if isinstance(n, int) and 3 <= n <= 10_000 else CLIP_MAX_LENGTH


def _token_spans(tokenizer: Any, prompt: str) -> tuple[list[int], list[tuple[int, int]]] | None:
    """The prompt's text token ids (no start/end, not truncated) with their character spans."""
    try:
        enc = tokenizer(
            prompt, add_special_tokens=False, truncation=False, return_offsets_mapping=True, verbose=False
        )
    except (NotImplementedError, ValueError, TypeError):
        return None
    offsets = enc.get("offset_mapping") if hasattr(enc, "get") else None
    if offsets is None or len(offsets) != len(enc["input_ids"]):
        return None
    return list(enc["input_ids"]), [(int(a), int(b)) for a, b in offsets]


def _word_positions(
    tokenizer: Any, prompt: str, words: list[Word]
) -> tuple[list[list[int]], int, int] | None:
    """Per word: the positions of its pieces in the encoder's sequence; the end token's position;
    the number of text tokens. A piece belongs to the word its first character falls in."""
    spans = _token_spans(tokenizer, prompt)
    if spans is None:
        return None
    ids, offsets = spans
    limit = _max_length(tokenizer)
    eot = 1 + min(len(ids), limit - 2)  # the pipelines truncate to start + 75 tokens + end
    out: list[list[int]] = [[] for _ in words]
    w = 0
    for k, (a, b) in enumerate(offsets):
        if b <= a:
            continue  # a piece with no characters of its own (nothing to attribute)
        while w < len(words) and words[w].end <= a:
            w += 1
        if w < len(words) and words[w].start <= a:
            out[w].append(1 + k)
    return out, eot, len(ids)


def find_subject_tokens(tokenizers: Any, prompt: str, subjects: list[str] | None = None) -> SubjectTokens:
    """The subject nouns of ``prompt`` (or the given ``subjects`` words) as token positions.

    ``tokenizers``: one tokenizer or several (SDXL's two: both must put a word at the same
    position, since the UNet reads their hidden states side by side). Positions come from the
    tokenizer's own character offsets, so the word pieces, accents, emoji, scripts and marks
    are counted exactly as the encoder counts them. A word is represented by its last piece:
    CLIP's text encoder is causal, so only the last piece has read the whole word ("xylophonist"
    -> "ist</w>" after "xylo", "phon"; "t-shirt" -> "shirt"). Chefer et al. pick token indices
    by hand; the last piece is the choice that reads the whole word. Words past CLIP's 77 tokens
    are dropped with a note (the pipelines truncate there); nothing here raises on any text.
    """
    if not isinstance(prompt, str):
        return SubjectTokens(notes=("The prompt is not text.",))
    toks = [
        t for t in (tokenizers if isinstance(tokenizers, (list, tuple)) else [tokenizers]) if t is not None
    ]
    items = prompt_words(prompt)
    if subjects is None:
        chosen = subject_nouns(prompt)
    else:
        wanted = {s.lower() for s in subjects}
        chosen, seen = [], set()
        for item in items:
            lw = item.text.lower()
            if lw in wanted and lw not in seen:
                seen.add(lw)
                chosen.append(item)
    if not toks:
        return SubjectTokens(notes=("The pipeline has no tokenizer.",))
    per_tokenizer = []
    for tok in toks:
        got = _word_positions(tok, prompt, chosen)
        if got is None:
            return SubjectTokens(
                notes=(
                    f"Attend-and-Excite needs a tokenizer that reports character offsets; "
                    f"{type(tok).__name__} does not, so no subject was excited.",
                )
            )
        per_tokenizer.append(got)
    eot = min(g[1] for g in per_tokenizer)
    max_length = min(_max_length(t) for t in toks)
    n_tokens = max(g[2] for g in per_tokenizer)
    words, indices, pieces, notes, late = [], [], [], [], []
    for k, word in enumerate(chosen):
        positions = [g[0][k] for g in per_tokenizer]
        if not positions[0]:
            notes.append(f"'{word.text}' has no token of its own and was not excited.")
            continue
        if any(p != positions[0] for p in positions[1:]):
            notes.append(f"The two text encoders cut '{word.text}' differently; it was not excited.")
            continue
        head = positions[0][-1]
        if not 1 <= head < eot:
            late.append(word.text)
            continue
        words.append(word.text)
        indices.append(head)
        pieces.append(tuple(p for p in positions[0] if p < eot))
    if late:
        notes.append(
            f"The prompt is {n_tokens} tokens long and CLIP reads {max_length - 2}; "
            + ", ".join(f"'{w}'" for w in late)
            + (" comes" if len(late) == 1 else " come")
            + " after that and "
            + ("was" if len(late) == 1 else "were")
            + " not excited."
        )
    return SubjectTokens(tuple(words), tuple(indices), tuple(pieces), eot, max_length, tuple(notes))


def subject_token_indices(
    tokenizer: Any, prompt: str, *, max_tokens: int | None = None, tokenizer_2: Any = None
) -> list[int]:
    """Token positions (start token at 0) of the prompt's subject nouns; see ``find_subject_tokens``.

    ``max_tokens`` lowers the length limit further (positions at or past it are dropped).
    """
    found = find_subject_tokens([tokenizer, tokenizer_2], prompt)
    limit = found.eot if max_tokens is None else min(found.eot, int(max_tokens) - 1)
    return [i for i in found.indices if i < limit]


def prompt_token_count(tokenizer: Any, prompt: str) -> int:
    """Number of tokens of the prompt, without start/end tokens."""
    return len(tokenizer(prompt, add_special_tokens=False, truncation=False, verbose=False)["input_ids"])


# --------------------------------------------------------------------------------------------
# The loss
# --------------------------------------------------------------------------------------------


def gaussian_kernel(size: int = 3, sigma: float = 0.5, device: Any = None, dtype: Any = None) -> torch.Tensor:
    """Chefer et al.'s smoothing kernel, (1, 1, size, size), summing to 1.

    Their ``GaussianSmoothing`` (kept verbatim in diffusers' Attend-and-Excite pipeline) builds
    each axis as ``exp(-((x - mean) / (2 * sigma)) ** 2)``: a Gaussian of standard deviation
    ``sigma * sqrt(2)``, not ``sigma``. The maxima the loss reads and the thresholds
    (0.05/0.5/0.8) were tuned with that kernel, so it is reproduced as written.
    """
    import torch

    ax = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    k1 = torch.exp(-((ax / (2 * sigma)) ** 2))
    k2 = torch.outer(k1, k1)
    return (k2 / k2.sum()).view(1, 1, size, size).to(device=device, dtype=dtype or torch.float32)


def max_attention_per_token(
    attn_maps: torch.Tensor,
    token_indices: Iterable[int],
    *,
    last_idx: int | None = None,
    seq_len: int = CLIP_MAX_LENGTH,
    smooth: bool = True,
    kernel_size: int = 3,
    sigma: float = 0.5,
) -> torch.Tensor:
    """For maps (h, w, K): the maximum of each token's map, after the paper's normalisation.

    As in the reference (``_compute_max_attention_per_index``): the text part is scaled by 100
    and softmaxed over tokens, each token's map is smoothed by ``gaussian_kernel`` with reflect
    padding, and its maximum taken. The text part is ``1:-1`` of the 77-token sequence by
    default (the reference's SD-1.x mode: the start token out, the end token and the padding in,
    the last padding position out), or ``1:last_idx`` when ``last_idx`` (the end token's
    position) is given (the reference's SD-2.1 mode, for tokenizers that pad with another
    token). Maps wider than ``seq_len`` (SD-1.x prompts encoded in several 77-token chunks) are
    read in their first chunk, which holds the same tokens as the pipelines' truncated prompt.
    Raises ValueError for an index outside the text part: a position is never read past the end.
    """
    import torch
    import torch.nn.functional as F

    indices = [int(i) for i in token_indices]
    if not indices:
        return attn_maps.new_zeros(0).float()
    width = min(int(seq_len), attn_maps.shape[-1])
    end = width - 1 if last_idx is None else int(last_idx)
    if not 1 < end <= width:
        raise ValueError(f"the text part 1:{end} does not fit maps of {width} tokens")
    for index in indices:
        if not 1 <= index < end:
            raise ValueError(f"token index {index} is outside the prompt's text tokens 1..{end - 1}")
    text = attn_maps[:, :, 1:end].float() * 100
    text = torch.softmax(text, dim=-1)
    kernel = gaussian_kernel(kernel_size, sigma, text.device, text.dtype)
    pad = kernel_size // 2
    # reflect needs more pixels than the padding; a map that small is padded by repetition
    mode = "reflect" if min(text.shape[0], text.shape[1]) > pad else "replicate"
    out = []
    for index in indices:
        image = text[:, :, index - 1]
        if smooth:
            padded = F.pad(image[None, None], (pad, pad, pad, pad), mode=mode)
            image = F.conv2d(padded, kernel)[0, 0]
        out.append(image.max())
    return torch.stack(out)


def attend_excite_loss(
    attn_maps: torch.Tensor,
    token_indices: Iterable[int],
    *,
    last_idx: int | None = None,
    seq_len: int = CLIP_MAX_LENGTH,
) -> torch.Tensor:
    """L_AE = max over subject tokens of (1 - max attention); maps (h, w, K) or (B, h, w, K).

    A batch gives the mean of the per-image losses. Differentiable: usable as the
    Attend-and-Excite term of L = L_DPO + lambda * L_AE. See ``max_attention_per_token``.
    """
    import torch

    indices = list(token_indices)
    if attn_maps.ndim == 4:
        return torch.stack(
            [attend_excite_loss(m, indices, last_idx=last_idx, seq_len=seq_len) for m in attn_maps]
        ).mean()
    if not indices:
        return attn_maps.new_zeros(()).float()
    maxima = max_attention_per_token(attn_maps, indices, last_idx=last_idx, seq_len=seq_len)
    return (1.0 - maxima).clamp(min=0).max()


# --------------------------------------------------------------------------------------------
# Storing cross-attention
# --------------------------------------------------------------------------------------------


class AttentionStore:
    """Holds the cross-attention probabilities of one UNet forward at one resolution."""

    def __init__(self, resolution: tuple[int, int] | None = None) -> None:
        self.resolution = resolution  # (h, w) of the maps kept; None: decided at install
        self.capturing = False
        self.rows: slice | None = None  # which batch rows to keep (e.g. the conditional half)
        self.maps: list[torch.Tensor] = []  # each (B, h*w, K), averaged over heads
        self._originals: dict[str, Any] | None = None
        self._model: Any = None

    # -- capture
    def begin(self, rows: slice | None = None) -> None:
        self.maps = []
        self.rows = rows
        self.capturing = True

    def end(self) -> None:
        self.capturing = False

    def add(self, probs: torch.Tensor, heads: int) -> None:
        b = probs.shape[0] // heads
        probs = probs.reshape(b, heads, probs.shape[1], probs.shape[2]).mean(dim=1)
        if self.rows is not None:
            probs = probs[self.rows]
        self.maps.append(probs)

    def aggregate(self) -> torch.Tensor:
        """(B, h, w, K): the kept maps averaged over layers (float32)."""
        import torch

        if not self.maps:
            raise RuntimeError(
                "no cross-attention was stored at the chosen resolution: the UNet has no "
                f"cross-attention layer at {self.resolution}"
            )
        h, w = self.resolution  # type: ignore[misc]
        stacked = torch.stack([m.float() for m in self.maps]).mean(dim=0)
        return stacked.reshape(stacked.shape[0], h, w, stacked.shape[-1])

    def wants(self, query_len: int) -> bool:
        return (
            self.capturing
            and self.resolution is not None
            and query_len == self.resolution[0] * self.resolution[1]
        )

    # -- processors
    @property
    def installed(self) -> bool:
        return self._originals is not None

    def install(self, model: Any) -> None:
        """Wrap the cross-attention processors of ``model`` (a UNet); others stay as they are."""
        if self._originals is not None:
            return
        originals = dict(model.attn_processors)
        new = {
            name: (StoringAttnProcessor(self, proc) if name.endswith("attn2.processor") else proc)
            for name, proc in originals.items()
        }
        model.set_attn_processor(new)
        self._originals = originals
        self._model = model

    def remove(self, model: Any | None = None) -> None:
        """Put the original processors back."""
        if self._originals is None:
            return
        (model or self._model).set_attn_processor(self._originals)
        self._originals = None
        self._model = None
        self.capturing = False
        self.maps = []


class StoringAttnProcessor:
    """Explicit cross-attention (probabilities kept) while the store captures; else the original."""

    def __init__(self, store: AttentionStore, original: Any) -> None:
        self.store = store
        self.original = original

    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> torch.Tensor:
        query_len = (
            hidden_states.shape[1]
            if hidden_states.ndim == 3
            else hidden_states.shape[2] * hidden_states.shape[3]
        )
        if encoder_hidden_states is None or not self.store.wants(query_len):
            return self.original(
                attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs
            )
        import torch

        # The classic AttnProcessor path, keeping the probabilities.
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            b, c, h, w = hidden_states.shape
            hidden_states = hidden_states.view(b, c, h * w).transpose(1, 2)
        batch_size, key_len, _ = encoder_hidden_states.shape
        attention_mask = attn.prepare_attention_mask(attention_mask, key_len, batch_size)
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        query = attn.to_q(hidden_states)
        if attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
        key = attn.to_k(encoder_hidden_states)
        value = attn.to_v(encoder_hidden_states)
        query = attn.head_to_batch_dim(query)
        key = attn.head_to_batch_dim(key)
        value = attn.head_to_batch_dim(value)
        probs = attn.get_attention_scores(query, key, attention_mask)
        self.store.add(probs, attn.heads)
        hidden_states = torch.bmm(probs, value)
        hidden_states = attn.batch_to_head_dim(hidden_states)
        hidden_states = attn.to_out[0](hidden_states)
        hidden_states = attn.to_out[1](hidden_states)
        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(b, c, h, w)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor


def cross_attention_resolutions(unet: Any, latent_hw: tuple[int, int]) -> list[tuple[int, int]]:
    """Resolutions (h, w) at which the UNet has cross-attention, for latents of ``latent_hw``."""
    h, w = latent_hw
    out = []
    for i, block in enumerate(unet.down_blocks):
        if getattr(block, "has_cross_attention", False):
            f = 2**i
            out.append((math.ceil(h / f), math.ceil(w / f)))
    if getattr(unet.mid_block, "has_cross_attention", False):
        f = 2 ** (len(unet.down_blocks) - 1)
        out.append((math.ceil(h / f), math.ceil(w / f)))
    return sorted(set(out), reverse=True)


def choose_attention_resolution(unet: Any, latent_hw: tuple[int, int]) -> tuple[int, int]:
    """The cross-attention resolution nearest a quarter of the latent's (the paper's 16x16 of 64).

    Ties go to the finer one: more pixels, a sharper map.
    """
    options = cross_attention_resolutions(unet, latent_hw)
    if not options:
        raise ValueError("this UNet has no cross-attention layer")
    target = max(1.0, latent_hw[0] / 4)
    return min(options, key=lambda r: (abs(math.log(r[0] / target)), -r[0]))


# --------------------------------------------------------------------------------------------
# The step callback
# --------------------------------------------------------------------------------------------


class AttendExcite:
    """Attend-and-Excite as a ``callback_on_step_end`` for one prompt.

    Use ``AttendExcite.for_prompt(pipe, prompt, settings)`` (which installs the processors on
    ``pipe``) and pass ``.callback`` to the pipeline (with ``callback_on_step_end_tensor_inputs``
    including ``"latents"``). After the last step the original processors are back;
    ``install``/``remove`` (or ``with``) do it by hand. ``excite=False`` only measures.

    The A&E forward is the pipeline's own conditional forward on the latents the next step
    denoises: the same text embeddings (the eq. (2) blend when the round uses one), SDXL's
    added conditioning, and, when the pipeline runs a ControlNet, that ControlNet's residuals
    computed on those latents (its inputs are read from the pipeline's own ControlNet call, so
    the pose map and the conditioning scale are the round's; the scale is the previous step's,
    equal to the next one's unless ``control_guidance_start/end`` cut in between). Gradients
    flow through the ControlNet too: it is part of the function whose attention is excited.

    Steps are counted on the full noise schedule (``pipe.scheduler.timesteps``), as in the
    reference, where A&E acts on steps 0-24 of 50 (``max_iter_fraction`` 0.5) and refines at
    steps 0, 10, 20 (``refine_at`` fractions 0, 0.2, 0.4), step sizes following
    ``linspace(1, 0.5)`` over the whole schedule. An edit (image-to-image at strength s)
    starts at step ``N - int(s N)`` of that schedule, at a lower noise level; A&E acts on the
    steps of the run that fall in the reference's window, with the reference's step size and
    thresholds for those steps, and not on the later ones, where the paper's rationale (the
    layout forms early; late updates only add artifacts) says it should not act. A threshold
    whose step lies before the run's first excited step is demanded at that step (the
    strictest one). ``acts_on_edit`` tells whether an edit leaves A&E any step at all.

    ``history`` (when ``record=True``) holds, per step, the maximum attention of each subject
    token in the latents the next step denoises, before and after the update.
    """

    def __init__(
        self,
        token_indices: list[int],
        *,
        last_idx: int | None = None,
        seq_len: int = CLIP_MAX_LENGTH,
        max_iter_fraction: float = 0.5,
        refine_at: dict[float, float] | None = None,
        scale_factor: float = 20.0,
        scale_range: tuple[float, float] = (1.0, 0.5),
        max_refinement_steps: int = 20,
        excite: bool = True,
        record: bool = False,
        words: tuple[str, ...] = (),
        notes: tuple[str, ...] = (),
    ) -> None:
        if not token_indices:
            raise ValueError("Attend-and-Excite needs at least one subject token")
        end = last_idx if last_idx is not None else seq_len - 1
        bad = [i for i in token_indices if not 1 <= int(i) < end]
        if bad:
            raise ValueError(f"token indices {bad} are outside the prompt's text tokens 1..{end - 1}")
        self.token_indices = [int(i) for i in token_indices]
        self.last_idx = last_idx
        self.seq_len = seq_len
        self.max_iter_fraction = max_iter_fraction
        # fraction of the run -> attention every subject should reach (paper: {0: .05, 10: .5, 20: .8} of 50)
        self.refine_at = refine_at if refine_at is not None else {0.0: 0.05, 0.2: 0.5, 0.4: 0.8}
        self.scale_factor = scale_factor
        self.scale_range = scale_range
        self.max_refinement_steps = max_refinement_steps
        self.excite = excite
        self.record = record
        self.words = tuple(words)
        self.notes = tuple(notes)
        self.history: list[dict[str, Any]] = []
        self.store = AttentionStore()
        self._pipe: Any = None
        self._inputs: dict[str, Any] = {}
        self._control: dict[str, Any] = {}
        self._hooks: list[Any] = []
        self._own_forward = False
        self._refined: set[int] = set()

    # -- construction
    @classmethod
    def for_prompt(cls, pipe: Any, prompt: str, settings: Any = None, **kwargs: Any) -> AttendExcite | None:
        """An AttendExcite for the subject nouns of ``prompt``, or None when it has none (or the
        settings turn it off). Never raises on the prompt's text.

        The text part the softmax runs over follows the reference: ``1:-1`` when every tokenizer
        pads with its end token (SD-1.x, as in Chefer et al.'s SD-1.4 runs), ``1:EOT`` when one
        pads with another token (SD-2.x's and SDXL's second tokenizer pad with "!"; the
        reference normalises at the end token for SD-2.1 for that reason).
        """
        if settings is not None and not getattr(settings, "use_attend_excite", True):
            return None
        tokenizers = [t for t in (getattr(pipe, "tokenizer", None), getattr(pipe, "tokenizer_2", None)) if t]
        if not tokenizers or not isinstance(prompt, str) or not prompt.strip():
            return None
        found = find_subject_tokens(tokenizers, prompt)
        if not found.indices:
            return None
        pads_with_eot = all(
            getattr(t, "pad_token_id", None) is not None and t.pad_token_id == t.eos_token_id
            for t in tokenizers
        )
        hook = cls(
            list(found.indices),
            last_idx=None if pads_with_eot else found.eot,
            seq_len=found.max_length,
            words=found.words,
            notes=found.notes,
            **kwargs,
        )
        hook.install(pipe)  # now, so that the pipeline's first UNet call is seen
        return hook

    @property
    def tensor_inputs(self) -> list[str]:
        """What the pipeline must pass to the callback."""
        return ["latents"]

    # -- where it acts
    def excited_steps(self, total: int, first: int = 0) -> list[int]:
        """Steps (of a ``total``-step schedule) whose latents this callback moves, for a run
        whose first denoising step is ``first`` (0, or an edit's start): the callback runs after
        a step, so the run's first step itself is never excited."""
        limit = self.max_iter_fraction * total
        return [i for i in range(first + 1, total) if i < limit]

    def acts_on_edit(self, steps: int, strength: float) -> bool:
        """Whether an image-to-image run of ``steps`` at ``strength`` has a step A&E acts on.

        The start step is diffusers' img2img rule: ``steps - min(int(steps * strength), steps)``.
        """
        steps = max(1, int(steps))
        if steps * strength < 1:
            steps = math.ceil(1 / strength)  # as the generator does: at least one step runs
        first = max(steps - min(int(steps * strength), steps), 0)
        return bool(self.excited_steps(steps, first))

    # -- processors
    def install(self, pipe: Any) -> None:
        if self._pipe is pipe and self.store.installed:
            return
        if self._pipe is not None:
            self.remove(self._pipe)
        self.store.install(pipe.unet)
        # The UNet's inputs of the pipeline's own call (text embeddings, SDXL's added
        # conditioning) are read here, so any pipeline works without extra callback inputs;
        # likewise the ControlNet's (pose map, conditioning scale) when the pipeline has one.
        self._hooks = [pipe.unet.register_forward_pre_hook(self._remember_inputs, with_kwargs=True)]
        controlnet = getattr(pipe, "controlnet", None)
        if controlnet is not None:
            self._hooks.append(controlnet.register_forward_pre_hook(self._remember_control, with_kwargs=True))
        self._pipe = pipe

    def remove(self, pipe: Any | None = None) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks = []
        self.store.remove((pipe or self._pipe).unet if (pipe or self._pipe) is not None else None)
        self._pipe = None
        self._inputs = {}
        self._control = {}

    def __enter__(self) -> AttendExcite:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pipe is not None:
            self.remove(self._pipe)

    def _remember_inputs(self, module: Any, args: tuple, kwargs: dict) -> None:
        if self.store.capturing or self._own_forward:  # our own forward
            return
        ehs = kwargs.get("encoder_hidden_states", args[2] if len(args) > 2 else None)
        self._inputs = {
            "encoder_hidden_states": ehs,
            "added_cond_kwargs": kwargs.get("added_cond_kwargs"),
            "timestep_cond": kwargs.get("timestep_cond"),
            "cross_attention_kwargs": kwargs.get("cross_attention_kwargs"),
        }

    def _remember_control(self, module: Any, args: tuple, kwargs: dict) -> None:
        if self._own_forward:
            return
        self._control = {
            k: kwargs[k]
            for k in (
                "encoder_hidden_states",
                "controlnet_cond",
                "conditioning_scale",
                "guess_mode",
                "added_cond_kwargs",
            )
            if k in kwargs
        }

    @staticmethod
    def _cond_rows(n_embeds: int, n_latents: int) -> slice:
        return slice(n_embeds // 2, None) if n_embeds == 2 * n_latents else slice(0, None)

    @classmethod
    def _rows(cls, value: Any, n: int) -> Any:
        """The conditional rows of a tensor (or of the tensors in a list or dict) of a CFG batch."""
        if isinstance(value, dict):
            return {k: cls._rows(v, n) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(cls._rows(v, n) for v in value)
        if hasattr(value, "shape") and getattr(value, "ndim", 0) >= 1:
            return value[cls._cond_rows(value.shape[0], n)]
        return value

    # -- the A&E forward
    def _cond_inputs(self, pipe: Any, n: int) -> dict[str, Any]:
        ehs = self._inputs.get("encoder_hidden_states")
        if ehs is None:
            raise RuntimeError("the pipeline's UNet inputs were not seen; install before generating")
        rows = self._cond_rows(ehs.shape[0], n)
        out: dict[str, Any] = {"encoder_hidden_states": ehs[rows]}
        added = self._inputs.get("added_cond_kwargs")
        if added:
            out["added_cond_kwargs"] = {k: v[rows] for k, v in added.items()}
        tc = self._inputs.get("timestep_cond")
        if tc is not None:
            out["timestep_cond"] = tc[rows] if tc.shape[0] == ehs.shape[0] else tc
        return out

    def _control_inputs(self, n: int) -> dict[str, Any] | None:
        if not self._control or self._control.get("controlnet_cond") is None:
            return None
        return {k: self._rows(v, n) for k, v in self._control.items()}

    def _loss(
        self, pipe: Any, latents: torch.Tensor, t: Any, cond: dict[str, Any]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss summed over the batch, per-image max attention (B, S)) for these latents."""
        import torch

        sample = pipe.scheduler.scale_model_input(latents, t)
        extra: dict[str, Any] = {}
        control = self._control_inputs(latents.shape[0])
        self._own_forward = True
        try:
            if control is not None:
                down, mid = pipe.controlnet(sample, t, return_dict=False, **control)
                extra = {"down_block_additional_residuals": down, "mid_block_additional_residual": mid}
            self.store.begin()
            try:
                pipe.unet(sample, t, return_dict=False, **cond, **extra)
            finally:
                self.store.end()
        finally:
            self._own_forward = False
        maps = self.store.aggregate()  # (B, h, w, K)
        maxima = torch.stack(
            [
                max_attention_per_token(m, self.token_indices, last_idx=self.last_idx, seq_len=self.seq_len)
                for m in maps
            ]
        )
        loss = (1.0 - maxima).clamp(min=0).max(dim=1).values.sum()
        return loss, maxima

    def _step(self, latents: torch.Tensor, loss: torch.Tensor, step_size: float) -> torch.Tensor:
        import torch

        if loss.requires_grad and float(loss.detach()) > 0:
            (grad,) = torch.autograd.grad(loss, [latents])
            latents = (latents - step_size * grad).detach().requires_grad_(True)
        return latents

    @staticmethod
    def _schedule(pipe: Any) -> list[float]:
        return [float(t) for t in pipe.scheduler.timesteps]

    def _next_timestep(self, pipe: Any, timestep: Any) -> Any | None:
        timesteps = list(pipe.scheduler.timesteps)
        t_now = float(timestep)
        for i, t in enumerate(timesteps):
            if float(t) == t_now:
                return timesteps[i + 1] if i + 1 < len(timesteps) else None
        return None

    def _position(self, pipe: Any, t: Any) -> tuple[int, int]:
        """(index of timestep ``t`` in the full schedule, the schedule's number of steps)."""
        order = max(1, int(getattr(pipe.scheduler, "order", 1) or 1))
        schedule = self._schedule(pipe)
        return schedule.index(float(t)) // order, max(1, len(schedule) // order)

    def callback(
        self, pipe: Any, step: int, timestep: Any, callback_kwargs: dict[str, Any]
    ) -> dict[str, Any]:
        """``callback_on_step_end``: excite the latents the next step will denoise."""
        import torch

        if not self.store.installed or self._pipe is not pipe:
            self.install(pipe)  # late: the embeddings come from the callback inputs this time
        latents = callback_kwargs.get("latents")
        next_t = self._next_timestep(pipe, timestep)
        if latents is None or next_t is None:
            self.remove(pipe)  # the run is over: the pipeline is as it was
            return callback_kwargs
        if step == 0:
            self._refined = set()
        if not self._inputs:
            self._inputs = self._fallback_inputs(pipe, callback_kwargs)
        if self.store.resolution is None:
            self.store.resolution = choose_attention_resolution(pipe.unet, tuple(latents.shape[-2:]))
        i, total = self._position(pipe, next_t)  # the step these latents are for, full schedule
        acting = self.excite and i < self.max_iter_fraction * total
        if not acting and not self.record:
            return callback_kwargs  # past the window: no A&E forward (the reference logs one)
        cond = self._cond_inputs(pipe, latents.shape[0])
        hi, lo = self.scale_range
        scale = hi if total <= 1 else hi + (lo - hi) * (i / (total - 1))
        step_size = self.scale_factor * math.sqrt(scale)
        marks = {max(0, int(round(f * total))): v for f, v in self.refine_at.items()}
        due = [m for m in marks if m <= i and m not in self._refined] if acting else []
        entry: dict[str, Any] = {"step": i}
        with torch.enable_grad():
            lat = latents.detach().clone().requires_grad_(True)
            loss, maxima = self._loss(pipe, lat, next_t, cond)
            entry["before"] = maxima.detach().cpu()
            if acting:
                if due:  # iterative refinement (the paper's Algorithm 1, lines 7-12)
                    self._refined.update(due)
                    target = 1.0 - max(marks[m] for m in due)
                    for _ in range(self.max_refinement_steps):
                        if float(loss.detach()) / lat.shape[0] <= target:
                            break
                        lat = self._step(lat, loss, step_size)
                        loss, maxima = self._loss(pipe, lat, next_t, cond)
                lat = self._step(lat, loss, step_size)
                if self.record:
                    _, maxima = self._loss(pipe, lat, next_t, cond)
            entry["after"] = maxima.detach().cpu()
            entry["excited"] = acting
        if self.record:
            self.history.append(entry)
        callback_kwargs["latents"] = lat.detach().to(latents.dtype)
        return callback_kwargs

    def _fallback_inputs(self, pipe: Any, callback_kwargs: dict[str, Any]) -> dict[str, Any]:
        """Installed after the pipeline's first forward: take the embeddings from the callback."""
        pe = callback_kwargs.get("prompt_embeds")
        if pe is None:
            raise RuntimeError(
                "Attend-and-Excite needs 'prompt_embeds' in the callback inputs, or install() before generating"
            )
        added = None
        if "add_text_embeds" in callback_kwargs and "add_time_ids" in callback_kwargs:
            added = {
                "text_embeds": callback_kwargs["add_text_embeds"],
                "time_ids": callback_kwargs["add_time_ids"],
            }
        return {"encoder_hidden_states": pe, "added_cond_kwargs": added}

    # -- measuring
    def subject_attention(self) -> list[float]:
        """Per subject token: its max attention averaged over the recorded steps (after the update)."""
        if not self.history:
            return []
        import torch

        stacked = torch.stack([h["after"].mean(dim=0) for h in self.history])
        return stacked.mean(dim=0).tolist()
