"""Model roles: offline resolution, the models check, profiles, and the lazy registry."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from tdri_engine import models
from tdri_engine.errors import BadInput, ModelBroken, ModelMissing, OutOfMemory
from tdri_engine.models import (
    ROLES,
    ModelRegistry,
    RoleSpec,
    check_profile,
    load_profile,
    profile_from_dict,
    resolve,
    resolve_device,
    resolve_dtype,
)


@pytest.fixture
def hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    return cache


def _fake_transformers_folder(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"\0")
    return folder


def _cached_snapshot(cache: Path, repo_id: str, commit: str = "abc123") -> Path:
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    return _fake_transformers_folder(repo / "snapshots" / commit)


@pytest.mark.parametrize("role", ROLES)
def test_every_missing_role_names_the_role_where_it_looked_and_the_fix(
    role: str, hf_cache: Path, tdri_home: Path
):
    profile = load_profile("sd15")
    spec = profile.roles[role]
    with pytest.raises(ModelMissing) as info:
        resolve(spec)
    err = info.value
    org, name = spec.source.split("/")
    assert err.role == role
    assert f"'{role}'" in err.message
    assert str(tdri_home / "models" / org / name) in err.message  # IT's drop folder
    assert str(hf_cache / f"models--{org}--{name}") in err.message  # the HF cache
    assert f"huggingface-cli download {spec.source}" in err.what_to_do
    assert "Settings > Models" in err.what_to_do
    assert str(tdri_home / "models" / org / name) in err.what_to_do


def test_missing_demo_models_say_to_run_tdri_models_demo(tdri_home: Path):
    statuses = check_profile(load_profile("demo"))
    assert {s.role for s in statuses} == set(ROLES)
    for status in statuses:
        assert not status.found
        assert status.looked_in == [str(tdri_home / "models" / "demo" / status.role)]
        assert "tdri models demo" in status.what_to_do


def test_a_folder_copied_into_tdri_home_models_is_found(tdri_home: Path, hf_cache: Path):
    folder = _fake_transformers_folder(tdri_home / "models" / "openai" / "clip-vit-base-patch32")
    spec = load_profile("sd15").roles["clip"]
    assert resolve(spec) == folder


def test_the_hugging_face_cache_is_read_with_local_files_only(hf_cache: Path):
    snapshot = _cached_snapshot(hf_cache, "Qwen/Qwen2.5-1.5B-Instruct")
    spec = load_profile("sd15").roles["llm"]
    assert resolve(spec) == snapshot
    status = {s.role: s for s in check_profile(load_profile("sd15"))}["llm"]
    assert status.found and status.path == str(snapshot)


def test_an_incomplete_folder_is_reported_as_missing_with_the_reason(tmp_path: Path):
    folder = tmp_path / "half-copied-controlnet"
    folder.mkdir()
    (folder / "config.json").write_text("{}")  # the weights never arrived
    spec = RoleSpec("controlnet", "controlnet", str(folder))
    with pytest.raises(ModelMissing) as info:
        resolve(spec)
    assert "incomplete" in info.value.message
    assert "*.safetensors or *.bin" in info.value.message
    assert str(folder) in info.value.message


def test_a_user_profile_json_overrides_one_role_and_keeps_the_rest(tmp_path: Path, tdri_home: Path):
    gen = tmp_path / "my-sd15"
    profile_dir = tdri_home / "profiles"
    profile_dir.mkdir()
    (profile_dir / "studio.json").write_text(
        json.dumps({"extends": "sd15", "description": "ours", "roles": {"generator": str(gen)}})
    )
    profile = load_profile("studio")
    assert profile.name == "studio"
    assert profile.roles["generator"].source == str(gen)
    assert profile.roles["generator"].kind == "sd15"
    assert profile.roles["vlm"].source == "Qwen/Qwen2-VL-2B-Instruct"
    assert "studio" in models.list_profiles()
    # the same file opened by path, and a saved profile reads back identical
    assert load_profile(profile_dir / "studio.json").roles == profile.roles
    saved = models.save_profile(profile, tmp_path / "copy.json")
    assert load_profile(saved).roles == profile.roles


@pytest.mark.parametrize(
    "text, words",
    [
        ("{not json", "Could not read"),
        (json.dumps({"roles": {"painter": {"kind": "sd15", "source": "x"}}}), "Unknown role 'painter'"),
        (json.dumps({"roles": {"generator": {"kind": "dalle", "source": "x"}}}), "unknown kind 'dalle'"),
        (json.dumps({"roles": {"clip": {"kind": "hf-clip", "source": "x"}}}), "no generator role"),
    ],
)
def test_a_broken_profile_file_says_what_is_wrong(tmp_path: Path, text: str, words: str):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(BadInput) as info:
        load_profile(path)
    assert words in info.value.message


def test_an_unknown_profile_name_lists_the_known_ones():
    with pytest.raises(BadInput) as info:
        load_profile("sd99")
    assert "sd15" in info.value.what_to_do and "demo" in info.value.what_to_do


def test_the_registry_loads_a_role_once_and_shares_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    calls = []

    def loader(path, spec, device, dtype):
        calls.append((path, spec.options.get("cpu_offload"), device, dtype))
        return object()

    monkeypatch.setitem(models._LOADERS, "counting", loader)
    monkeypatch.setitem(models._EXPECTED_FILES, "counting", [("config.json",)])
    folder = _fake_transformers_folder(tmp_path / "gen")
    profile = profile_from_dict(
        {"name": "t", "roles": {"generator": {"kind": "counting", "source": str(folder)}}}
    )
    registry = ModelRegistry(profile, device="cpu", dtype="fp32", cpu_offload=True)
    first = registry.get("generator")
    assert registry.get("generator") is first
    assert calls == [(folder, True, torch.device("cpu"), torch.float32)]
    assert registry.is_loaded("generator") and not registry.has("vlm")


def test_weights_that_do_not_load_give_model_broken_with_role_and_path(tmp_path: Path):
    folder = tmp_path / "controlnet"
    folder.mkdir()
    (folder / "config.json").write_text("{this is not json")
    (folder / "diffusion_pytorch_model.safetensors").write_bytes(b"garbage")
    profile = profile_from_dict(
        {
            "name": "t",
            "roles": {
                "generator": {"kind": "sd15", "source": str(tmp_path / "nowhere")},
                "controlnet": {"kind": "controlnet", "source": str(folder)},
            },
        }
    )
    with pytest.raises(ModelBroken) as info:
        ModelRegistry(profile, device="cpu").get("controlnet")
    assert "controlnet" in info.value.message and str(folder) in info.value.message
    assert "Settings > Models" in info.value.what_to_do


def test_running_out_of_memory_while_loading_says_which_knobs_help(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    def loader(path, spec, device, dtype):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 3.00 GiB")

    monkeypatch.setitem(models._LOADERS, "huge", loader)
    monkeypatch.setitem(models._EXPECTED_FILES, "huge", [])
    profile = profile_from_dict(
        {"name": "t", "roles": {"generator": {"kind": "huge", "source": str(tmp_path)}}}
    )
    with pytest.raises(OutOfMemory) as info:
        ModelRegistry(profile, device="cpu").get("generator")
    assert "generator" in info.value.message
    for knob in ("fp16", "CPU offload", "smaller"):
        assert knob in info.value.what_to_do


def test_device_and_dtype_auto_on_this_machine():
    device = resolve_device("auto")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert device.type in (expected, "mps")
    cpu = torch.device("cpu")
    assert resolve_dtype("auto", cpu) == torch.float32
    assert resolve_dtype("fp16", cpu) == torch.float32  # half precision is not a CPU format
    assert resolve_dtype("bf16", cpu) == torch.bfloat16
    assert resolve_dtype("auto", torch.device("cuda")) == torch.float16
    if not torch.cuda.is_available():
        with pytest.raises(BadInput, match="CUDA is not available"):
            resolve_device("cuda")


def test_the_built_demo_profile_is_complete(demo_profile):
    statuses = check_profile(demo_profile)
    assert [s.role for s in statuses] == list(ROLES)
    assert all(s.found for s in statuses), [s for s in statuses if not s.found]
    assert demo_profile.is_demo and demo_profile.limits["width"] <= 128


def test_a_cache_copied_without_refs_gives_its_newest_snapshot(hf_cache: Path):
    repo = hf_cache / "models--Qwen--Qwen2.5-1.5B-Instruct"
    old = _fake_transformers_folder(repo / "snapshots" / "old111")
    new = _fake_transformers_folder(repo / "snapshots" / "new222")
    os.utime(old / "config.json", (1_000_000, 1_000_000))
    os.utime(old / "model.safetensors", (1_000_000, 1_000_000))
    spec = load_profile("sd15").roles["llm"]
    assert resolve(spec) == new  # no refs/main to resolve: the newest snapshot, as a copy carries it


def test_a_source_that_is_no_repo_id_is_missing_with_the_reason(hf_cache: Path, tdri_home: Path):
    spec = RoleSpec("llm", "causal-lm", "my org/chat model")  # two parts, but no valid repo id
    with pytest.raises(ModelMissing) as info:
        resolve(spec)
    assert "is no repo id" in info.value.message
    assert "'llm'" in info.value.message
