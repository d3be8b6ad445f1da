"""The Atelier's training recipe: every role from a fixed seed, resumable, with a model card.

One loop (:func:`train_role`) drives every role through a small :class:`Role` protocol:
``build`` (model and optimiser from the seed), ``step_loss(step)`` (the loss of step ``step``'s
batch), ``evaluate()`` (held-out figures) and ``export(folder)`` (the role's real format).

* Determinism: the model is initialised under ``torch.manual_seed(seed)``; step ``k``'s batch is
  drawn from ``numpy.random.default_rng([seed, k])``; the learning rate is a function of ``k``
  (linear warm-up over 5 %, then cosine to 0). So a run resumed from step ``k`` sees exactly
  what an uninterrupted run would have.
* Resuming: every ``checkpoint_every`` steps (and on Ctrl-C) the model and the AdamW moments
  are written to ``<out>/<role>/checkpoint/`` as safetensors + JSON, through a temporary
  folder and a rename, so a kill at any moment leaves the previous checkpoint whole. A new run
  with the same ``--out`` continues from it (a different seed, step count or data refuses to).
* Progress: one line on stderr, rewritten in place: steps, loss (running mean), steps/s, ETA.
* Model card: ``<out>/<role>/MODEL_CARD.md`` and ``card.json`` with the data hash, the seed, the
  steps, the wall time and the held-out figures.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TextIO

from ..errors import TrainingError
from ..store.fsutil import previous_dir, replace_dir, staging_dir

CARD_NAME = "MODEL_CARD.md"


class Role(Protocol):
    """What the loop needs from one trainable role."""

    name: str
    model: Any

    def build(self) -> None: ...
    def data_hash(self) -> str: ...
    def step_loss(self, step: int) -> Any: ...
    def evaluate(self) -> dict[str, Any]: ...
    def export(self, folder: Path) -> None: ...


@dataclass
class RunConfig:
    steps: int
    seed: int = 0
    lr: float = 2e-3
    weight_decay: float = 1e-4
    checkpoint_every: int = 200
    warmup_share: float = 0.05

    def lr_at(self, step: int) -> float:
        warm = max(1, int(self.steps * self.warmup_share))
        if step < warm:
            return self.lr * (step + 1) / warm
        t = (step - warm) / max(1, self.steps - warm)
        return self.lr * 0.5 * (1.0 + math.cos(math.pi * t))


@dataclass
class RunResult:
    role: str
    steps: int
    resumed_from: int
    wall_s: float
    figures: dict[str, Any]
    folder: Path
    losses: list[float] = field(default_factory=list)


# --------------------------------------------------------------------------------------------
# checkpoints (safetensors + JSON; nothing pickled)
# --------------------------------------------------------------------------------------------


def _optimizer_tensors(opt: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    import torch

    tensors: dict[str, Any] = {}
    groups: list[dict[str, Any]] = []
    steps: dict[str, dict[str, float]] = {}
    meta: dict[str, Any] = {"param_groups": groups, "steps": steps}
    for gi, group in enumerate(opt.param_groups):
        groups.append({k: v for k, v in group.items() if k != "params"})
        for pi, p in enumerate(group["params"]):
            st = opt.state.get(p)
            if not st:
                continue
            key = f"{gi}.{pi}"
            for name, value in st.items():
                if torch.is_tensor(value) and value.dim() > 0:
                    tensors[f"opt.{key}.{name}"] = value.detach().contiguous()
                else:
                    steps.setdefault(key, {})[name] = float(value)
    return tensors, meta


def _load_optimizer(opt: Any, tensors: dict[str, Any], meta: dict[str, Any]) -> None:
    import torch

    for gi, group in enumerate(opt.param_groups):
        for pi, p in enumerate(group["params"]):
            key = f"{gi}.{pi}"
            scalars = meta["steps"].get(key)
            if scalars is None:
                continue
            st: dict[str, Any] = {}
            for name, value in scalars.items():
                st[name] = torch.tensor(value, dtype=torch.float32)
            for name in ("exp_avg", "exp_avg_sq"):
                t = tensors.get(f"opt.{key}.{name}")
                if t is not None:
                    st[name] = t.clone()
            opt.state[p] = st


def save_checkpoint(folder: Path, model: Any, opt: Any, step: int, info: dict[str, Any]) -> None:
    from safetensors.torch import save_file

    folder = Path(folder)
    tmp = staging_dir(folder)
    state = {f"model.{k}": v.detach().contiguous() for k, v in model.state_dict().items()}
    opt_tensors, opt_meta = _optimizer_tensors(opt)
    save_file(state | opt_tensors, str(tmp / "state.safetensors"))
    (tmp / "checkpoint.json").write_text(
        json.dumps({"step": step, "optimizer": opt_meta} | info, indent=2), encoding="utf-8"
    )
    replace_dir(tmp, folder)


def load_checkpoint(folder: Path, model: Any, opt: Any, info: dict[str, Any]) -> int:
    """Restore model and optimiser from ``folder``; returns the next step. Refuses a
    checkpoint made with another seed, step count or data."""
    from safetensors.torch import load_file

    folder = Path(folder)
    if not (folder / "checkpoint.json").is_file():
        old = previous_dir(folder)  # killed between the two renames
        if (old / "checkpoint.json").is_file():
            folder = old
        else:
            return 0
    meta = json.loads((folder / "checkpoint.json").read_text(encoding="utf-8"))
    for key, value in info.items():
        if meta.get(key) != value:
            raise TrainingError(
                f"The checkpoint in {folder} was made with {key}={meta.get(key)!r}, not {value!r}.",
                "Use another --out folder, or the same settings as the interrupted run.",
            )
    tensors = load_file(str(folder / "state.safetensors"))
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    _load_optimizer(opt, tensors, meta["optimizer"])
    return int(meta["step"])


# --------------------------------------------------------------------------------------------
# progress
# --------------------------------------------------------------------------------------------


def _fmt_s(s: float) -> str:
    s = int(max(0, s))
    return f"{s // 3600}h{s // 60 % 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


class ProgressLine:
    """``[role] 120/3000 [####......] 4% loss 0.523 3.1 step/s eta 15m30s`` on one line."""

    def __init__(self, role: str, total: int, start: int, stream: TextIO | None = None, every_s: float = 0.5):
        self.role, self.total, self.start = role, total, start
        self.stream = stream if stream is not None else sys.stderr
        self.t0 = time.monotonic()
        self.last = 0.0
        self.every_s = every_s

    def update(self, step: int, loss: float, force: bool = False) -> str:
        now = time.monotonic()
        if not force and now - self.last < self.every_s:
            return ""
        self.last = now
        done = step - self.start
        rate = done / max(1e-9, now - self.t0)
        eta = (self.total - step) / rate if rate > 0 else float("inf")
        frac = step / max(1, self.total)
        bar = "#" * int(frac * 20)
        line = (
            f"[{self.role}] {step}/{self.total} [{bar:<20}] {frac:4.0%} loss {loss:.4f} "
            f"{rate:.2f} step/s eta {_fmt_s(eta) if math.isfinite(eta) else '?'}"
        )
        self.stream.write("\r" + line)
        self.stream.flush()
        return line

    def close(self) -> None:
        self.stream.write("\n")
        self.stream.flush()


# --------------------------------------------------------------------------------------------
# the loop
# --------------------------------------------------------------------------------------------


def train_role(
    role: Role,
    config: RunConfig,
    out: Path,
    *,
    on_step: Callable[[int, float], None] | None = None,
    stream: TextIO | None = None,
) -> RunResult:
    """Train ``role`` to ``config.steps`` (resuming from ``out/<role>/checkpoint``), evaluate,
    export to ``out/<role>/model`` and write the model card. ``on_step(step, loss)`` runs after
    every step (an exception there stops the run like a kill would: only the last checkpoint
    survives)."""
    import torch

    folder = Path(out) / role.name
    ckpt = folder / "checkpoint"
    torch.manual_seed(config.seed)
    role.build()
    model = role.model
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    info = {"seed": config.seed, "steps_total": config.steps, "data_hash": role.data_hash(), "lr": config.lr}
    start = load_checkpoint(ckpt, model, opt, info)
    t0 = time.monotonic()
    progress = ProgressLine(role.name, config.steps, start, stream)
    losses: list[float] = []
    running = float("nan")
    step = start
    try:
        for step in range(start, config.steps):
            for group in opt.param_groups:
                group["lr"] = config.lr_at(step)
            model.train()
            loss = role.step_loss(step)
            if not torch.isfinite(loss):
                raise TrainingError(
                    f"The {role.name} loss became {float(loss)} at step {step}.",
                    "Lower the learning rate or resume from the last checkpoint.",
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            value = float(loss.detach())
            losses.append(value)
            running = value if running != running else 0.95 * running + 0.05 * value
            progress.update(step + 1, running)
            if (step + 1) % config.checkpoint_every == 0 and step + 1 < config.steps:
                save_checkpoint(ckpt, model, opt, step + 1, info)
            if on_step is not None:
                on_step(step + 1, value)
    except KeyboardInterrupt:
        save_checkpoint(ckpt, model, opt, step, info)  # step `step` did not finish
        progress.close()
        raise
    progress.update(config.steps, running, force=True)
    progress.close()
    save_checkpoint(ckpt, model, opt, config.steps, info)
    wall = time.monotonic() - t0
    model.eval()
    figures = role.evaluate()
    role.export(folder / "model")
    result = RunResult(role.name, config.steps, start, wall, figures, folder, losses)
    write_card(result, info)
    return result


def write_card(result: RunResult, info: dict[str, Any]) -> None:
    card = {
        "role": result.role,
        "data_hash": info["data_hash"],
        "seed": info["seed"],
        "steps": result.steps,
        "resumed_from_step": result.resumed_from,
        "train_wall_s_this_run": round(result.wall_s, 1),
        "lr": info["lr"],
        "heldout": result.figures,
    }
    (result.folder / "card.json").write_text(json.dumps(card, indent=2), encoding="utf-8")
    lines = [
        f"# Atelier {result.role}",
        "",
        "Trained by `tdri world train` on renderings of the Atelier world (tdri_engine/atelier).",
        "",
        f"- data hash (SHA-256 of the training pixels and labels): `{info['data_hash']}`",
        f"- seed {info['seed']}, {result.steps} steps (this run resumed from step {result.resumed_from}), "
        f"learning rate {info['lr']}",
        f"- wall time of this run: {result.wall_s:.0f} s",
        "",
        "## Held-out figures (attribute combinations never seen in training)",
        "",
        "| aspect | accuracy |",
        "|---|---|",
    ]
    for aspect, acc in result.figures.get("aspects", {}).items():
        lines.append(f"| {aspect} | {acc:.3f} |")
    fields = result.figures.get("fields", {})
    if fields:
        lines += ["", "| field | accuracy |", "|---|---|"]
        lines += [f"| {f} | {a:.3f} |" for f, a in fields.items()]
    (result.folder / CARD_NAME).write_text("\n".join(lines) + "\n", encoding="utf-8")
