"""Engine settings: one dataclass, defaults from the paper, validated on construction.

A project stores its settings in ``project.json``; the studio's settings dialog edits them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .errors import BadInput

ASPECTS: tuple[str, ...] = (
    "Content",
    "Style",
    "Background",
    "Size",
    "Color",
    "Perspective",
    "Others",
)


def _default_weights() -> dict[str, float]:
    return {a: 1.0 / len(ASPECTS) for a in ASPECTS}


@dataclass
class EngineSettings:
    """Every knob of one refinement session. ``help`` metadata is shown by the CLI and the studio."""

    # generation
    steps: int = field(default=30, metadata={"help": "denoising steps per image (DDIM)"})
    guidance: float = field(default=7.5, metadata={"help": "classifier-free guidance scale"})
    width: int = field(default=512, metadata={"help": "image width in pixels (multiple of 8)"})
    height: int = field(default=512, metadata={"help": "image height in pixels (multiple of 8)"})
    negative_prompt: str = field(default="", metadata={"help": "what the image should not show"})
    refine_mode: str = field(
        default="edit",
        metadata={"help": "'edit' refines the previous image (img2img); 'scratch' generates anew"},
    )
    edit_strength: float = field(
        default=0.6, metadata={"help": "how far an edit may move from the previous image (0-1)"}
    )
    # pose (initial generation phase)
    pose_sigma: float = field(
        default=3.0, metadata={"help": "Gaussian smoothing sigma of the pose map, pixels"}
    )
    pose_strength: float = field(default=0.8, metadata={"help": "pose ControlNet conditioning scale"})
    use_pose: bool = field(default=True, metadata={"help": "keep round 0's pose in later rounds"})
    # D2P
    alpha: float = field(default=0.5, metadata={"help": "weight of the dialogue history (eq. 2)"})
    beta: float = field(default=0.5, metadata={"help": "weight of the latest user input (eq. 2)"})
    summarizer: str = field(default="structured", metadata={"help": "'structured' or 'llm'"})
    # FR
    tau: float | None = field(
        default=None,
        metadata={"help": "ambiguity threshold: ask when A > tau; empty: the model profile's calibrated tau"},
    )
    aspect_weights: dict[str, float] = field(
        default_factory=_default_weights, metadata={"help": "w_i per aspect"}
    )
    questioner: str = field(default="template", metadata={"help": "'template' or 'llm'"})
    question_aspect: str = field(
        default="lowest3",
        metadata={
            "help": "aspect of a question: 'lowest3' (FR: one of the three lowest-scoring) or 'random' "
            "(any weighted aspect; the FR-off ablation of `tdri eval`)"
        },
    )
    # AO
    update_every: int = field(default=40, metadata={"help": "DPO update after this many new choices"})
    ae_threshold: float | None = field(
        default=None,
        metadata={
            "help": "Attend-and-Excite when 1 - sim(I, P) passes this; empty: the model profile's calibrated value"
        },
    )
    use_attend_excite: bool = field(default=True, metadata={"help": "rescue neglected subjects"})
    # AO: the Diffusion-DPO update (eq. 7, 9); the optimizer's DPOConfig is built from these
    dpo_lr: float = field(
        default=1e-5,
        metadata={"help": "learning rate of a DPO update (the public Diffusion-DPO LoRA example's)"},
    )
    dpo_steps: int = field(default=200, metadata={"help": "optimizer steps of a DPO update"})
    dpo_lambda_ae: float = field(
        default=0.0,
        metadata={"help": "weight lambda of L_AE in L = L_DPO + lambda L_AE (eq. 9); 0: DPO only"},
    )
    dpo_train_controlnet: bool = field(
        default=False,
        metadata={
            "help": "tune a LoRA on the pose ControlNet (eq. 9) instead of the UNet; rounds with a pose use it"
        },
    )
    # runtime
    device: str = field(default="auto", metadata={"help": "'auto', 'cuda', 'mps' or 'cpu'"})
    dtype: str = field(default="auto", metadata={"help": "'auto', 'fp16', 'bf16' or 'fp32'"})
    cpu_offload: bool = field(default=False, metadata={"help": "offload idle models to the CPU"})
    seed: int | None = field(default=None, metadata={"help": "fixed seed; empty for a new one each run"})

    def __post_init__(self) -> None:
        problems = []
        if not 1 <= self.steps <= 500:
            problems.append("steps must be between 1 and 500")
        if self.width % 8 or self.height % 8 or min(self.width, self.height) < 64:
            problems.append("width and height must be multiples of 8, at least 64")
        if max(self.width, self.height) > 4096:
            problems.append("width and height must be at most 4096")
        if self.refine_mode not in ("edit", "scratch"):
            problems.append("refine_mode must be 'edit' or 'scratch'")
        if not 0.0 < self.edit_strength <= 1.0:
            problems.append("edit_strength must be in (0, 1]")
        if self.pose_sigma < 0:
            problems.append("pose_sigma must be >= 0")
        if self.alpha < 0 or self.beta < 0 or self.alpha + self.beta == 0:
            problems.append("alpha and beta must be >= 0 and not both 0")
        if self.summarizer not in ("structured", "llm"):
            problems.append("summarizer must be 'structured' or 'llm'")
        if self.questioner not in ("template", "llm"):
            problems.append("questioner must be 'template' or 'llm'")
        if self.question_aspect not in ("lowest3", "random"):
            problems.append("question_aspect must be 'lowest3' or 'random'")
        unknown = set(self.aspect_weights) - set(ASPECTS)
        if unknown:
            problems.append(f"unknown aspects in aspect_weights: {sorted(unknown)}")
        if any(w < 0 for w in self.aspect_weights.values()):
            problems.append("aspect weights must be >= 0")
        if self.tau is not None and not 0.0 <= self.tau:
            problems.append("tau must be >= 0 (or empty for the profile's)")
        if self.ae_threshold is not None and not 0.0 <= self.ae_threshold <= 1.0:
            problems.append("ae_threshold must be in [0, 1] (or empty for the profile's)")
        if self.update_every < 2:
            problems.append("update_every must be at least 2")
        if not 0 < self.dpo_lr < 1:
            problems.append("dpo_lr must be in (0, 1)")
        if self.dpo_steps < 1:
            problems.append("dpo_steps must be >= 1")
        if self.dpo_lambda_ae < 0:
            problems.append("dpo_lambda_ae must be >= 0")
        if self.device not in ("auto", "cuda", "mps", "cpu") and not self.device.startswith("cuda:"):
            problems.append("device must be auto, cuda, cuda:N, mps or cpu")
        if self.dtype not in ("auto", "fp16", "bf16", "fp32"):
            problems.append("dtype must be auto, fp16, bf16 or fp32")
        if problems:
            raise BadInput("Invalid settings: " + "; ".join(problems), "Fix the values and try again.")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EngineSettings:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def replace(self, **changes: Any) -> EngineSettings:
        return dataclasses.replace(self, **changes)

    @staticmethod
    def help(name: str) -> str:
        for f in dataclasses.fields(EngineSettings):
            if f.name == name:
                return f.metadata.get("help", "")
        raise KeyError(name)
