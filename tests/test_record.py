"""gis.record.ShiftRecord: result.json as one dataclass, documented field by field."""

from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path

import pytest

from gis.record import FORMAT, RecordError, ShiftRecord

OUTPUTS = Path(__file__).resolve().parents[1] / "docs" / "OUTPUTS.md"


def _paths(cls, prefix: str = "") -> list[str]:
    """Dotted paths of every field of a record dataclass, `name[].field` inside lists."""
    out = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        path = prefix + f.name
        out.append(path)
        hint = hints[f.name]
        args = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
        inner = args[0]
        if typing.get_origin(inner) is list:
            (elem,) = typing.get_args(inner)
            if dataclasses.is_dataclass(elem):
                out += _paths(elem, path + "[].")
        elif dataclasses.is_dataclass(inner):
            out += _paths(inner, path + ".")
    return out


def test_outputs_md_documents_every_record_field():
    doc = OUTPUTS.read_text(encoding="utf-8")
    missing = [p for p in _paths(ShiftRecord) if f"`{p}`" not in doc]
    assert not missing, f"docs/OUTPUTS.md does not document {missing}"


@pytest.fixture(scope="module")
def written(small_shift_run):
    return json.loads((small_shift_run[0] / "result.json").read_text())


def test_the_shift_record_round_trips(written, tmp_path):
    record = ShiftRecord.from_json(written)
    assert record.format == FORMAT and record.command == "shift" and record.has_item
    assert record.targets.user_ids == ["u0001", "u0042"]
    assert len(record.scores.variants) == 3 and record.per_user.ranks[0].item >= 1
    again = ShiftRecord.from_json(json.loads(record.write(tmp_path / "r.json").read_text()))
    assert again == record
    assert list(record.to_json())[:2] == ["format", "command"]


def test_older_records_still_read(written):
    old = {k: v for k, v in written.items()
           if k not in ("format", "distances", "category", "catalogue_size")}
    for row in old["per_user"]["ranks"]:
        row.pop("item")
    record = ShiftRecord.from_json(old)
    assert record.format == FORMAT and record.distances is None and record.catalogue_size is None
    assert record.per_user.ranks[0].item is None


@pytest.mark.parametrize("change, message", [
    (lambda d: d["scores"].update(variants=[]), "no scores.variants"),
    (lambda d: d.pop("optimised_aggregation"), "no optimised_aggregation"),
    (lambda d: d["scores"]["base"].pop("mean"), "no scores.base.mean"),
    (lambda d: d.update(settings=[1]), "settings is not an object"),
    (lambda d: d["targets"].pop("count"), "no targets.count"),
    (lambda d: d["distances"].update(to_base=[0.1]), "distances does not match the variants"),
    (lambda d: d["per_user"]["ranks"][0].update(variants=[1]),
     "per_user.ranks does not match the variants"),
    (lambda d: d["per_user"]["ranks"][0].update(base="top"),
     r"per_user.ranks\[0\].base is not an integer"),
    (lambda d: d.update(format="gis-shift/2"), "format 'gis-shift/2', this gis reads"),
])
def test_damaged_records_are_one_line_errors(written, change, message):
    doc = json.loads(json.dumps(written))
    change(doc)
    with pytest.raises(RecordError, match=message):
        ShiftRecord.from_json(doc)
