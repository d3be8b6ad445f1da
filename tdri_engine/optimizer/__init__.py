"""Adaptive Optimization (paper 3.2.3): the user's choices teach a LoRA, Attend-and-Excite
rescues forgotten subjects.

Modules (each imports torch/diffusers lazily):

- ``dpo``: the Diffusion-DPO loss as its authors coded it, ``DPOConfig``, the trainer core.
- ``trainer``: ``run_update`` - one update of a project's (or the user's) adapter from its pairs.
- ``adapters``: versioned adapters - list, activate, roll back, validate; project/user scope.
- ``schedule``: when the next update is due (every N decisive choices).
- ``attend_excite``: ``AttendExcite`` step callback, subject-token finder, ``attend_excite_loss``.
- ``export``: preference pairs as Parquet/JSONL in the Pick-a-Pic columns.
- ``cli``: ``tdri train``, ``tdri adapters``, ``tdri export pairs``.
- ``accelerate_train``: the same training on exported pairs under ``accelerate launch``.
"""
