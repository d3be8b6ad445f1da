"""The screenshots' scripted dialogue (``studio.screenshots.run_demo_dialogue``): it clicks an
offered one-click answer, goes on until an answer has come back and a question is pending, and
stops after a bounded number of rounds when the engine never asks. Whether a round asks is the
engine's decision; the scripted engine here decides it round by round."""

from __future__ import annotations

import pytest
from fake_engine import FakeEngine, ScriptedRound

from studio import screenshots

COLOUR = ("Color", "What colour should the dress be?", ("red", "white", "yellow", "black"))
DETAILS = ("Others", "Any pattern or accessory for the dress?", ("with stripes", "with a bag"))
QUIET = ScriptedRound(ambiguity=0.2)


def asks(question: tuple[str, str, tuple[str, ...]]) -> ScriptedRound:
    return ScriptedRound(ambiguity=0.9, ask=question)


@pytest.mark.parametrize(
    "script, said",
    [
        # round 0 asks the colour: answered, two wishes typed, round 3 asks again
        ([asks(COLOUR), QUIET, QUIET, asks(DETAILS)], ["yellow", "long sleeves", "with a belt"]),
        # round 0 asks nothing: a wish, then the colour question answered, then until one is pending
        ([QUIET, asks(COLOUR), QUIET, asks(DETAILS)], ["long sleeves", "yellow", "with a belt"]),
    ],
)
def test_the_dialogue_answers_with_an_offered_option_and_ends_on_a_pending_question(
    studio, new_project, run, script, said
):
    window = studio(new_project(), FakeEngine(script=script))
    model = window.refinement_model
    assert run(screenshots.run_demo_dialogue(model), timeout=30)
    assert [r.user_input for r in model.rounds] == [screenshots.DEMO_PROMPT, *said]
    answered = next(r for r in model.rounds if r.kind == "answer")
    assert answered.user_input == "yellow"  # the first of DEMO_ANSWERS["Color"] the question offers
    assert "yellow" in answered.prompt  # and the answer reached the next round's prompt
    assert model.pending_question is not None and model.pending_question.aspect == "Others"
    assert model.pending_question.options == DETAILS[2]  # shown with its one-click answers


def test_the_dialogue_stops_after_its_bounded_rounds_when_the_engine_never_asks(studio, new_project, run):
    window = studio(new_project(), FakeEngine(script=[QUIET]))
    model = window.refinement_model
    assert run(screenshots.run_demo_dialogue(model), timeout=30)
    assert len(model.rounds) == 1 + screenshots.MAX_EXTRA_ROUNDS
    assert model.pending_question is None  # never forced: the engine did not ask
    assert all(r.kind == "feedback" for r in model.rounds[1:])


def test_every_scripted_answer_and_wish_is_an_atelier_value():
    from tdri_engine.models import ATELIER
    from tdri_engine.templates import questions_templates

    aspects = questions_templates(ATELIER).questions["aspects"]
    for aspect, answers in screenshots.DEMO_ANSWERS.items():
        assert set(answers) <= set(aspects[aspect]["options"]), aspect
    offered = {o for a in aspects.values() for o in a["options"]}
    assert set(screenshots.DEMO_FEEDBACK) <= offered
