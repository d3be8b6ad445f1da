"""`tdri eval`'s simulated user, conditions, augmenter, FR-off questions and process sharding."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tdri_engine.api import Answer, Skip
from tdri_engine.errors import BadInput
from tdri_engine.evaluation.conditions import RuleAugmenter, parse_conditions
from tdri_engine.evaluation.runner import Processes, processes, shard
from tdri_engine.evaluation.users import SimulatedUser, file_targets, first_noun_phrase, world_targets
from tdri_engine.events import Question
from tdri_engine.records import Choice
from tdri_engine.settings import ASPECTS, EngineSettings


@pytest.mark.parametrize(
    ("prompt", "start"),
    [
        ("A red silk dress with a belt on a beach", "A red silk dress"),
        ("cherry blossom tea on a wooden table, top view", "cherry blossom tea"),
        ("a parrot", "a parrot"),
        ("an old stone temple in the mountains at sunset", "an old stone temple"),
        ("very long bright red flowing evening gown, studio", "red flowing evening gown"),  # last 4 words
    ],
)
def test_the_start_prompt_is_the_first_noun_phrase(prompt, start):
    assert first_noun_phrase(prompt) == start


def test_the_user_answers_truthfully_and_picks_the_image_closer_to_the_target():
    target = world_targets(1, seed=1)[0]

    def sim(a, b):  # a similarity by hand (negative mean absolute pixel difference)
        return -float(np.abs(np.asarray(a, float) - np.asarray(b, float)).mean())

    user = SimulatedUser(target, sim)
    q = Question(aspect="Color", text="Which colour?", scores={}, ambiguity=1.0)
    assert user.reply(q) == Answer("Color", target.answers["Color"])
    assert user.reply(None) == Skip()
    other = Image.new("RGB", target.image.size, (0, 0, 0))
    assert user.choose(other, target.image)[0] is Choice.RIGHT
    assert user.choose(target.image, other)[0] is Choice.LEFT
    assert user.choose(other, other.copy())[0] is Choice.TIE


def test_outside_the_world_the_user_answers_with_the_vlms_caption_of_the_target(tmp_path: Path):
    for i, colour in enumerate(((200, 20, 20), (20, 20, 200))):
        Image.new("RGB", (80, 64), colour).save(tmp_path / f"t{i}.png")
    lines = [
        {"image": "t0.png", "prompt": "a red square on a white table"},
        {"image": "t1.png", "prompt": "blue"},
    ]
    (tmp_path / "targets.jsonl").write_text("\n".join(json.dumps(x) for x in lines), encoding="utf-8")
    targets = file_targets(tmp_path, size=(64, 64))
    assert [t.start_prompt for t in targets] == ["a red square", "blue"]
    assert targets[0].image.size == (64, 64) and not targets[0].in_world
    asked = []

    def describe(image, aspect):
        asked.append(aspect)
        return "deep red" if image.getpixel((0, 0))[0] > 100 else "blue"

    user = SimulatedUser(targets[0], lambda a, b: 0.0, describe)
    q = Question(aspect="Color", text="?", scores={}, ambiguity=1.0)
    assert user.reply(q) == Answer("Color", "deep red")
    assert user.reply(q) == Answer("Color", "deep red") and asked == ["Color"]  # asked once, kept
    (tmp_path / "bad.jsonl").write_text('{"image": "t0.png"}\n', encoding="utf-8")
    with pytest.raises(BadInput, match="needs an 'image' path and a 'prompt'"):
        file_targets(tmp_path / "bad.jsonl")
    with pytest.raises(BadInput, match="no targets"):
        file_targets(tmp_path / "missing")


def test_rule_augmentation_adds_three_attributes_the_parser_reads_back():
    from tdri_engine.prompt_parser import PromptParser
    from tdri_engine.templates import default_templates

    parser = PromptParser(default_templates().keywords)
    aug = RuleAugmenter()
    for seed in range(10):
        text, notes = aug.augment("a dress", seed)
        comps = parser.components(text)
        said = [a for a in ASPECTS if comps.get(a) and a != "Content"]
        assert "dress" in text and not notes
        assert len(said) >= 2, (text, comps)  # colour/size/pattern/material may share a slot
    assert aug.augment("a dress", 3) == aug.augment("a dress", 3)
    assert len({aug.augment("a dress", s)[0] for s in range(10)}) == 10


def test_conditions_parse_and_refuse_unknown_names():
    names = [c.name for c in parse_conditions("single, tdri,vlm:sd15,tdri")]
    assert names == ["single", "tdri", "vlm:sd15"]
    assert parse_conditions("random")[0].settings == {"question_aspect": "random"}
    assert "tdri-ao" in [c.name for c in parse_conditions("all")]
    with pytest.raises(BadInput, match="Unknown condition"):
        parse_conditions("tdri,fancy")
    with pytest.raises(BadInput, match="No condition"):
        parse_conditions(" , ")


class _Captioner:
    def caption_many(self, image, instructions, cancel=None):
        return ["something"] * len(instructions)


class _Clip:
    """Fixed per-aspect scores: Content lowest ... Others highest."""

    def image_text_with_warnings(self, image, texts):
        return [0.1 + 0.1 * i for i in range(len(texts))], ()


def test_fr_off_asks_about_any_aspect_fr_only_about_the_three_lowest():
    from tdri_engine.reflector import Reflector

    image = Image.new("RGB", (64, 64))
    asked = {"lowest3": set(), "random": set()}
    for mode in asked:
        settings = EngineSettings(tau=0.0, question_aspect=mode)
        for seed in range(40):
            result = Reflector(_Captioner(), _Clip(), settings, rng_seed=seed).reflect(image, "a dress")
            asked[mode].add(result.question.aspect)
    assert asked["lowest3"] == set(ASPECTS[:3])
    assert asked["random"] == set(ASPECTS)  # 40 draws over 7 aspects: each misses with p < 0.002
    with pytest.raises(BadInput, match="question_aspect"):
        EngineSettings(question_aspect="highest")


def test_processes_shard_targets_so_each_runs_exactly_once(monkeypatch):
    items = list(range(11))
    for count in (1, 2, 3, 4):
        parts = [shard(items, k, count) for k in range(count)]
        assert sorted(x for p in parts for x in p) == items
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert processes() == Processes()
