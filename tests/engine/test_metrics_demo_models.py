"""The offline-built language stack: tokenizers from shipped text, and the demo model folders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tdri_engine.demo.language import LANGUAGE_ROLES, build_language_models
from tdri_engine.errors import BadInput
from tdri_engine.models import DEMO_KINDS, missing_files
from tdri_engine.tokenizers_offline import make_qwen2_tokenizer, save_bert_tokenizer, save_clip_tokenizer

TEXTS = ["a red silk dress on a beach, top view", "一条红色的连衣裙 👗", "Ärger über das Café", "فستان أحمر"]


def test_clip_tokenizer_from_open_clips_vocab_matches_open_clip(tmp_path: Path) -> None:
    import open_clip
    from transformers import CLIPTokenizer

    hf = CLIPTokenizer.from_pretrained(save_clip_tokenizer(tmp_path / "tokenizer"))
    ours = open_clip.get_tokenizer("ViT-B-32")
    assert len(hf) == 49408
    for text in TEXTS:
        ids = ours([text])[0].tolist()
        assert hf(text)["input_ids"] == ids[: ids.index(49407) + 1]


def test_chat_tokenizer_round_trips_any_text_and_has_chatml() -> None:
    tok = make_qwen2_tokenizer()
    for text in TEXTS + ["emoji 🙂✨ and tabs\tand\nnewlines"]:
        assert tok.decode(tok(text)["input_ids"]) == text
    chat = tok.apply_chat_template(
        [{"role": "user", "content": "a dress"}], tokenize=False, add_generation_prompt=True
    )
    assert chat.endswith("<|im_start|>user\na dress<|im_end|>\n<|im_start|>assistant\n")
    assert tok.convert_tokens_to_ids("<|image_pad|>") not in (None, tok.unk_token_id)
    assert make_qwen2_tokenizer().get_vocab() == tok.get_vocab()  # deterministic


def test_bert_wordpiece_vocab_covers_the_fashion_words(tmp_path: Path) -> None:
    from transformers import BertTokenizer

    tok = BertTokenizer.from_pretrained(save_bert_tokenizer(tmp_path / "bert"))
    pieces = tok.tokenize("A navy silk dress on a beach, red")
    assert "[UNK]" not in pieces and {"red", "silk", "navy", "beach"} <= set(pieces)


def test_language_demo_folders_are_complete_and_marked(language_models: dict[str, Path]) -> None:
    assert set(language_models) == set(LANGUAGE_ROLES)
    for role, folder in language_models.items():
        assert missing_files(folder, DEMO_KINDS[role]) == []  # what models.resolve checks
        assert json.loads((folder / "demo.json").read_text())["demo"] is True
        assert not any(p.suffix in (".bin", ".pt", ".pth") for p in folder.iterdir())
    size = sum(p.stat().st_size for f in language_models.values() for p in f.rglob("*") if p.is_file())
    assert size < 20 * 2**20
    leftovers = [
        p.name for p in next(iter(language_models.values())).parent.iterdir() if p.name.startswith(".")
    ]
    assert leftovers == []


def test_rebuilding_a_role_gives_the_same_weights_and_replaces_the_folder(
    language_models: dict[str, Path], tmp_path: Path
) -> None:
    (tmp_path / "llm").mkdir()
    (tmp_path / "llm" / "stale.txt").write_text("from an older build")
    built = build_language_models(tmp_path, ["llm"])
    assert built == {"llm": tmp_path / "llm"}
    assert not (tmp_path / "llm" / "stale.txt").exists()
    assert (tmp_path / "llm" / "model.safetensors").read_bytes() == (
        language_models["llm"] / "model.safetensors"
    ).read_bytes()
    assert [p.name for p in tmp_path.iterdir()] == ["llm"]


def test_an_unknown_role_is_refused() -> None:
    with pytest.raises(BadInput) as info:
        build_language_models(Path("unused"), ["generator"])
    assert "vlm" in info.value.what_to_do
