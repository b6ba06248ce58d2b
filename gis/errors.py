"""Domain errors. The library raises these; only the CLI turns them into one-line messages.

`GisUsageError` (and subclasses) mean the user asked for something impossible or absent (exit 2);
`GisRuntimeError` means the work itself failed (exit 1).
"""

from __future__ import annotations

from collections.abc import Iterator


class GisError(Exception):
    """Base class of every error gis raises on purpose."""

    exit_code = 1


class GisUsageError(GisError):
    """Bad input or settings: a missing file, an unknown name, an impossible value."""

    exit_code = 2


class GisRuntimeError(GisError):
    """The work failed while running (non-finite loss, a broken checkpoint, ...)."""

    exit_code = 1


class UnknownPluginObjectError(GisUsageError, KeyError):
    kind = "object"

    def __init__(self, name: str, available: list[str], note: str = ""):
        self.name = name
        self.available = sorted(available)
        listing = ", ".join(self.available) if self.available else "none registered"
        super().__init__(f"unknown {self.kind} {name!r}; available: {listing}{note}")

    def __str__(self) -> str:  # KeyError would repr() the message
        return self.args[0]


class UnknownGeneratorError(UnknownPluginObjectError):
    kind = "generator"


class UnknownRecommenderError(UnknownPluginObjectError):
    kind = "recommender"


class UnknownLossError(UnknownPluginObjectError):
    kind = "loss"


class UnknownDatasetError(UnknownPluginObjectError):
    kind = "dataset"


class DuplicateRegistrationError(GisError):
    """Two plugins registered the same name or alias. ``plugins`` holds (owner, newcomer).
    Raised by the newcomer's ``register`` call; gis then leaves the newcomer out entirely
    (docs/PLUGINS.md, "When a plugin is broken")."""

    def __init__(self, message: str, plugins: tuple[str, str] = ("", "")):
        super().__init__(message)
        self.plugins = plugins


class PluginLoadError(GisRuntimeError):
    """A plugin could not be loaded (import error, unknown or misspelt hook, a name another
    plugin already holds, a hook that raised). The message names the plugin, its module and
    how to exclude it (``GIS_PLUGINS=...``); see docs/PLUGINS.md, "When a plugin is broken"."""


class PluginContractError(GisRuntimeError):
    """An object a plugin factory returned breaks its interface (a missing attribute, a wrong
    shape or value range, user vectors that do not match the user ids), or the factory itself
    raised. One line naming the object, its plugin, the plugin's module and the mismatched
    piece; see docs/PLUGINS.md, "Checks"."""


class MissingAssetError(GisUsageError):
    """An offline asset (weights, data) is not installed; the message names the command that
    provisions it."""


class CheckpointError(GisUsageError):
    """A checkpoint that cannot be read, or does not match the model it is loaded into."""


class UntrustedFileError(GisUsageError):
    """A pickle-based file was about to be loaded without the user's explicit trust."""


class BadImageError(GisUsageError):
    """A missing, corrupt, unsupported or oversized image."""


class UnknownUserError(GisUsageError):
    """A user id that the recommender does not know."""


class NonFiniteLossError(GisRuntimeError):
    """An optimisation produced NaN or infinity; the message names the term."""


def one_line(exc: BaseException) -> str:
    """``"RuntimeError: first line of the message"``: how plugin errors quote an exception."""
    text = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def error_chain(exc: BaseException | None) -> Iterator[BaseException]:
    """``exc``, then the errors it was raised from or while handling (``__cause__``, else
    ``__context__`` unless ``raise ... from None`` suppressed it), each once."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ if exc.__cause__ is not None else (
            None if exc.__suppress_context__ else exc.__context__)
