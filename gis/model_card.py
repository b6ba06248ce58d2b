"""The model card of a plugin's weights (``gis.ModelCard``; docs/PLUGINS.md, "The model card").

Split from gis.interfaces, which re-exports it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from .errors import PluginContractError

# ------------------------------------------------------------------------------ model card
# What the core reads from the card of a plugin's weights (docs/PLUGINS.md, "The model card").
_RANGES = ("input_range", "output_range")


@dataclass(eq=False)
class ModelCard(Mapping[str, Any]):
    """The facts about a set of weights that gis reads and records, like timm's pretrained
    config: typed fields for what the core reads, ``extra`` for everything else.

    On disk a card stays the JSON object written beside the weights
    (``plugins/*/weights/*.json``): ``from_dict`` reads one and ``to_dict`` returns the same
    object (same keys, same order, same values). Each typed field is the top-level JSON key of
    the same name; every other key is kept, unchanged, in ``extra``. A card also reads like its
    JSON form (``card["training"]``, ``card.get("fid")``, ``dict(card)``, ``card == {...}``),
    read-only; gis's own code reads the typed fields and the properties below.

    All fields are optional (None when the card does not say):

    name:          the registered name the weights are for (``"progan"``).
    description:   one line on the model.
    checkpoint:    the file the weights were read from (the loader sets it).
    sha256:        SHA-256 hex digest of that file, when the loader computed it.
    dataset:       the training data: its registered name, or an object with ``name`` and
                   optionally ``resolution`` (pixels) and ``category_names``.
    categories:    category names of a class-conditional model (label i is ``categories[i]``)
                   when they are not the dataset's ``category_names``.
    resolution:    side, in pixels, of the square images the model makes or reads.
    input_range, output_range:  pixel value range (lo, hi) a recommender reads or a generator
                   writes, e.g. (-1, 1); ``to_dict`` writes them as JSON arrays.
    command, commands, training, machine:  provenance: the command(s) that trained the weights,
                   the training facts (which may hold ``commands`` and ``machine``) and the
                   machine (platform, torch, device).
    metrics, fid:  measured quality: ``metrics`` (e.g. DVBPR's ``val_auc``/``test_auc``),
                   ``fid`` (FID/KID against held-out real images; docs/MODELS.md).
    extra:         every other key of the JSON card.
    """

    name: str | None = None
    description: str | None = None
    checkpoint: str | None = None
    sha256: str | None = None
    dataset: str | dict[str, Any] | None = None
    categories: list[str] | None = None
    resolution: int | None = None
    input_range: tuple[float, float] | None = None
    output_range: tuple[float, float] | None = None
    command: str | None = None
    commands: list[str] | None = None
    training: dict[str, Any] | None = None
    machine: dict[str, Any] | None = None
    metrics: dict[str, Any] | None = None
    fid: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    #: the JSON keys in their original order (a key present with the value null stays)
    _keys: tuple[str, ...] = field(default=(), init=False, repr=False)

    @classmethod
    def typed_keys(cls) -> tuple[str, ...]:
        """The JSON keys that have a typed field."""
        return tuple(f.name for f in fields(cls) if f.name not in ("extra", "_keys"))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> ModelCard:
        """The card of a JSON object (None gives an empty card). Raises
        ``PluginContractError`` when ``data`` is not a JSON object."""
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise PluginContractError(
                f"a model card must be a JSON object (dict), not {type(data).__name__}")
        typed = set(cls.typed_keys())
        known = {k: v for k, v in data.items() if k in typed}
        for k in _RANGES:
            if known.get(k) is not None:
                known[k] = tuple(known[k])
        card = cls(**known, extra={k: v for k, v in data.items() if k not in typed})
        card._keys = tuple(data)
        return card

    @classmethod
    def coerce(cls, value: ModelCard | Mapping[str, Any] | None) -> ModelCard:
        """``value`` itself when it is a card, else ``from_dict(value)``."""
        return value if isinstance(value, ModelCard) else cls.from_dict(value)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: typed fields that are set (or were present) plus ``extra``, in the
        original key order."""
        values = dict(self.extra)
        for k in self.typed_keys():
            v = getattr(self, k)
            if v is not None or k in self._keys:
                values[k] = list(v) if k in _RANGES and v is not None else v
        order = [k for k in self._keys if k in values]
        order += [k for k in values if k not in set(self._keys)]
        return {k: values[k] for k in order}

    #: the keys a result records of each model's card (result.json, docs/OUTPUTS.md)
    RECORDED = ("checkpoint", "dataset", "sha256")

    def recorded(self) -> dict[str, Any]:
        """What results record of the card: ``RECORDED`` keys the card has, JSON form."""
        own = self.to_dict()
        return {k: own[k] for k in self.RECORDED if k in own}

    # read-only mapping over the JSON form
    def __getitem__(self, key: str) -> Any:
        return self.to_dict()[key]

    def __iter__(self):
        return iter(self.to_dict())

    def __len__(self) -> int:
        return len(self.to_dict())

    @property
    def dataset_name(self) -> str | None:
        """The training dataset's registered name (None when the card does not say)."""
        if isinstance(self.dataset, Mapping):
            name = self.dataset.get("name")
            return None if name is None else str(name)
        return None if self.dataset is None else str(self.dataset)

    @property
    def category_names(self) -> list[str]:
        """``categories``, else the dataset's ``category_names``, else []."""
        if self.categories:
            return [str(c) for c in self.categories]
        if isinstance(self.dataset, Mapping):
            return [str(c) for c in self.dataset.get("category_names") or []]
        return []

    @property
    def value_range(self) -> tuple[float, float] | None:
        """``output_range`` (generators) or ``input_range`` (recommenders)."""
        return self.output_range if self.output_range is not None else self.input_range

    @property
    def training_commands(self) -> list[str]:
        """The command(s) that trained the weights, oldest first ([] when unknown)."""
        if self.commands:
            return [str(c) for c in self.commands]
        if self.command:
            return [str(self.command)]
        return [str(c) for c in (self.training or {}).get("commands") or []]

    @property
    def training_machine(self) -> dict[str, Any]:
        """The machine the weights were trained on ({} when unknown)."""
        return dict(self.machine or (self.training or {}).get("machine") or {})

    @property
    def quality(self) -> dict[str, float]:
        """Measured quality as name -> value: the real numbers in ``fid`` (``fid``,
        ``kid_mean``, ...) and in ``metrics`` (``val_auc``, ``test_auc``, ...), counts left out;
        {} when none were measured."""
        return {str(k): v for group in (self.fid, self.metrics) for k, v in (group or {}).items()
                if isinstance(v, float)}


def _card_property() -> property:
    def get(self) -> ModelCard:
        card = self.__dict__.get("_card")
        if card is None:
            card = self.__dict__["_card"] = ModelCard()
        return card

    def set_(self, value: ModelCard | Mapping[str, Any] | None) -> None:
        self.__dict__["_card"] = ModelCard.coerce(value)

    return property(get, set_, doc="The weights' ``ModelCard``; assigning a dict (the JSON "
                                   "form) stores ``ModelCard.from_dict`` of it.")
