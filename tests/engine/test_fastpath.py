"""The generator's fast path (tdri_engine.fastpath) and ``tdri bench gpu``, on the CPU.

Speed is the GPU's business; here: every lever keeps the picture (ours with the levers against
plain diffusers, same seeds, within the benchmark's tolerance of 2 levels of 255), a lever that
would hide an adapter is refused for the product, and the one-command benchmark writes its JSON
row by row.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tdri_engine import fastpath
from tdri_engine.errors import BadInput

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


@pytest.fixture(autouse=True)
def _one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_levers_are_named_and_the_benchmark_only_one_is_refused_for_a_profile():
    assert fastpath.parse("sdpa, channels_last").levers == ("sdpa", "channels_last")
    assert fastpath.parse(None).levers == () and fastpath.parse("none").levers == ()
    assert "fuse_qkv" in fastpath.parse("all").levers
    assert "fuse_qkv" not in fastpath.parse("all", product=True).levers
    assert fastpath.from_options({}).any is False  # a profile without the option: as before
    with pytest.raises(BadInput, match="Unknown fast-path lever: warp"):
        fastpath.parse("sdpa,warp")
    with pytest.raises(BadInput, match="for benchmarks only"):
        fastpath.from_options({"fast_path": "sdpa,fuse_qkv"})
    p = fastpath.from_options({"fast_path": "compile", "compile_backend": "eager"})
    assert p.to_dict() == {
        "levers": ["compile"],
        "compile_mode": fastpath.DEFAULT_COMPILE_MODE,
        "compile_backend": "eager",
    }


def test_compile_and_channels_last_keep_the_module_and_its_outputs():
    """In place: the same module object (adapters still reach its layers), the same numbers."""
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.SiLU(), torch.nn.Conv2d(8, 4, 1)
    ).eval()
    xs = [torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(s)) for s in range(5)]
    with torch.inference_mode():
        before = [net(x) for x in xs]
    notes = fastpath.parse("channels_last,compile", compile_backend="eager").apply(net)
    assert notes == ["channels_last: unet", "compile: unet (eager)"]
    assert net[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert fastpath.parse("compile", compile_backend="eager").apply(net) == [
        "compile: nothing (eager)"
    ]  # once
    with torch.inference_mode():
        for x, b in zip(xs, before, strict=True):
            assert torch.allclose(net(x), b, atol=1e-5)


def test_bench_gpu_tiny_every_safe_lever_and_fused_qkv_keep_the_image_on_five_seeds(tmp_path: Path, capsys):
    """Measured (CPU fp32, tiny archs): ours with sdpa, channels_last, tf32 and
    fused QKV against plain diffusers differs by at most 1 level of 255 on each of 5 seeds, while
    another seed's image differs by > 100: the tolerance (2) separates the two. The seven aspect
    captions are the same texts in one batched VLM call as in seven calls (measured 7 of 7,
    greedy, fp32)."""
    from tdri_engine.cli import main

    out = tmp_path / "gpu.json"
    assert main(["bench", "gpu", "--tiny", "--rows", "sd15_fuse_qkv,vlm_captions", "--out", str(out)]) == 0
    data = json.loads(out.read_text(encoding="utf-8"))
    assert json.loads(capsys.readouterr().out) == data["summary"]
    row = data["rows"]["sd15_fuse_qkv"]
    assert "error" not in row, row.get("traceback_tail")
    notes = row["result"]["ours"]["fast_path"]
    assert [n.split(":")[0] for n in notes] == [
        "tf32",
        "sdpa",
        "fuse_qkv",
        "channels_last",
    ]
    assert "fused on unet, vae, controlnet" in notes[2]
    same = row["result"]["same_image"]
    assert same["seeds"] == [0, 1, 2, 3, 4] and same["within_tolerance"] is True
    assert max(same["max_abs_diff_per_seed"]) <= same["tolerance"] == 2
    assert same["other_seed_min_max_abs_diff"] > 10 * same["tolerance"]
    assert data["summary"]["images_match"] == {"sd15_fuse_qkv": True}
    assert data["summary"]["targets"] == {"sd15_ratio": 0.4, "sdxl_ratio": 0.5, "round_s": 1.5}
    captions = data["rows"]["vlm_captions"]
    assert "error" not in captions, captions.get("traceback_tail")
    assert (
        captions["result"]["same_captions"]["aspects_equal"] == 7 == captions["result"]["same_captions"]["of"]
    )
    assert captions["result"]["settings"]["aspects"] == [
        "Content",
        "Style",
        "Background",
        "Size",
        "Color",
        "Perspective",
        "Others",
    ]


def test_bench_gpu_keeps_to_its_time_budget_and_refuses_unknown_rows(tmp_path: Path, capsys):
    from tdri_engine.cli import main

    out = tmp_path / "gpu.json"
    assert (
        main(["bench", "gpu", "--tiny", "--budget-s", "0", "--rows", "sd15,round_sd15", "--out", str(out)])
        == 0
    )
    data = json.loads(out.read_text(encoding="utf-8"))
    assert set(data["rows"]) == {"sd15", "round_sd15"}
    assert all("time budget" in r["skipped"] for r in data["rows"].values())
    assert data["summary"]["sd15_ratio"] is None and data["summary"]["round_met"] is None
    capsys.readouterr()
    assert main(["bench", "gpu", "--rows", "sd15,sd16"]) == 1
    err = capsys.readouterr().err
    assert "Unknown row: sd16" in err and "what to do:" in err


def test_a_profile_names_its_levers_and_the_loaders_apply_them(demo_profile):
    """``"options": {"fast_path": ...}`` of the generator and controlnet roles reaches the loaded
    modules; a benchmark-only lever there stops the load with a message, before any image."""
    import dataclasses

    import torch
    from diffusers.models.attention_processor import AttnProcessor2_0

    from tdri_engine.models import ModelRegistry

    def with_options(options):
        roles = {
            r: dataclasses.replace(s, options={**s.options, **options})
            if r in ("generator", "controlnet")
            else s
            for r, s in demo_profile.roles.items()
        }
        return ModelRegistry(dataclasses.replace(demo_profile, roles=roles), device="cpu", dtype="fp32")

    reg = with_options({"fast_path": "sdpa,channels_last"})
    pipe, cn = reg.get("generator"), reg.get("controlnet")
    for m in (pipe.unet, pipe.vae, cn):
        assert all(isinstance(p, AttnProcessor2_0) for p in m.attn_processors.values())
        conv = next(x for x in m.modules() if isinstance(x, torch.nn.Conv2d))
        assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    plain = ModelRegistry(demo_profile, device="cpu", dtype="fp32").get("generator")
    conv = next(x for x in plain.unet.modules() if isinstance(x, torch.nn.Conv2d) and x.kernel_size != (1, 1))
    assert not conv.weight.is_contiguous(memory_format=torch.channels_last)  # nothing unless named
    with pytest.raises(BadInput, match="for benchmarks only"):
        with_options({"fast_path": "fuse_qkv"}).get("generator")
