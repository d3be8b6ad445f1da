"""The Atelier: a fashion world the project draws itself, so small real models can learn it.

* :mod:`.world` — the attribute record over the paper's seven aspects, its vocabularies and a
  deterministic renderer (PIL + numpy), with the mannequin's OpenPose keypoints.
* :mod:`.captions` — a full caption and one caption per aspect, in varied seeded wordings,
  answering the Reflector's per-aspect instructions.
* :mod:`.splits` — train / held-out splits that hold out attribute *combinations*.
* :mod:`.judge` — a small attribute classifier (one head per field), for tests and evaluation only.
* :mod:`.clip_train` — a small transformers ``CLIPModel`` trained contrastively on the world.
* :mod:`.recipe` — the resumable training loop behind ``tdri world train`` and the model cards.
"""
