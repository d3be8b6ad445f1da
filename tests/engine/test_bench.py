"""``tdri bench``: the generate benchmark on the demo's tiny architecture, on the CPU.

What must hold for the benchmark's figures to mean anything: both sides measured in the same
run, the JSON carries machine/versions/date/cold/warm/memory, and our Generator and the plain
pipeline give the same image for the same seed on five seeds, while another seed's image would
not pass the check.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


@pytest.fixture(autouse=True)
def _one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models on a busy 2-core machine: threads only contend
    yield
    torch.set_num_threads(before)


def test_bench_generate_tiny_json_both_sides_same_run(tmp_path: Path, capsys) -> None:
    from tdri_engine.cli import main

    out = tmp_path / "bench.json"
    argv = ["bench", "generate", "--arch", "tiny", "--device", "cpu", "--dtype", "fp32"]
    rc = main([*argv, "--steps", "1", "--repeat", "1", "--check-seeds", "5", "--out", str(out)])
    assert rc == 0
    data = json.loads(out.read_text(encoding="utf-8"))
    assert json.loads(capsys.readouterr().out) == data  # printed and written alike

    env = data["environment"]
    for key in ("date", "platform", "python", "cpu_count", "device"):
        assert env[key] not in (None, ""), key
    assert env["versions"]["torch"] and env["versions"]["diffusers"]
    s = data["settings"]
    assert (s["arch"], s["mode"], s["steps"], s["width"], s["height"]) == ("tiny", "controlnet", 1, 64, 64)
    assert s["order"] == ["ours", "plain"]

    # the plain baseline was measured in this run, after ours, with the same number of images
    for side in ("ours", "plain"):
        fig = data[side]
        assert fig["run_id"] == data["run_id"]
        assert data["started"] <= fig["started"] <= data["finished"]
        assert len(fig["all_s"]) == 2 and fig["warm_n"] == 1
        assert fig["cold_s"] > 0 and fig["warm_s"] > 0
        assert fig["memory"]["process_peak_rss_gib"] > 0
        assert fig["memory"]["cuda_peak_gib"] is None  # no CUDA here: not made up
        assert fig["repeat_max_abs_diff"] == 0  # each side is deterministic on the CPU
    assert data["ours"]["started"] <= data["plain"]["started"]
    assert data["ours"]["parameters"] == data["plain"]["parameters"]
    ratio = data["ratio_ours_over_plain"]
    assert ratio["warm"] == pytest.approx(data["ours"]["warm_s"] / data["plain"]["warm_s"], abs=1e-3)

    # Same seed, same image, on each of five seeds (measured: max abs diff 0 of 255, CPU fp32);
    # and the check can fail: ours of one seed against plain of the next differ by far more
    # than the tolerance (measured > 100 levels).
    same = data["same_image"]
    assert same["seeds"] == [0, 1, 2, 3, 4]
    assert max(same["max_abs_diff_per_seed"]) == same["max_abs_diff"] <= same["tolerance"]
    assert same["within_tolerance"] is True
    assert same["other_seed_min_max_abs_diff"] > 10 * same["tolerance"]


def test_round_benchmark_wraps_calls_that_exist() -> None:
    """``tdri bench round`` times stages by wrapping these calls on the instances; a rename
    would silently move their time into 'other'."""
    from tdri_engine.generator import Generator
    from tdri_engine.metrics import ClipScorer
    from tdri_engine.reflector import Captioner
    from tdri_engine.session import RefinementSession

    for cls, attr in [
        (RefinementSession, "_summarize"),
        (RefinementSession, "_reflect"),
        (RefinementSession, "_commit"),
        (Generator, "generate"),
        (Captioner, "caption_many"),
        (ClipScorer, "image_text_with_warnings"),
    ]:
        assert callable(getattr(cls, attr, None)), f"{cls.__name__}.{attr}"


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["bench", "generate", "--arch", "tiny", "--repeat", "0"], "--repeat must be at least 1"),
        (["bench", "generate", "--arch", "tiny", "--check-seeds", "1"], "--check-seeds must be at least 2"),
        (["bench", "round", "--profile", "tiny", "--rounds", "1"], "--rounds must be at least 2"),
    ],
)
def test_bad_benchmark_arguments_exit_1_with_what_to_do_before_building(argv, words, capsys) -> None:
    from tdri_engine.cli import main

    assert main(argv) == 1
    err = capsys.readouterr().err
    assert words in err and "what to do:" in err
