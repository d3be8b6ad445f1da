"""The local chat model of the ``llm`` role, and how its replies are read.

:class:`LocalLLM` wraps any transformers causal LM (greedy, bounded, deterministic);
:func:`load_llm` is the role's loader (``models._LOADERS["causal-lm"]``). The LLM summarizer,
the Reflector's questioner and the evaluation's prompt augmenter take one line of its reply with
:func:`extract_reply_line` and refuse a reply :func:`unusable_reason` finds unusable (a tiny
random demo model writes nothing else), falling back to their rule-based path.
"""

from __future__ import annotations

import re
from collections.abc import Set as AbstractSet
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import BadInput
from .prompt_parser import _WORD, _no_space_script

if TYPE_CHECKING:
    import torch

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
