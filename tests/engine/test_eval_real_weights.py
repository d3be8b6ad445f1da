"""`tdri eval` on real weights: 2 world targets x 2 turns x single-shot and TDRI on sd15.

Skipped unless the sd15 profile's roles resolve offline here (as tests/engine/test_real_weights.py);
run with ``pytest -m real_weights`` on a workstation that has them. ``TDRI_REAL_PROFILE`` names
another profile.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tdri_engine.evaluation.runner import EvalConfig, EvalRun, read_sessions

pytestmark = [pytest.mark.real_weights, pytest.mark.slow]


def test_eval_smoke_on_real_weights(tmp_path: Path):
    from tests.engine.test_real_weights import _real_profile

    profile = _real_profile()  # skips when the weights are not on this machine
    import torch

    cuda = torch.cuda.is_available()
    config = EvalConfig(
        profile=profile.name,
        targets=2,
        rounds=2,
        conditions=["single", "tdri"],
        out=str(tmp_path / "run"),
        steps=20 if cuda else 8,
        size=512 if cuda else 256,
    )
    result = EvalRun(config, profile=profile).run()
    assert result["ran"] == 4
    sessions = read_sessions(tmp_path / "run")
    for s in sessions:
        for r in s["rounds"]:
            assert 0.0 <= r["t2i_clip"] <= 1.0 and 0.0 <= r["i2i_clip"] <= 1.0
    assert (tmp_path / "run" / "report.md").is_file()
