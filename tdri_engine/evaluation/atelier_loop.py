"""Loop-level measurements in the Atelier world: does the method move images toward a user?

Two measurements, each on a model profile whose generator draws the Atelier (the ``atelier``
profile) and measured by the Atelier judge (a classifier trained only on renderings, never used by
the loop):

* :func:`colour_taste` — a simulated user who prefers one colour family (``COLOUR_FAMILIES``)
  makes 40 choices between two images of the same colour-less prompt; one Diffusion-DPO update
  (``optimizer.trainer.run_update``, the studio's and ``tdri train``'s code) learns from them. The
  measure is the share of images the judge reads in that family, on held-out prompts (garments,
  backgrounds and styles never in a training prompt) and held-out seeds, before and after.
  A choice is made only when the judge reads exactly one of the two images in the family (the
  user prefers it); pairs with both or neither in the family would be ties, which carry no
  preference, so more pairs are drawn until 40 choices are made.
* :func:`refinement_run` — ``tdri eval``'s TDRI condition (``evaluation.runner``): from a
  one-word prompt ("a dress") toward a hidden held-out target record, the simulated user answers
  each question truthfully from the record; the judge counts the aspects (0-7) the image shares
  with the target at every round. The measure is the mean rise from round 0 to round 3 over the
  targets, with a paired bootstrap interval.

``python -m tdri_engine.evaluation.atelier_loop taste|refine --out FILE.json`` runs a
measurement and writes its figures with the command line and wall time (docs/eval holds the
committed ones); ``tests/engine/test_atelier_loop.py`` runs reduced versions. Nothing heavy is
imported until a measurement runs.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# Colour families of the world's twelve colours: warm and cool hues, and the neutrals.
COLOUR_FAMILIES: dict[str, tuple[str, ...]] = {
    "warm": ("red", "orange", "yellow", "pink"),
    "cool": ("green", "blue", "navy", "purple"),
    "neutral": ("white", "black", "brown", "grey"),
}
# Training prompts name no colour (the user's taste has to come from the choices) and keep to
# some garments and settings; held-out prompts use the others, so a gain there is a taste, not a
# memorised prompt.
TRAIN_PROMPTS: tuple[str, ...] = (
    "a dress, flat lay, in a studio",
    "a t-shirt, flat lay, in a studio",
    "a coat, on a hanger, in a city street",
    "a skirt, flat lay, in a studio",
    "a hoodie, on a mannequin, on a beach",
    "a jumpsuit, on a mannequin, in a garden",
)
HELDOUT_PROMPTS: tuple[str, ...] = (
    "a shirt, on a hanger, on a runway",
    "trousers, line sketch, in a forest",
    "a dress, on a mannequin, on a runway",
    "a coat, flat lay, in a forest",
    "a skirt, on a hanger, in a garden",
    "a hoodie, line sketch, in a city street",
)


@dataclass
class TasteConfig:
    family: str = "warm"
    choices: int = 40  # decisive choices the update learns from (the paper's update interval)
    heldout_seeds: int = 8  # images per held-out prompt, before and after
    seed: int = 0  # the user's images and the update's noise
    steps: int | None = 10  # denoising steps (DDIM; None: the profile's 20). 10: the CPU budget
    guidance: float = 7.5  # the Atelier generator's sampling default (models.ATELIER_GUIDANCE)
    size: int = 64
    dpo_steps: int = 100
    dpo_lr: float = 3e-3
    dpo_beta: float = 2000.0
    dpo_rank: int = 8
    batch: int = 16  # images per pipeline call
    max_images: int = 600  # give up drawing after this many (a family the model never draws)
    train_prompts: tuple[str, ...] = TRAIN_PROMPTS
    heldout_prompts: tuple[str, ...] = HELDOUT_PROMPTS


def _images(pipe: Any, prompts: Sequence[str], seeds: Sequence[int], c: TasteConfig, steps: int) -> list[Any]:
    """One image per (prompt, seed), in batches through the pipeline (its LoRA, if any, on)."""
    import torch

    out: list[Any] = []
    for i in range(0, len(prompts), c.batch):
        ps, ss = list(prompts[i : i + c.batch]), list(seeds[i : i + c.batch])
        with torch.no_grad():
            result = pipe(
                ps,
                num_inference_steps=steps,
                guidance_scale=c.guidance,
                height=c.size,
                width=c.size,
                generator=[torch.Generator().manual_seed(int(s)) for s in ss],
                output_type="pil",
            )
        out.extend(result.images)
    return out


def _in_family(colours: Sequence[str], family: str) -> list[bool]:
    return [c in COLOUR_FAMILIES[family] for c in colours]


PoolImage = tuple[str, int, Any, bool]  # prompt, seed, image, in the family (as the judge reads it)


def _drawn(pipe: Any, judge: Any, c: TasteConfig, steps: int) -> Any:
    """Images on the training prompts, drawn in batches on the user's seeds, up to max_images."""
    drawn = 0
    while drawn < c.max_images:
        n = min(c.batch, c.max_images - drawn)
        prompts = [c.train_prompts[(drawn + k) % len(c.train_prompts)] for k in range(n)]
        seeds = [10_000 * (c.seed + 1) + drawn + k for k in range(n)]
        images = _images(pipe, prompts, seeds, c, steps)
        inside = _in_family([r["color"] for r in judge.read(images)], c.family)
        yield from zip(prompts, seeds, images, inside, strict=True)
        drawn += n


def draw_pool(engine: Any, judge: Any, c: TasteConfig, n: int) -> list[PoolImage]:
    """``n`` images on the training prompts (seeds from 500 000), judged once, for several users."""
    from ..settings import EngineSettings

    settings, _ = engine.session_settings(EngineSettings(width=c.size, height=c.size))
    pipe = engine.registry.get("generator")
    pipe.set_progress_bar_config(disable=True)
    c2 = TasteConfig(**{**asdict(c), "seed": 49, "max_images": n})  # seeds 500 000 + i
    return list(_drawn(pipe, judge, c2, c.steps or settings.steps))


def _shuffled(pool: list[PoolImage], seed: int) -> list[PoolImage]:
    import random

    order = list(pool)
    random.Random(seed).shuffle(order)
    return order


def heldout_share(pipe: Any, judge: Any, c: TasteConfig, steps: int) -> tuple[float, dict[str, int]]:
    """Share of held-out images the judge reads in the family, and the colour counts. The
    held-out seeds are the same for every user, so every update is measured on one image set."""
    prompts = [p for p in c.heldout_prompts for _ in range(c.heldout_seeds)]
    seeds = [900_000 + j for _ in c.heldout_prompts for j in range(c.heldout_seeds)]
    colours = [r["color"] for r in judge.read(_images(pipe, prompts, seeds, c, steps))]
    counts: dict[str, int] = {}
    for col in colours:
        counts[col] = counts.get(col, 0) + 1
    return sum(_in_family(colours, c.family)) / max(1, len(colours)), counts


def colour_taste(
    engine: Any,
    judge: Any,
    config: TasteConfig,
    projects_root: Path,
    before: tuple[float, dict[str, int]] | None = None,
    pool: list[PoolImage] | None = None,
) -> dict[str, Any]:
    """One simulated user (``config.family``, ``config.seed``): 40 choices, one DPO update, the
    held-out share of the family before and after (``before``: that share already measured on
    the base model, the same for every user). Returns the figures (``gain`` = after - before).

    The user is shown two images of the same prompt at a time and prefers the one in the family.
    Images are drawn per prompt on the user's seeds; an image in the family is paired with the
    next image of the same prompt outside it (each image in one pair only), so no drawn picture
    is wasted on a pair without a preference. With ``pool`` (:func:`draw_pool`), the user's
    images come from that shared set in an order drawn from the user's seed instead (cheaper
    when several users are measured: the pictures are made once)."""
    from ..optimizer import adapters
    from ..optimizer.dpo import DPOConfig
    from ..optimizer.trainer import run_update
    from ..records import ImageRecord, PreferencePair
    from ..settings import EngineSettings
    from ..store import create_project

    c = config
    if c.family not in COLOUR_FAMILIES:
        from ..errors import BadInput

        raise BadInput(f"Unknown colour family {c.family!r}.", f"Use one of: {', '.join(COLOUR_FAMILIES)}.")
    started = time.monotonic()
    settings, _notes = engine.session_settings(EngineSettings(width=c.size, height=c.size))
    steps = c.steps or settings.steps
    pipe = engine.registry.get("generator")
    pipe.set_progress_bar_config(disable=True)
    share_before, counts_before = before if before is not None else heldout_share(pipe, judge, c, steps)
    store = create_project(
        projects_root, f"taste {c.family} {c.seed}", profile=engine.profile_name, settings=settings
    )
    try:
        pairs: list[PreferencePair] = []
        waiting: dict[str, dict[bool, list[tuple[Any, int]]]] = {}  # prompt -> in family? -> images
        drawn = 0
        source = _shuffled(pool, c.seed) if pool is not None else _drawn(pipe, judge, c, steps)
        for prompt, seed, image, warm in source:
            drawn += 1
            slot = waiting.setdefault(prompt, {True: [], False: []})
            if slot[not warm]:
                other, other_seed = slot[not warm].pop(0)
                liked, other_liked = (image, seed), (other, other_seed)
                win, lose = (liked, other_liked) if warm else (other_liked, liked)
                # the two sides alternate, so "left wins" says nothing on its own
                left, right = (win, lose) if len(pairs) % 2 == 0 else (lose, win)
                ia = store.add_image(left[0], ImageRecord(prompt=prompt, seed=left[1], round=0))
                ib = store.add_image(right[0], ImageRecord(prompt=prompt, seed=right[1], round=0))
                choice = "left" if left is win else "right"
                pairs.append(
                    PreferencePair(prompt=prompt, image_left=ia.id, image_right=ib.id, choice=choice)
                )
                if len(pairs) >= c.choices:
                    break
            else:
                slot[warm].append((image, seed))
        if len(pairs) < c.choices:
            from ..errors import TrainingError

            raise TrainingError(
                f"Only {len(pairs)} of {c.choices} choices in {drawn} images: the generator rarely "
                f"draws the {c.family} family apart from the others.",
                "Pick another family or raise max_images.",
            )
        store.put_many(pairs)
        dpo = DPOConfig(
            steps=c.dpo_steps,
            lr=c.dpo_lr,
            beta=c.dpo_beta,
            rank=c.dpo_rank,
            batch_size=4,
            grad_checkpointing=False,
            seed=c.seed,
        )
        version = run_update(store, pipe, settings, config=dpo)
        adapter = adapters.active_adapter_dir(store)
        if adapter is None:  # the update was kept but not activated (a loss spike): say so
            from ..errors import TrainingError

            raise TrainingError(
                f"The update {version.id} was not activated ({version.status}).",
                "Lower dpo_lr or dpo_steps.",
            )
        pipe.load_lora_weights(adapter)
        try:
            share_after, counts_after = heldout_share(pipe, judge, c, steps)
        finally:
            pipe.unload_lora_weights()
    finally:
        store.close()
    return {
        "family": c.family,
        "seed": c.seed,
        "choices": len(pairs),
        "images_drawn": drawn,
        "before": round(share_before, 4),
        "after": round(share_after, 4),
        "gain": round(share_after - share_before, 4),
        "colours_before": counts_before,
        "colours_after": counts_after,
        "adapter": version.id,
        "wall_s": round(time.monotonic() - started, 1),
    }


@dataclass
class RefineConfig:
    targets: int = 20
    rounds: int = 4  # round 0 included: rounds 0..3
    target_seed: int = 0
    seed: int = 0
    steps: int | None = None
    use_pose: bool = False
    settings: dict[str, Any] = field(default_factory=dict)


def refinement_run(
    engine: Any, judge_dir: Path, config: RefineConfig, out: Path, stream: Any = None
) -> dict[str, Any]:
    """``tdri eval``'s TDRI condition on ``engine`` toward ``config.targets`` held-out targets;
    the judged aspect agreement per round and the paired rise from round 0 to the last round."""
    from .metrics import bootstrap_ci
    from .runner import EvalConfig, EvalRun, read_sessions

    c = config
    started = time.monotonic()
    ev = EvalConfig(
        profile=engine.profile_name,
        targets=c.targets,
        rounds=c.rounds,
        conditions=["tdri"],
        out=str(out),
        target_seed=c.target_seed,
        seed=c.seed,
        steps=c.steps,
        judge=str(judge_dir),
        use_pose=c.use_pose,
        settings=dict(c.settings),
    )
    EvalRun(ev, engine=engine, stream=stream if stream is not None else sys.stderr).run(report=False)
    sessions = read_sessions(out)
    per_round = [[s["rounds"][t]["judge_aspects"] for s in sessions] for t in range(c.rounds)]
    last = c.rounds - 1
    rises = [s["rounds"][last]["judge_aspects"] - s["rounds"][0]["judge_aspects"] for s in sessions]
    mean, lo, hi = bootstrap_ci(rises)
    return {
        "targets": len(sessions),
        "rounds": c.rounds,
        "judge_aspects_by_round": [round(sum(v) / len(v), 3) for v in per_round],
        "rise": round(mean, 3),
        "rise_ci95": [round(lo, 3), round(hi, 3)],
        "rose": sum(r > 0 for r in rises),
        "fell": sum(r < 0 for r in rises),
        "wall_s": round(time.monotonic() - started, 1),
    }


# --------------------------------------------------------------------------------------------
# command line: python -m tdri_engine.evaluation.atelier_loop taste|refine --out FILE
# --------------------------------------------------------------------------------------------


def _judge_dir(given: str | None) -> Path:
    from ..atelier.judge import BUNDLED

    return Path(given) if given else BUNDLED


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tdri_engine.evaluation.atelier_loop")
    sub = parser.add_subparsers(dest="what", required=True)
    taste = sub.add_parser("taste", help="DPO from a colour-family user's 40 choices (5 users)")
    taste.add_argument("--seeds", type=int, default=5, help="how many simulated users")
    taste.add_argument(
        "--first-seed", type=int, default=0, help="the first user's seed (tune on others than you report)"
    )
    taste.add_argument("--guidance", type=float, default=TasteConfig.guidance)
    taste.add_argument("--family", default="warm", choices=sorted(COLOUR_FAMILIES))
    taste.add_argument("--dpo-steps", type=int, default=TasteConfig.dpo_steps)
    taste.add_argument("--dpo-lr", type=float, default=TasteConfig.dpo_lr)
    taste.add_argument("--dpo-beta", type=float, default=TasteConfig.dpo_beta)
    taste.add_argument("--heldout-seeds", type=int, default=TasteConfig.heldout_seeds)
    refine = sub.add_parser("refine", help="refinement toward hidden targets, judged per round")
    refine.add_argument("--targets", type=int, default=20)
    refine.add_argument("--rounds", type=int, default=4)
    for p in (taste, refine):
        p.add_argument("--profile", default="atelier")
        p.add_argument("--judge", default=None, help="judge folder (default: the committed one)")
        p.add_argument("--out", type=Path, required=True, help="JSON file to write")
    taste.add_argument("--steps", type=int, default=TasteConfig.steps, help="denoising steps (default 10)")
    refine.add_argument("--steps", type=int, default=None, help="denoising steps (default: the profile's)")
    args = parser.parse_args(argv)

    import torch

    from ..atelier import judge as judge_mod
    from ..session import Engine
    from ..settings import EngineSettings

    torch.manual_seed(0)
    started = time.monotonic()
    engine = Engine(args.profile, EngineSettings(device="cpu", dtype="fp32"))
    engine.ensure_models()
    command = "python -m tdri_engine.evaluation.atelier_loop " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    result: dict[str, Any] = {"command": command, "profile": engine.profile_name}
    with tempfile.TemporaryDirectory() as tmp:
        if args.what == "taste":
            judge = judge_mod.load(_judge_dir(args.judge))
            runs = []
            before = None
            for seed in range(args.first_seed, args.first_seed + args.seeds):
                cfg = TasteConfig(
                    family=args.family,
                    seed=seed,
                    guidance=args.guidance,
                    steps=args.steps,
                    dpo_steps=args.dpo_steps,
                    dpo_lr=args.dpo_lr,
                    dpo_beta=args.dpo_beta,
                    heldout_seeds=args.heldout_seeds,
                )
                runs.append(colour_taste(engine, judge, cfg, Path(tmp), before))
                before = (runs[-1]["before"], runs[-1]["colours_before"])
                print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
            gains = [r["gain"] for r in runs]
            result |= {
                "config": asdict(
                    TasteConfig(
                        family=args.family,
                        seed=args.first_seed,
                        guidance=args.guidance,
                        steps=args.steps,
                        dpo_steps=args.dpo_steps,
                        dpo_lr=args.dpo_lr,
                        dpo_beta=args.dpo_beta,
                        heldout_seeds=args.heldout_seeds,
                    )
                ),
                "runs": runs,
                "gains": gains,
                "min_gain": min(gains),
                "mean_gain": round(sum(gains) / len(gains), 4),
            }
        else:
            rcfg = RefineConfig(targets=args.targets, rounds=args.rounds, steps=args.steps)
            result |= {"config": asdict(rcfg)}
            result |= refinement_run(engine, _judge_dir(args.judge), rcfg, Path(tmp) / "eval")
    result["wall_s"] = round(time.monotonic() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in result.items() if k not in ("runs", "config")}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
