"""Benchmarks of the engine against plain diffusers, on random weights of the real architectures.

``tdri bench generate`` (``generate.py``) times one image, ours against a plain pipeline built
from the same components; ``tdri bench round`` (``round.py``) times a whole refinement round
per stage. Both write JSON (``report.py``: machine, versions, date, cold and warm figures).
"""
