"""Tokenizers built offline, for the demo models and for tests.

No wheel ships a Hugging Face vocabulary, and no machine that builds this project may download
one. Two sources are always at hand:

* open_clip bundles CLIP's byte-level BPE (``bpe_simple_vocab_16e6.txt.gz``). Written out as
  ``vocab.json`` + ``merges.txt``, ``CLIPTokenizer.from_pretrained(folder)`` gives ids identical
  to open_clip's own tokenizer (49408 entries), which is what a Stable Diffusion text encoder
  expects. Note: in transformers 5, ``CLIPTokenizer(vocab_file=..., merges_file=...)`` silently
  builds a two-token tokenizer, so always go through ``from_pretrained(folder)``.
* Text that ships with every Python and with this application (built-in docstrings, the Zen of
  Python, our own keyword lists and templates) is enough to train a small byte-level BPE for
  the chat/VLM demo models and a WordPiece vocabulary for BLIP. Byte-level BPE covers every
  byte, so any language and any emoji round-trips.

Everything here is deterministic: the same Python and package versions give the same files.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

# ChatML, as Qwen2 and Qwen2-VL use it. Images become <|vision_start|><|image_pad|><|vision_end|>,
# which Qwen2VLProcessor then expands to one pad token per merged image patch.
QWEN_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Special tokens of the Qwen2 family, in the order they get ids after the trained vocabulary.
QWEN_SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

BERT_SPECIAL_TOKENS: tuple[str, ...] = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
_RESOURCE_REPEAT = 8


# --------------------------------------------------------------------------------------------
# CLIP's BPE, from open_clip's bundled file
# --------------------------------------------------------------------------------------------


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable character table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs), strict=True))


def clip_bpe_vocab() -> tuple[dict[str, int], list[str]]:
    """CLIP's vocabulary and merges exactly as open_clip's ``SimpleTokenizer`` builds them."""
    import open_clip.tokenizer as oct

    with gzip.open(oct.default_bpe()) as fh:
        lines = fh.read().decode("utf-8").split("\n")
    merges = lines[1 : 49152 - 256 - 2 + 1]  # the slice open_clip uses: 48894 merges
    base = list(_bytes_to_unicode().values())
    vocab_list = base + [v + "</w>" for v in base]
    vocab_list += ["".join(m.split()) for m in merges]
    vocab_list += ["<|startoftext|>", "<|endoftext|>"]
    return {tok: i for i, tok in enumerate(vocab_list)}, merges


def save_clip_tokenizer(dest: Path, *, model_max_length: int = 77) -> Path:
    """Write CLIP's tokenizer files into ``dest`` so ``CLIPTokenizer.from_pretrained(dest)`` works.

    Used for the Stable Diffusion demo's ``tokenizer/`` folder and the tiny HF CLIP scorer.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    vocab, merges = clip_bpe_vocab()
    (dest / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (dest / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": model_max_length,
        "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>",
        "do_lower_case": True,
    }
    (dest / "tokenizer_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    specials = {k: config[k] for k in ("bos_token", "eos_token", "unk_token", "pad_token")}
    (dest / "special_tokens_map.json").write_text(json.dumps(specials, indent=2), encoding="utf-8")
    return dest


# --------------------------------------------------------------------------------------------
# A small corpus every install has
# --------------------------------------------------------------------------------------------


def builtin_corpus(extra: Iterable[str] = ()) -> list[str]:
    """Plain English text that ships with every Python (also a frozen one) plus our resources.

    Built-in types' docstrings live in the interpreter itself (present even under ``-OO``
    in CPython's C types), the Zen of Python in ``this``; the resources add the fashion and
    image vocabulary the demo will meet, so those words get whole tokens.
    """
    import builtins
    import codecs
    import contextlib
    import io

    texts: list[str] = []
    with contextlib.redirect_stdout(io.StringIO()):  # ``import this`` prints the Zen
        import this
    texts.append(codecs.decode(this.s, "rot13"))
    for name in sorted(dir(builtins)):
        obj = getattr(builtins, name)
        if isinstance(obj, type):
            if obj.__doc__:
                texts.append(obj.__doc__)
            for attr in sorted(vars(obj)):
                doc = getattr(vars(obj)[attr], "__doc__", None)
                if isinstance(doc, str):
                    texts.append(doc)
    # the domain vocabulary counts more than the docstrings: repeated, its words get whole tokens
    # (joined with spaces, so byte-level BPE learns the words as they appear inside a sentence)
    texts.extend([" ".join(_resource_texts())] * _RESOURCE_REPEAT)
    texts.extend(extra)
    return texts


def _resource_texts() -> list[str]:
    """Every string in resources/templates/*.json, so prompts and keywords tokenize well."""
    from .paths import resource_path

    out: list[str] = []
    folder = resource_path("templates")
    if not folder.is_dir():
        return out

    def walk(node: Any) -> None:
        if isinstance(node, str):
            out.append(node)
        elif isinstance(node, dict):
            for key in sorted(node):
                out.append(str(key))
                walk(node[key])
        elif isinstance(node, list):
            for item in node:
                walk(item)

    for path in sorted(folder.glob("*.json")):
        walk(json.loads(path.read_text(encoding="utf-8")))
    return out


# --------------------------------------------------------------------------------------------
# Byte-level BPE for the chat / VLM demo models
# --------------------------------------------------------------------------------------------


def train_byte_level_bpe(
    vocab_size: int = 2000, corpus: Iterable[str] | None = None
) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Train a byte-level BPE (GPT-2 style) with ``tokenizers``; returns (vocab, merges as pairs).

    The 256 byte symbols are always in the vocabulary, so nothing is ever unknown.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
        special_tokens=[],
    )
    texts = list(corpus) if corpus is not None else builtin_corpus()
    tok.train_from_iterator(texts, trainer=trainer)
    data = json.loads(tok.to_str())
    vocab: dict[str, int] = data["model"]["vocab"]
    merges_raw = data["model"]["merges"]
    merges: list[tuple[str, str]] = []
    for m in merges_raw:  # "a b" in older tokenizers files, ["a", "b"] in newer ones
        left, right = m.split(" ", 1) if isinstance(m, str) else (m[0], m[1])
        merges.append((left, right))
    return vocab, merges


def make_qwen2_tokenizer(vocab_size: int = 2000, corpus: Iterable[str] | None = None) -> Any:
    """A ``Qwen2Tokenizer`` on a freshly trained small BPE, with Qwen's special tokens and
    ChatML chat template. Token ids of the specials follow the trained vocabulary."""
    from transformers import Qwen2Tokenizer

    vocab, merges = train_byte_level_bpe(vocab_size, corpus)
    vocab = dict(vocab)
    for token in QWEN_SPECIAL_TOKENS:
        vocab.setdefault(token, len(vocab))
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=None,
        eos_token="<|im_end|>",  # a chat model stops at the end of its turn
        pad_token="<|endoftext|>",
        extra_special_tokens=list(QWEN_SPECIAL_TOKENS),
    )
    tokenizer.chat_template = QWEN_CHAT_TEMPLATE
    return tokenizer


# --------------------------------------------------------------------------------------------
# WordPiece for BLIP's BERT text encoder
# --------------------------------------------------------------------------------------------


def train_wordpiece_vocab(vocab_size: int = 1500, corpus: Iterable[str] | None = None) -> list[str]:
    """A lower-cased BERT WordPiece vocabulary (specials first), as lines of ``vocab.txt``."""
    from tokenizers import BertWordPieceTokenizer

    tok = BertWordPieceTokenizer(lowercase=True, strip_accents=None, handle_chinese_chars=True)
    texts = list(corpus) if corpus is not None else builtin_corpus()
    tok.train_from_iterator(
        texts,
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=list(BERT_SPECIAL_TOKENS),
        show_progress=False,
    )
    vocab = tok.get_vocab()
    return [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]


def save_bert_tokenizer(dest: Path, vocab_size: int = 1500, corpus: Iterable[str] | None = None) -> Path:
    """Write ``vocab.txt`` + config so ``BertTokenizer.from_pretrained(dest)`` loads it."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    lines = train_wordpiece_vocab(vocab_size, corpus)
    (dest / "vocab.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    config = {
        "tokenizer_class": "BertTokenizer",
        "do_lower_case": True,
        "model_max_length": 512,
        "unk_token": "[UNK]",
        "sep_token": "[SEP]",
        "pad_token": "[PAD]",
        "cls_token": "[CLS]",
        "mask_token": "[MASK]",
    }
    (dest / "tokenizer_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    return dest
