"""Domain fine-tuning: a LoRA from a captioned image folder, and the model profile that carries it.

``dataset`` checks the folder, ``base`` resolves the base generator (trust policy first),
``train`` runs the resumable LoRA training (plain or under ``accelerate launch``), ``profiles``
writes the profile, ``cli`` is ``tdri finetune``, ``demo_atelier`` the Atelier experiment.
"""
