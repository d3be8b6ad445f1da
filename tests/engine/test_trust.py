"""Files from other people: model folders, profiles, adapters and what images carry out.

Every hostile model folder here would write a marker file if its code ran or its pickle were
unpickled; each test asserts the load is refused with a message naming the file and the reason,
and that the marker was never written. The folders are tiny: the policy refuses them before
any library reads them, so no weights need to exist.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from tdri_engine.cli import main
from tdri_engine.errors import BadInput, ModelRefused
from tdri_engine.models import RoleSpec, check_profile, load_profile, profile_from_dict

# --------------------------------------------------------------------------------------------
# hostile folders


class _Marker:
    """Unpickling this writes ``path``: the proof that a pickle was loaded without weights_only."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (exec, (f"open({self.path!r}, 'w').write('unpickled')",))


def _pickle_file(file: Path, marker: Path) -> Path:
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_bytes(pickle.dumps({"weight": _Marker(marker)}, protocol=2))
    return file


def _code_file(folder: Path, marker: Path, module: str = "evil_code") -> Path:
    """A Python file that writes ``marker`` when imported, as custom model code would be."""
    folder.mkdir(parents=True, exist_ok=True)
    file = folder / f"{module}.py"
    file.write_text(
        f"open({str(marker)!r}, 'w').write('ran')\n"
        "from transformers import PretrainedConfig, PreTrainedModel\n"
        "class EvilConfig(PretrainedConfig):\n    model_type = 'evil'\n"
        "class EvilModel(PreTrainedModel):\n    config_class = EvilConfig\n",
        encoding="utf-8",
    )
    return file


def _json(path: Path, data: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def _custom_code_transformers(folder: Path, marker: Path) -> Path:
    """A transformers folder whose config maps its classes to its own Python file."""
    _code_file(folder, marker)
    auto = {
        "AutoConfig": "evil_code.EvilConfig",
        "AutoModel": "evil_code.EvilModel",
        "AutoModelForCausalLM": "evil_code.EvilModel",
        "AutoModelForImageTextToText": "evil_code.EvilModel",
        "AutoProcessor": "evil_code.EvilConfig",
    }
    _json(folder / "config.json", {"model_type": "evil", "auto_map": auto})
    (folder / "model.safetensors").write_bytes(b"\0" * 16)
    return folder


def _pickle_only_transformers(folder: Path, marker: Path) -> Path:
    _json(folder / "config.json", {"model_type": "clip"})
    _pickle_file(folder / "pytorch_model.bin", marker)
    return folder


# --------------------------------------------------------------------------------------------
# profiles (issue 12 item 4): each broken profile is a clear message, never a traceback


def _deep(n: int) -> str:
    return "[" * n + "]" * n


BROKEN_PROFILES = {
    "nested 200,000 deep": (_deep(200_000), "nested too deeply"),
    "options nested 200,000 deep": (
        '{"roles": {"generator": {"kind": "sd15", "source": "x", "options": ' + _deep(200_000) + "}}}",
        "nested too deeply",
    ),
    "a list": ('[{"name": "x"}]', "not a JSON object"),
    "a string": ('"sd15"', "not a JSON object"),
    "options a string": (
        '{"extends": "sd15", "roles": {"vlm": {"options": "trust_remote_code"}}}',
        "'options' of role 'vlm'",
    ),
    "options a list": (
        '{"extends": "sd15", "roles": {"vlm": {"options": [1, 2]}}}',
        "'options' of role 'vlm'",
    ),
    "extends a list": ('{"extends": ["sd15"]}', "'extends'"),
    "kind a list": (
        '{"roles": {"generator": {"kind": ["sd15"], "source": "x"}}}',
        "'kind' of role 'generator'",
    ),
    "source an object": (
        '{"roles": {"generator": {"kind": "sd15", "source": {"a": 1}}}}',
        "'source' of role 'generator'",
    ),
    "required a string": ('{"extends": "sd15", "roles": {"vlm": {"required": "no"}}}', "'required'"),
    "filename outside the folder": (
        '{"extends": "sd15", "roles": {"pose": {"options": {"filename": "../../evil.pth"}}}}',
        "'filename'",
    ),
    "subfolder outside the folder": (
        '{"extends": "sd15", "roles": {"vlm": {"options": {"subfolder": "../../elsewhere"}}}}',
        "'subfolder'",
    ),
    "limits true": ('{"extends": "sd15", "limits": {"width": true}}', "'limits'"),
}


@pytest.mark.parametrize("case", list(BROKEN_PROFILES))
def test_a_broken_profile_file_is_a_message_not_a_traceback(case: str, tmp_path: Path):
    text, words = BROKEN_PROFILES[case]
    path = tmp_path / "profile.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(BadInput) as info:
        load_profile(path)
    assert words in info.value.message
    assert info.value.what_to_do


@pytest.mark.parametrize("case", ["nested 200,000 deep", "a list", "options a string"])
def test_models_check_on_a_broken_profile_exits_nonzero_with_the_message(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture
):
    text, words = BROKEN_PROFILES[case]
    path = tmp_path / "profile.json"
    path.write_text(text, encoding="utf-8")
    assert main(["models", "check", "--profile", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and words in err and "Traceback" not in err


@pytest.mark.parametrize(
    "value",
    ["x" * 100_000, "bad\0name", "../../../../etc/hostname", ["sd15"], {"roles": {}}, 42],
    ids=["100k characters", "NUL", "path up", "list", "object", "number"],
)
def test_a_shared_projects_profile_entry_is_a_message(value: object, projects_root: Path, capsys):
    """project.json names the profile `tdri refine` uses when --profile is not given."""
    from tdri_engine.store import create_project

    store = create_project(projects_root, "Shared")
    folder = store.path
    store.close()
    doc = json.loads((folder / "project.json").read_text(encoding="utf-8"))
    doc["profile"] = value
    (folder / "project.json").write_text(json.dumps(doc), encoding="utf-8")
    code = main(["refine", "--project", str(folder), "--prompt", "a dress", "--rounds", "1"])
    err = capsys.readouterr().err
    assert code == 1, err
    assert err.startswith("error: ") and "profile" in err and "Traceback" not in err


# --------------------------------------------------------------------------------------------
# every role's loader refuses a hostile folder before any library reads it


def _load(role: str, kind: str, folder: Path, options: dict | None = None):
    """Call the role's loader directly, as the registry does (CPU, fp32)."""
    import torch

    from tdri_engine.generator import load_controlnet, load_pipeline
    from tdri_engine.llm import load_llm
    from tdri_engine.metrics import load_blip, load_clip
    from tdri_engine.pose import load_openpose
    from tdri_engine.reflector import load_captioner

    loaders = {
        "generator": load_pipeline,
        "controlnet": load_controlnet,
        "pose": load_openpose,
        "vlm": load_captioner,
        "clip": load_clip,
        "blip": load_blip,
        "llm": load_llm,
    }
    spec = RoleSpec(role, kind, str(folder), options=dict(options or {}))
    return loaders[role](folder, spec, torch.device("cpu"), torch.float32)


def _pipeline_folder(folder: Path, **components: list) -> Path:
    """An SD-1.5-shaped pipeline folder (model_index.json and component folders, no weights)."""
    index = {
        "_class_name": "StableDiffusionPipeline",
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "scheduler": ["diffusers", "DDIMScheduler"],
        "safety_checker": ["stable_diffusion", "StableDiffusionSafetyChecker"],
        **components,
    }
    _json(folder / "model_index.json", index)
    for sub in ("unet", "vae", "text_encoder"):
        _json(folder / sub / "config.json", {})
    _json(folder / "scheduler" / "scheduler_config.json", {"_class_name": "DDIMScheduler"})
    _json(folder / "tokenizer" / "vocab.json", {})
    return folder


def _hostile(case: str, root: Path, marker: Path) -> tuple[str, str, Path, dict, tuple[str, ...]]:
    """(role, kind, folder, options, words the refusal must contain) for one hostile folder."""
    folder = root / case
    if case == "generator custom pipeline":
        _pipeline_folder(folder)
        _code_file(folder, marker, "evil_pipeline")
        index = json.loads((folder / "model_index.json").read_text())
        _json(folder / "model_index.json", {**index, "_class_name": ["evil_pipeline", "EvilPipeline"]})
        return "generator", "sd15", folder, {}, ("model_index.json", "custom pipeline")
    if case == "generator custom component":
        _pipeline_folder(folder, unet=["evil_unet", "EvilUNet"])
        _code_file(folder / "unet", marker, "evil_unet")
        return "generator", "sd15", folder, {}, ("model_index.json", "'unet'", "evil_unet")
    if case == "generator auto_map":
        _pipeline_folder(folder)
        _code_file(folder / "text_encoder", marker)
        _json(folder / "text_encoder" / "config.json", {"auto_map": {"AutoModel": "evil_code.EvilModel"}})
        return "generator", "sdxl", folder, {}, ("text_encoder/config.json", "auto_map", "evil_code")
    if case == "generator pickles":
        _pipeline_folder(folder)
        for sub in ("vae", "text_encoder"):
            (folder / sub / "model.safetensors").write_bytes(b"\0" * 16)
        _pickle_file(folder / "unet" / "diffusion_pytorch_model.bin", marker)
        return "generator", "sd15", folder, {}, ("unet/diffusion_pytorch_model.bin", "pickle")
    if case == "controlnet auto_map":
        _custom_code_transformers(folder, marker)
        return "controlnet", "controlnet", folder, {}, ("config.json", "auto_map")
    if case == "controlnet pickles":
        _json(folder / "config.json", {"_class_name": "ControlNetModel"})
        _pickle_file(folder / "diffusion_pytorch_model.bin", marker)
        return "controlnet", "controlnet", folder, {}, ("diffusion_pytorch_model.bin", "pickle")
    if case in ("vlm", "clip", "blip", "llm"):
        _custom_code_transformers(folder, marker)
        kind = {"vlm": "image-text-to-text", "clip": "hf-clip", "blip": "blip-itm", "llm": "causal-lm"}[case]
        return case, kind, folder, {}, ("config.json", "auto_map", "evil_code")
    if case in ("vlm pickles", "clip pickles", "blip pickles", "llm pickles"):
        role = case.split()[0]
        _pickle_only_transformers(folder, marker)
        kind = {"vlm": "image-text-to-text", "clip": "hf-clip", "blip": "blip-itm", "llm": "causal-lm"}[role]
        return role, kind, folder, {}, ("pytorch_model.bin", "pickle")
    if case == "llm custom tokenizer":
        _code_file(folder, marker)
        _json(folder / "config.json", {"model_type": "gpt2"})
        (folder / "model.safetensors").write_bytes(b"\0" * 16)
        _json(folder / "tokenizer_config.json", {"auto_map": {"AutoTokenizer": ["evil_code.EvilTok", None]}})
        return "llm", "causal-lm", folder, {}, ("tokenizer_config.json", "auto_map")
    if case == "open_clip pickle first":
        _json(
            folder / "open_clip_config.json",
            {"model_cfg": {"embed_dim": 8, "vision_cfg": {}, "text_cfg": {}}},
        )
        _pickle_file(folder / "open_clip_pytorch_model.bin", marker)
        (folder / "model.safetensors").write_bytes(b"\0" * 16)  # open_clip prefers the .bin above
        return "clip", "open_clip", folder, {}, ("open_clip_pytorch_model.bin", "pickle")
    if case == "open_clip hf text tower":
        cfg = {"embed_dim": 8, "vision_cfg": {}, "text_cfg": {"hf_model_name": str(root / "elsewhere")}}
        _json(folder / "open_clip_config.json", {"model_cfg": cfg})
        (folder / "open_clip_model.safetensors").write_bytes(b"\0" * 16)
        _custom_code_transformers(root / "elsewhere", marker)
        return "clip", "open_clip", folder, {}, ("hf_model_name",)
    if case == "open_clip remote tokenizer":
        cfg = {"vision_cfg": {}, "text_cfg": {"hf_tokenizer_name": str(root / "elsewhere")}}
        _json(folder / "tiny-clip.json", cfg)
        (folder / "tiny-clip.safetensors").write_bytes(b"\0" * 16)
        _custom_code_transformers(root / "elsewhere", marker)
        return "clip", "open_clip", folder, {}, ("tiny-clip.json", "outside the model folder")
    if case == "open_clip tokenizer trust_remote_code":
        text = {"hf_tokenizer_name": "x", "tokenizer_kwargs": {"trust_remote_code": True}}
        _json(folder / "open_clip_config.json", {"model_cfg": {"vision_cfg": {}, "text_cfg": text}})
        (folder / "open_clip_model.safetensors").write_bytes(b"\0" * 16)
        return "clip", "open_clip", folder, {}, ("trust_remote_code",)
    if case == "pose pickle":
        _pickle_file(folder / "body_pose_model.pth", marker)
        return "pose", "openpose", folder, {}, ("body_pose_model.pth", "weights_only")
    if case == "pose file outside":
        folder.mkdir(parents=True)
        _pickle_file(root / "evil.pth", marker)
        return "pose", "openpose", folder, {"filename": "../evil.pth"}, ("../evil.pth", "options.filename")
    raise AssertionError(case)


HOSTILE = [
    "generator custom pipeline",
    "generator custom component",
    "generator auto_map",
    "generator pickles",
    "controlnet auto_map",
    "controlnet pickles",
    "vlm",
    "clip",
    "blip",
    "llm",
    "vlm pickles",
    "clip pickles",
    "blip pickles",
    "llm pickles",
    "llm custom tokenizer",
    "open_clip pickle first",
    "open_clip hf text tower",
    "open_clip remote tokenizer",
    "open_clip tokenizer trust_remote_code",
    "pose pickle",
    "pose file outside",
]


@pytest.mark.parametrize("case", HOSTILE)
def test_a_hostile_model_folder_is_refused_by_its_loader_and_nothing_runs(case: str, tmp_path: Path):
    marker = tmp_path / "marker"
    role, kind, folder, options, words = _hostile(case, tmp_path / "models", marker)
    with pytest.raises(ModelRefused) as info:
        _load(role, kind, folder, options)
    err = info.value
    assert err.kind == "model-refused"
    assert "refused" in err.message and f"{role} model" in err.message
    for word in words:
        assert word in err.message, (word, err.message)
    assert err.what_to_do
    assert not marker.exists(), "code from the model folder ran"


@pytest.mark.parametrize("case", [c for c in HOSTILE if not c.startswith("pose")])
def test_the_registry_and_the_models_check_refuse_it_before_any_loader(case: str, tmp_path: Path, capsys):
    """`tdri models check` says "refused" with the reason and exits 1; the registry never loads it.

    (The pose detector's .pth is the one pickle the policy reads, with weights_only=True; a
    foreign one is refused while it loads, as the loader test shows. A pose file name outside
    the folder is refused when the profile is read, as the profile tests show.)
    """
    marker = tmp_path / "marker"
    role, kind, folder, options, words = _hostile(case, tmp_path / "models", marker)
    spec = {"kind": kind, "source": str(folder), "options": options}
    roles = {"generator": spec} if role == "generator" else {role: spec}
    profile_file = _json(tmp_path / "hostile.json", {"extends": "sd15", "roles": roles})
    profile = load_profile(profile_file)

    (status,) = [s for s in check_profile(profile) if s.role == role]
    assert status.refused and not status.found and words[0] in status.reason

    from tdri_engine.models import ModelRegistry

    registry = ModelRegistry(profile, device="cpu")
    with pytest.raises(ModelRefused):
        registry.get(role)
    assert not registry.has(role)

    assert main(["models", "check", "--profile", str(profile_file)]) == 1
    out, err = capsys.readouterr()
    (row,) = [line for line in out.splitlines() if line.startswith(f"{role} ")]
    assert row.rstrip().endswith(("REFUSED", "refused (optional)")) and "found" not in row
    assert f"refused: {status.reason}" in out and "Refused by the trust policy" in err
    assert not marker.exists()


# --------------------------------------------------------------------------------------------
# the command line: "y" typed on stdin never reaches a library's "run the custom code?" prompt


def _tdri() -> list[str]:
    script = Path(sys.executable).with_name("tdri")
    return [str(script)] if script.exists() else [sys.executable, "-m", "tdri_engine.cli"]


def test_refine_on_a_shared_project_with_custom_code_exits_1_and_y_on_stdin_runs_nothing(
    demo_home: Path, tmp_path: Path
):
    """The issue's case: a shared project names a profile whose vlm folder carries its own code.

    Before the trust policy, `tdri refine` loaded the vlm in round 0, transformers asked "Do you
    wish to run the custom code? [y/N]" on stdin, read the user's first answer "y", and ran it.
    """
    from tdri_engine.store import create_project

    marker = tmp_path / "marker"
    shared = tmp_path / "shared"
    vlm = _custom_code_transformers(shared / "vlm", marker)
    profile = _json(shared / "profile.json", {"extends": "demo", "roles": {"vlm": {"source": str(vlm)}}})
    store = create_project(shared, "Shared project", profile=str(profile))
    project = store.path
    store.close()
    env = dict(os.environ, TDRI_HOME=str(demo_home), HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"))
    done = subprocess.run(
        [*_tdri(), "refine", "--project", str(project), "--prompt", "a dress", "--rounds", "3"],
        input="y\nyes\ny\n",
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    said = done.stdout + done.stderr
    assert done.returncode == 1, said
    assert "error: The vlm model folder" in done.stderr and "was refused" in done.stderr
    assert "config.json names custom code" in done.stderr and "auto_map" in done.stderr
    assert "Traceback" not in said and "Do you wish to run the custom code" not in said
    assert not marker.exists(), "the model folder's code ran"
    assert not (tmp_path / "hf" / "modules").exists()  # transformers never copied the code to run it


# --------------------------------------------------------------------------------------------
# adapters (issue 12 item 6)


def _active_adapter(store, files: dict[str, bytes]) -> Path:
    """Make a version v0001 with these files the project's active adapter (as a copy would)."""
    from tdri_engine.optimizer import adapters as ad
    from tdri_engine.records import AdapterVersion

    folder = store.loras_dir / "v0001"
    folder.mkdir(parents=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    ad.record_version(store, AdapterVersion(id="v0001", path="loras/v0001"))
    store.set_meta("active_adapter", "v0001")
    return folder


def test_a_pickle_only_adapter_is_refused_with_a_message_not_ignored(project, tmp_path: Path):
    from tdri_engine.errors import AdapterError
    from tdri_engine.optimizer import adapters as ad

    marker = tmp_path / "marker"
    folder = _active_adapter(project, {})
    _pickle_file(folder / "pytorch_lora_weights.bin", marker)
    # the generator is handed the folder (not None, which silently meant "the base model") ...
    assert ad.active_adapter_dir(project) == folder
    # ... and loading it refuses the pickle, naming the file
    with pytest.raises(AdapterError) as info:
        ad.validate_adapter_dir(folder)
    assert "refused" in info.value.message and "pytorch_lora_weights.bin" in info.value.message
    assert "pickle" in info.value.message and info.value.what_to_do
    with pytest.raises(AdapterError, match="refused"):
        ad.activate(project, "v0001")
    (version,) = ad.list_versions(project)
    assert "[pickled weights: refused]" in ad.describe(project, version)
    assert not marker.exists()


@pytest.mark.parametrize("case", ["corrupt", "pickle only"])
def test_refine_with_a_broken_active_adapter_makes_its_images_without_it_and_says_so(
    case: str, demo_engine, tiny_project, tmp_path: Path
):
    """The message says "generated without it": the round runs, the note says so, the image's
    provenance names no adapter. (It used to raise, so `tdri refine` exited 1.)"""
    from tdri_engine.records import ImageRecord
    from tdri_engine.store import read_provenance

    marker = tmp_path / "marker"
    if case == "corrupt":
        folder = _active_adapter(tiny_project, {"pytorch_lora_weights.safetensors": b"\x10\0\0\0garbage"})
    else:
        folder = _active_adapter(tiny_project, {})
        _pickle_file(folder / "pytorch_lora_weights.bin", marker)
    session = demo_engine.open_session(tiny_project)
    result = session.start("a red dress", seed=3)
    (note,) = [w for w in result.warnings if "v0001" in w]
    assert "could not be loaded" in note and "generated without it" in note and "roll" in note.lower()
    assert demo_engine.generator.adapter_version is None
    (record,) = tiny_project.all(ImageRecord)
    assert record.adapter_version is None
    assert read_provenance(tiny_project.image_path(record)).get("adapter_version") is None
    assert not marker.exists()


def test_the_accelerate_training_script_refuses_a_hostile_pipeline_folder(tmp_path: Path, capsys):
    from tdri_engine.optimizer import accelerate_train

    marker = tmp_path / "marker"
    _, _, folder, _, _ = _hostile("generator custom pipeline", tmp_path / "models", marker)
    argv = [
        "--pretrained",
        str(folder),
        "--pairs",
        str(tmp_path / "pairs.parquet"),
        "--out",
        str(tmp_path / "a"),
    ]
    assert accelerate_train.main(argv) == 1
    err = capsys.readouterr().err
    assert "was refused" in err and "model_index.json names a custom pipeline" in err
    assert not marker.exists() and not (tmp_path / "a").exists()


# --------------------------------------------------------------------------------------------
# what images carry out (issue 12 item 6)


def test_a_rounds_png_names_its_model_and_carries_no_path_of_this_machine(
    demo_engine, demo_models, tiny_project
):
    from PIL import Image

    from tdri_engine.records import ImageRecord

    session = demo_engine.open_session(tiny_project)
    session.start("a red dress", seed=5)
    (record,) = tiny_project.all(ImageRecord)
    with Image.open(tiny_project.image_path(record)) as im:
        chunks = dict(im.text)
    assert chunks["tdri:model"] == "demo/generator"
    assert json.loads(chunks["tdri:provenance"])["model"] == "demo/generator"
    for text in chunks.values():
        assert str(demo_models) not in text and str(Path.home()) not in text


@pytest.mark.parametrize(
    "source, options, expected",
    [
        ("stable-diffusion-v1-5/stable-diffusion-v1-5", {}, "stable-diffusion-v1-5/stable-diffusion-v1-5"),
        ("/home/alice/models/my-sd15", {}, "my-sd15"),
        ("~/models/my-sd15/", {}, "my-sd15"),
        ("/home/alice/models/my-sd15", {"name": "Studio SD 1.5"}, "Studio SD 1.5"),
    ],
)
def test_the_model_an_image_records_is_a_name(source: str, options: dict, expected: str, tmp_path: Path):
    from tdri_engine.models import model_name
    from tdri_engine.store import save_png

    profile = profile_from_dict(
        {"roles": {"generator": {"kind": "sd15", "source": source, "options": options}}}
    )
    assert model_name(profile, "generator") == expected
    # and a record that still holds a path (made before this rule) is cut to the name in the PNG
    from PIL import Image

    out = tmp_path / "x.png"
    save_png(out, Image.new("RGB", (4, 4)), {"model": source, "source_path": "/home/alice/Pictures/coat.jpg"})
    with Image.open(out) as im:
        text = dict(im.text)
    assert "/home/alice" not in text["tdri:model"] and "alice" not in text["tdri:provenance"]
    assert json.loads(text["tdri:provenance"])["source_path"] == "coat.jpg"
