"""gis.ModelCard: the typed card of a plugin's weights (gis/interfaces.py); the JSON on disk
keeps its form."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import gis
from gis.errors import PluginContractError

ROOT = Path(__file__).resolve().parents[1]


class Bare(gis.Generator):
    """Only the card matters here."""


def test_model_cards_keep_their_json_form():
    for path in sorted(ROOT.glob("plugins/*/weights/*.json")):
        data = json.loads(path.read_text())
        card = gis.ModelCard.from_dict(data)
        assert json.dumps(card.to_dict()) == json.dumps(data), path
        assert card == data and dict(card) == data and card["dataset"] == data["dataset"]
    card = gis.get_generator("progan").card
    assert isinstance(card, gis.ModelCard) and card.dataset_name == "fashion-colors"
    assert card.resolution == 32 and card.training_commands and "fid" in card.quality
    assert card.checkpoint.endswith("fashion-colors.safetensors")
    assert set(card.recorded()) == {"checkpoint", "dataset"}


def test_model_card_typed_fields_and_dict_assignment():
    card = gis.ModelCard.from_dict({"dataset": {"name": "d", "category_names": ["a", "b"]},
                                    "input_range": [-1, 1], "fid": None, "note": "x"})
    assert card.dataset_name == "d" and card.category_names == ["a", "b"]
    assert card.input_range == (-1, 1) and card.value_range == (-1, 1)
    assert card.extra == {"note": "x"} and card.to_dict()["fid"] is None
    assert list(card) == ["dataset", "input_range", "fid", "note"]
    assert gis.ModelCard(categories=["x"], dataset="d").category_names == ["x"]
    g = Bare()
    assert g.card == {} and isinstance(g.card, gis.ModelCard)
    g.card = {"dataset": "tiny", "checkpoint": "w.safetensors"}
    assert isinstance(g.card, gis.ModelCard) and g.card.dataset_name == "tiny"
    assert g.card.recorded() == {"checkpoint": "w.safetensors", "dataset": "tiny"}
    with pytest.raises(PluginContractError, match="must be a JSON object"):
        g.card = ["not", "a", "card"]
