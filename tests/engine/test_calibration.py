"""tau and the A&E threshold: calibrated per profile on its own models, carried by the profile."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tdri_engine.calibration import rate_above, threshold_for_rate
from tdri_engine.cli import main
from tdri_engine.errors import BadInput
from tdri_engine.models import Thresholds, builtin_profiles, load_profile, profile_from_dict
from tdri_engine.reflector import ambiguity
from tdri_engine.settings import EngineSettings

REPO = Path(__file__).resolve().parents[2]


def test_the_threshold_for_a_rate_sits_between_the_measured_values() -> None:
    a = [0.76, 0.70, 0.74, 0.72]
    assert threshold_for_rate(a, 0.5) == pytest.approx(0.73) and rate_above(a, 0.73) == 0.5
    assert threshold_for_rate(a, 0.25) == pytest.approx(0.75) and rate_above(a, 0.75) == 0.25
    assert rate_above(a, threshold_for_rate(a, 0.0)) == 0.0
    assert rate_above(a, threshold_for_rate(a, 1.0)) == 1.0
    assert rate_above(a, 0.74) == 0.25  # "ask when A > tau": equal does not ask
    tied = [1.0, 1.0, 1.0, 0.5]  # ties cannot be split: the nearest reachable rate
    assert rate_above(tied, threshold_for_rate(tied, 0.67)) == 0.75
    assert rate_above(tied, threshold_for_rate(tied, 0.3)) == 0.0
    with pytest.raises(BadInput):
        threshold_for_rate(a, 1.5)
    with pytest.raises(BadInput):
        threshold_for_rate([], 0.5)


def test_the_demo_profile_ships_the_committed_calibration() -> None:
    committed = json.loads((REPO / "docs" / "calibration" / "demo.json").read_text(encoding="utf-8"))
    demo = builtin_profiles()["demo"].thresholds
    assert demo.calibrated and demo == Thresholds.from_dict(committed["thresholds"])
    # the committed rates are what its thresholds give on its own samples
    a = [s["ambiguity"] for s in committed["samples"]]
    m = [s["misalignment"] for s in committed["samples"]]
    assert len(a) >= 20
    assert rate_above(a, demo.tau) == pytest.approx(demo.question_rate, abs=1e-3)
    assert rate_above(m, demo.ae_threshold) == pytest.approx(demo.ae_rate, abs=1e-3)
    weights = committed["settings"]["aspect_weights"]
    for s in committed["samples"]:
        assert s["ambiguity"] == pytest.approx(ambiguity(s["scores"], weights), abs=1e-5)


def test_real_profiles_say_their_values_are_estimated() -> None:
    for name in ("sd15", "sdxl"):
        t = builtin_profiles()[name].thresholds
        assert not t.calibrated and "estimated, not calibrated on this machine" in t.describe()
        # real CLIP cosines of matching pairs are 0.2-0.35: A sits near 0.65-0.8
        assert 0.6 < t.tau < 0.85 and t.question_rate == 0.5
        assert t.question_rate_at(t.tau - 0.1) > 0.99 and t.question_rate_at(t.tau + 0.1) < 0.01
    assert "asks in about 50% of rounds" in builtin_profiles()["sd15"].thresholds.describe()


def test_a_session_uses_the_profiles_thresholds_unless_the_project_sets_its_own(demo_engine) -> None:
    own = demo_engine.profile.thresholds
    settings, _ = demo_engine.session_settings(EngineSettings())
    assert (settings.tau, settings.ae_threshold) == (own.tau, own.ae_threshold)
    settings, _ = demo_engine.session_settings(EngineSettings(tau=0.5, ae_threshold=0.9))
    assert (settings.tau, settings.ae_threshold) == (0.5, 0.9)


def test_a_profile_file_carries_its_thresholds_and_bad_ones_are_refused() -> None:
    sd15 = load_profile("sd15")
    again = profile_from_dict(json.loads(json.dumps(sd15.to_dict())))
    assert again.thresholds == sd15.thresholds
    assert profile_from_dict({"extends": "sdxl"}).thresholds == builtin_profiles()["sdxl"].thresholds
    mine = dict(sd15.thresholds.to_dict(), tau=0.61, calibrated=True)
    assert profile_from_dict({"extends": "sd15", "thresholds": mine}).thresholds.tau == 0.61
    with pytest.raises(BadInput) as info:
        profile_from_dict({"extends": "sd15", "thresholds": {"tau": "high"}})
    assert "tdri models calibrate" in info.value.what_to_do


def test_calibrate_on_the_demo_models_writes_the_tau_of_the_target_rate(
    demo_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("# garments\na red dress\n\na café with a dog\nflowers float on the tea\n", "utf-8")
    out = tmp_path / "demo.json"
    argv = ["models", "calibrate", "--profile", "demo", "--prompts", str(prompts), "--out", str(out)]
    assert main([*argv, "--target-rate", "0.34", "--ae-target-rate", "0.67"]) == 0
    printed = capsys.readouterr().out
    result = json.loads(out.read_text(encoding="utf-8"))
    samples = result["samples"]
    assert [s["prompt"] for s in samples] == ["a red dress", "a café with a dog", "flowers float on the tea"]
    a = [s["ambiguity"] for s in samples]
    t = result["thresholds"]
    assert rate_above(a, t["tau"]) == pytest.approx(1 / 3) == pytest.approx(t["question_rate"], abs=1e-4)
    m = [s["misalignment"] for s in samples]
    assert rate_above(m, t["ae_threshold"]) == pytest.approx(t["ae_rate"], abs=1e-4)  # the rate reported
    current = load_profile("demo").thresholds.tau
    assert result["current"]["question_rate"] == pytest.approx(rate_above(a, current), abs=1e-4)
    assert f"calibrated tau {t['tau']:.4f} -> question rate 33%" in printed
    assert f"current tau {current:.4f}" in printed
