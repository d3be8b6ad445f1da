"""``tdri eval``: the paper's evaluation protocol, its baselines and ablations, on any profile.

* :mod:`.users` — hidden targets (Atelier records, or images with prompts) and the simulated
  user who answers from the target and chooses by similarity to it.
* :mod:`.conditions` — single-shot, augmentation, random-aspect questions, TDRI, TDRI + AO,
  editing vs anew, A&E on/off, VLM swap; the augmenters.
* :mod:`.metrics` — per-round T2I / I2I CLIP, BLIP, judge agreement, satisfaction; bootstrap.
* :mod:`.runner` — the resumable run (append-only JSONL per process, progress with ETA).
* :mod:`.report` — Markdown tables shaped like the paper's, report JSON, PNG plots.
* :mod:`.cli` — ``tdri eval``.
"""
