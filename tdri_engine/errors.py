"""Errors are values: every failure the user can meet carries a kind, a message and what to do.

The studio shows ``message`` and ``what_to_do``; the CLI prints them; nothing is swallowed.
"""

from __future__ import annotations


class TdriError(Exception):
    """Base of every error the engine raises on purpose.

    ``kind`` is a short machine-readable tag (``"model-missing"``, ``"storage"`` ...),
    ``message`` says what happened in plain words, ``what_to_do`` how to get past it.
    """

    kind = "error"

    def __init__(self, message: str, what_to_do: str = "", *, kind: str | None = None):
        super().__init__(message)
        self.message = message
        self.what_to_do = what_to_do
        if kind is not None:
            self.kind = kind

    def __str__(self) -> str:
        if self.what_to_do:
            return f"{self.message}\n{self.what_to_do}"
        return self.message


class Cancelled(TdriError):
    """A long call stopped because the user cancelled it. Not a failure."""

    kind = "cancelled"

    def __init__(self, message: str = "Cancelled.", what_to_do: str = ""):
        super().__init__(message, what_to_do)


class BadInput(TdriError):
    """The user gave something the engine cannot use (broken image, empty prompt ...)."""

    kind = "bad-input"


class ModelMissing(TdriError):
    """A model role could not be resolved to weights on this machine."""

    kind = "model-missing"

    def __init__(self, role: str, looked_in: list[str], what_to_do: str, detail: str = ""):
        where = "; ".join(looked_in) if looked_in else "(nowhere configured)"
        msg = f"Model for role '{role}' not found. Looked in: {where}."
        if detail:
            msg += f" {detail}"
        super().__init__(msg, what_to_do)
        self.role = role
        self.looked_in = list(looked_in)


class ModelBroken(TdriError):
    """Weights were found but could not be loaded (wrong architecture, truncated file ...)."""

    kind = "model-broken"


class ModelRefused(ModelBroken):
    """A model folder breaks the trust policy (custom code, pickled weights) and was not loaded."""

    kind = "model-refused"


class OutOfMemory(TdriError):
    """The device ran out of memory; the message says which knob to turn."""

    kind = "out-of-memory"


class ProjectError(TdriError):
    """A project cannot be created or opened as asked (bad name, newer schema, read-only ...)."""

    kind = "project"


class StorageError(TdriError):
    """Writing to disk failed (disk full, read-only, permission). The in-memory state is unchanged."""

    kind = "storage"


class AdapterError(TdriError):
    """A LoRA adapter file is corrupt, foreign or incompatible; the active version stays."""

    kind = "adapter"


class TrainingError(TdriError):
    """A preference-optimisation update could not run or was rolled back."""

    kind = "training"
