"""Exceptions whose messages say what was wrong and how to fix it."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class TransferkitError(Exception):
    """Base class for every error transferkit raises on purpose."""


class ConfigError(TransferkitError, ValueError):
    """A config key, value or type is invalid."""


class DataError(TransferkitError, ValueError):
    """A dataset cannot be used as given."""


class ModelError(TransferkitError, ValueError):
    """A model or its weights cannot be loaded as given."""


class UnknownNameError(TransferkitError, KeyError):
    """A name looked up in a registry does not exist."""

    def __init__(self, kind: str, name: str, valid: Iterable[str]) -> None:
        valid = sorted(valid)
        close = difflib.get_close_matches(name, valid, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        message = f"Unknown {kind} {name!r}.{hint} Valid {kind} names: {', '.join(valid)}."
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:  # KeyError would otherwise print the message in quotes
        return self.message


class MissingDependencyError(TransferkitError, ImportError):
    """An optional package is needed for the requested feature."""

    def __init__(self, package: str, feature: str, install: str | None = None) -> None:
        """`install` is what to pip-install when it is not the package itself (an extra)."""
        super().__init__(
            f"{feature} needs the package {package!r}. Install it with: pip install {install or package}"
        )


class RunError(TransferkitError, RuntimeError):
    """A run cannot go on: a diverged loss, a run directory in use, nothing left to resume."""


class TrainingInterrupted(TransferkitError):
    """SIGTERM or Ctrl-C stopped training after a checkpoint was saved; `--resume` continues the run."""

    def __init__(self, signal_number: int, run_dir: str) -> None:
        super().__init__(
            f"Interrupted by signal {signal_number}; a checkpoint is saved. Continue with: "
            f"transferkit fit --resume {run_dir}"
        )
        self.exit_code = 128 + signal_number  # what a shell reports for a process the signal killed
        self.run_dir = run_dir
