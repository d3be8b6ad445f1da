"""How well the Atelier generator draws what it is asked: held-out prompts -> images -> judge.

``measure`` takes ``n`` held-out records (``splits.sample("heldout")``: each holds at least one
garment x colour or garment x background pair the generator never saw), prompts the pipeline
with each record's full caption (the wording of its render seed), draws one image per prompt
(seed ``seed`` + i) and asks the judge what it sees. A field is *found* when the judge reads the
prompted value; an aspect when all its fields are (a garment without sleeves is not asked about
them; ``judge.accuracy``'s definition). Reported beside each share:

* ``chance``: a uniform guess (``gen_train.chance_levels``);
* ``judge_on_renderings``: the judge on the renderer's own pictures of the same records, the
  ceiling the judge's errors put on any generator.

``python -m tdri_engine.atelier.gen_eval --model DIR --out FILE`` writes the figures JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from .data import labels_of
from .splits import sample
from .world import ALL_VOCAB, FIELDS, render


def generate(
    pipe: Any, prompts: list[str], seeds: list[int], steps: int, guidance: float, batch: int = 25
) -> list[Any]:
    """One 64x64 picture per prompt, each from its own seeded generator."""
    import torch

    images: list[Any] = []
    for i in range(0, len(prompts), batch):
        gens = [torch.Generator().manual_seed(s) for s in seeds[i : i + batch]]
        out = pipe(
            prompts[i : i + batch],
            num_inference_steps=steps,
            guidance_scale=guidance,
            generator=gens,
            height=64,
            width=64,
        )
        images.extend(out.images)
    return images


def measure(
    pipe: Any,
    judge: Any,
    *,
    n: int = 300,
    seed: int = 0,
    steps: int | None = None,
    guidance: float | None = None,
    data_seed: int = 7,
    start: int = 0,
    with_renderings: bool = True,
) -> dict[str, Any]:
    """Judge-measured shares of prompted values on ``n`` held-out prompts (see the module doc).

    ``data_seed`` picks the held-out records; 7 keeps them apart from the records the CLIP and
    the judge are evaluated on (data seed 0). ``start`` measures prompts ``start .. start+n-1``
    (image seeds ``seed + start + i``), so a long measure can run in parts and be merged
    (``merge``)."""
    from .gen_train import DEFAULTS, chance_levels, heldout_prompt
    from .judge import accuracy

    steps = int(steps or DEFAULTS["steps"])
    guidance = float(DEFAULTS["guidance"] if guidance is None else guidance)
    samples = sample("heldout", n, data_seed, start=start)
    prompts = [heldout_prompt(s.record, s.seed) for s in samples]
    labels = np.array([labels_of(s.record) for s in samples], dtype=np.int64).reshape(n, len(FIELDS))
    t0 = time.monotonic()
    images = generate(pipe, prompts, [seed + start + i for i in range(n)], steps, guidance)
    gen_s = time.monotonic() - t0
    read = judge.read(images)
    pred = np.array([[ALL_VOCAB[f].index(r[f]) for f in FIELDS] for r in read], dtype=np.int64)
    found = accuracy(pred, labels)
    figures: dict[str, Any] = {
        "n_prompts": n,
        "steps": steps,
        "guidance": guidance,
        "image_seeds": f"{seed + start}..{seed + start + n - 1}",
        "heldout_data_seed": data_seed,
        "found": found,
        "chance": chance_levels(),
        "generate_s": round(gen_s, 1),
        "example_prompts": prompts[:3],
    }
    if with_renderings:
        rendered = [render(s.record, s.seed, 64) for s in samples]
        rpred = np.array(
            [[ALL_VOCAB[f].index(r[f]) for f in FIELDS] for r in judge.read(rendered)], dtype=np.int64
        )
        figures["judge_on_renderings"] = accuracy(rpred, labels)
        figures["raw_rendered"] = rpred.tolist()
    figures["raw_pred"] = pred.tolist()
    figures["raw_labels"] = labels.tolist()
    figures["_images"] = images
    return figures


def merge(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One figure set from parts measured with ``start`` offsets (from their raw readings)."""
    from .judge import accuracy

    pred = np.array([row for p in parts for row in p["raw_pred"]], dtype=np.int64)
    labels = np.array([row for p in parts for row in p["raw_labels"]], dtype=np.int64)
    out = {k: v for k, v in parts[0].items() if not k.startswith("raw_")}
    out["n_prompts"] = len(labels)
    out["found"] = accuracy(pred, labels)
    if all("raw_rendered" in p for p in parts):
        rendered = np.array([row for p in parts for row in p["raw_rendered"]], dtype=np.int64)
        out["judge_on_renderings"] = accuracy(rendered, labels)
    out["generate_s"] = round(sum(p["generate_s"] for p in parts), 1)
    out["image_seeds"] = ", ".join(p["image_seeds"] for p in parts)
    return out


def grid(images: list[Any], cols: int = 10, scale: int = 2) -> Any:
    """The pictures side by side (``scale`` x nearest-neighbour), for looking at them."""
    from PIL import Image

    if not images:
        raise ValueError("no images")
    w, h = images[0].size
    rows = (len(images) + cols - 1) // cols
    sheet = Image.new("RGB", (cols * w, rows * h), "white")
    for i, im in enumerate(images):
        sheet.paste(im, ((i % cols) * w, (i // cols) * h))
    return sheet.resize((cols * w * scale, rows * h * scale), Image.Resampling.NEAREST)


def main(argv: list[str] | None = None) -> int:
    import torch

    from ..generator import load_pipeline
    from . import judge as judge_mod

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, required=True, help="the SD-1.x pipeline folder")
    p.add_argument("--judge", type=Path, default=None, help="judge folder (default: the bundled one)")
    p.add_argument("-n", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--start", type=int, default=0, help="first held-out prompt (to measure in parts)")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--guidance", type=float, default=None)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=None, help="figures JSON")
    p.add_argument("--grid", type=Path, default=None, help="PNG of the first 40 pictures")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    class Spec:
        kind = "sd15"
        role = "generator"
        options: dict[str, Any] = {}

    pipe = load_pipeline(args.model, Spec(), torch.device("cpu"), torch.float32)
    the_judge = judge_mod.load(args.judge) if args.judge else judge_mod.load_bundled()
    t0 = time.monotonic()
    figures = measure(
        pipe, the_judge, n=args.n, seed=args.seed, steps=args.steps, guidance=args.guidance, start=args.start
    )
    images = figures.pop("_images")
    figures["wall_s"] = round(time.monotonic() - t0, 1)
    figures["command"] = "python -m tdri_engine.atelier.gen_eval " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    if args.grid is not None:
        grid(images[:40]).save(args.grid)
    text = json.dumps(figures, indent=2)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
