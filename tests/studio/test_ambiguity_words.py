"""The sentence under the ambiguity bars: plain English for every aspect the studio asks about."""

from __future__ import annotations

import pytest

from studio.ui.ambiguity_chart import ASPECT_WORDS, plain_reason

SCORES = {"Content": 0.75, "Style": 0.81, "Background": 0.94, "Size": 0.82, "Color": 0.74, "Perspective": 0.84,
          "Others": 0.87}  # fmt: skip


@pytest.mark.parametrize("aspect", sorted(ASPECT_WORDS))
def test_the_reason_names_the_asked_aspect_with_a_verb_that_agrees(aspect):
    text = plain_reason(SCORES, 0.9, 0.8, aspect)
    words = ASPECT_WORDS[aspect]
    verb = "are" if aspect == "Others" else "is"
    assert text.startswith(f"The {words} {verb} ")
    assert ("the least clear part of" in text) == (aspect == "Color")  # the lowest score
    assert "details is" not in text
