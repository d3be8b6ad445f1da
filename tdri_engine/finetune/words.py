"""Words the base does not know, learnt as token embeddings beside the LoRA (``--learn-word``).

A design house's new colour or fabric name is a word the base model's text encoder never tied
to a picture. A LoRA on the UNet can learn it, but it changes the UNet for every prompt: on the
Atelier, a LoRA that learnt "teal" also lost some of the backgrounds and colours it drew for
prompts without the word (``docs/finetune/README.md``). Learning the word's own token embedding
(textual inversion, Gal et al. 2022; trained together with a LoRA this is what the community
calls pivotal tuning) changes nothing for a prompt without the word: the text encoder's other
rows stay as they were, so those prompts give the base's images exactly.

``WordEmbeddings`` adds a trainable offset to the embedding rows of the words' tokens (a
forward hook on the text encoder's token embedding, so the rest of the encoder runs as it is);
``save_words`` writes the learnt rows (base row + offset) to ``learned_words.safetensors`` in
the LoRA folder, keyed by word, with the token ids in ``meta.json``; ``apply_words`` puts them
into a pipeline's text encoder and returns what it replaced, so ``restore_words`` gives the base
back. Files are read with safetensors only, and checked against the tokenizer before a row is
written. SD-1.x bases (one text encoder); SDXL is refused with a message.

A word the tokenizer splits into several tokens learns every one of them; a token it shares
with other words changes those words too (``meta.json``'s ``learned_words`` lists each word's
token ids); a word of one token, or an invented one, keeps the guarantee.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import AdapterError, BadInput

WORDS_FILE = "learned_words.safetensors"


def word_token_ids(tokenizer: Any, word: str) -> list[int]:
    """The token ids the tokenizer gives ``word`` (without start and end tokens)."""
    return [int(i) for i in tokenizer(word, add_special_tokens=False).input_ids]


def check_words_supported(pipe: Any, words: tuple[str, ...]) -> None:
    if words and getattr(pipe, "text_encoder_2", None) is not None:
        raise BadInput(
            "--learn-word is for SD-1.x bases; this base is SDXL (two text encoders).",
            "Leave --learn-word out: the LoRA alone learns the word, with the trigger word in the captions.",
        )


class WordEmbeddings:
    """A trainable offset (zero at start) on the token-embedding rows of ``words``."""

    def __init__(self, text_encoder: Any, tokenizer: Any, words: tuple[str, ...]):
        import torch

        self.words = tuple(words)
        self.token_ids = {w: word_token_ids(tokenizer, w) for w in self.words}
        empty = [w for w, ids in self.token_ids.items() if not ids]
        if empty:
            raise BadInput(
                f"The tokenizer gives no tokens for {', '.join(map(repr, empty))}.", "Give a word."
            )
        ids = sorted({i for ids in self.token_ids.values() for i in ids})
        self.embedding = text_encoder.get_input_embeddings()
        self.ids = torch.tensor(ids, dtype=torch.long)
        self.delta = torch.nn.Parameter(torch.zeros(len(ids), self.embedding.weight.shape[1]))
        self._hook = self.embedding.register_forward_hook(self._add)

    def _add(self, module: Any, args: tuple[Any, ...], output: Any) -> Any:
        input_ids = args[0]
        match = (input_ids[..., None] == self.ids.to(input_ids.device)).to(output.dtype)
        return output + match @ self.delta.to(output.device, output.dtype)

    def rows(self) -> dict[str, Any]:
        """Per word, its learnt rows (base row + offset), in token order."""
        import torch

        with torch.no_grad():
            base = self.embedding.weight.detach().float().cpu()
            delta = self.delta.detach().float().cpu()
            where = {int(i): k for k, i in enumerate(self.ids.tolist())}
            return {
                w: torch.stack([base[i] + delta[where[i]] for i in ids]).contiguous()
                for w, ids in self.token_ids.items()
            }

    def remove(self) -> None:
        self._hook.remove()


def save_words(folder: Path, words: WordEmbeddings) -> dict[str, list[int]]:
    """``learned_words.safetensors`` in ``folder``; returns the token ids per word (for meta.json)."""
    from safetensors.torch import save_file

    save_file(words.rows(), str(Path(folder) / WORDS_FILE), metadata={"format": "tdri-learned-words"})
    return dict(words.token_ids)


def load_words(folder: Path, width: int | None = None) -> dict[str, Any]:
    """The learnt rows of ``folder`` ({} when it has none), read with safetensors only: each a
    2-D tensor of finite values, ``width`` wide when given. Raises AdapterError naming what is
    wrong."""
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(folder) / WORDS_FILE
    if not path.is_file():
        return {}
    try:
        rows = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise AdapterError(f"{path.name} in {folder} is not a readable safetensors file ({exc}).") from exc
    for word, tensor in rows.items():
        if tensor.dim() != 2 or (width is not None and tensor.shape[1] != width):
            raise AdapterError(
                f"The learnt word {word!r} in {path} has shape {tuple(tensor.shape)}, not "
                f"(tokens, {width or 'width'}).",
                "Fine-tune it again on this base model.",
            )
        if not torch.isfinite(tensor).all():
            raise AdapterError(f"The learnt word {word!r} in {path} holds NaN or infinite values.")
    return rows


def apply_words(pipe: Any, folder: Path) -> dict[int, Any]:
    """Write the folder's learnt rows into the pipeline's text encoder (nothing when the folder
    has none); returns the rows they replaced, for ``restore_words``. Raises AdapterError when
    the file does not fit this tokenizer or text encoder; nothing is written then."""
    import torch

    table = pipe.text_encoder.get_input_embeddings().weight
    planned: dict[int, Any] = {}
    for word, tensor in load_words(folder, table.shape[1]).items():
        ids = word_token_ids(pipe.tokenizer, word)
        if tensor.shape[0] != len(ids):
            raise AdapterError(
                f"The learnt word {word!r} in {folder} has {tensor.shape[0]} token rows; this "
                f"tokenizer gives it {len(ids)}.",
                "Fine-tune it again on this base model.",
            )
        for i, row in zip(ids, tensor, strict=True):
            planned[i] = row
    replaced = {}
    with torch.no_grad():
        for i, row in planned.items():
            replaced[i] = table[i].detach().clone()
            table[i] = row.to(table.device, table.dtype)
    return replaced


def restore_words(pipe: Any, replaced: dict[int, Any]) -> None:
    import torch

    if not replaced:
        return
    weight = pipe.text_encoder.get_input_embeddings().weight
    with torch.no_grad():
        for i, row in replaced.items():
            weight[i] = row
