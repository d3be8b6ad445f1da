"""TDRI engine: two-phase dialogue refinement and co-adaptation for interactive image generation.

This package never imports Qt. Heavy libraries (torch, diffusers, transformers) are imported
lazily inside the functions that need them, so ``import tdri_engine`` stays cheap.
"""

__version__ = "0.1.0"
