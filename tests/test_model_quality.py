"""gis.evaluation.model_quality: joining the shards of an inversion-quality run."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gis.evaluation import model_quality as mq


def shard_doc(shard, num_shards, values, *, seed=0, n=6):
    index = list(range(shard, n, num_shards))
    return {"n_selected": n, "seed": seed, "shard": shard, "num_shards": num_shards,
            "settings": {"steps": 200}, "seconds": 1.5, "heldout_index": index,
            "values": values}


def test_merge_joins_every_shard():
    docs = [shard_doc(1, 2, [0.3, 0.1, 0.6]), shard_doc(0, 2, [0.2, 0.5, 0.4])]
    out = mq.merge_inversion(docs)
    assert out["n"] == 6 and out["seconds"] == 3.0
    assert out["median_lpips_alex"] == pytest.approx(0.35)
    assert out["mean_lpips_alex"] == pytest.approx(np.mean([0.1, 0.2, 0.3, 0.4, 0.5, 0.6]))
    assert sorted(out["heldout_index"]) == list(range(6))


@pytest.mark.parametrize("docs", [
    [shard_doc(0, 2, [0.1])],                                  # a shard missing
    [shard_doc(0, 2, [0.1]), shard_doc(1, 2, [0.2], seed=1)],  # another selection
    [shard_doc(0, 2, [0.1]), shard_doc(0, 2, [0.2])],          # the same shard twice
])
def test_merge_refuses_incomplete_or_mixed_runs(docs):
    with pytest.raises(ValueError, match="complete shards"):
        mq.merge_inversion(docs)


def test_merge_command_writes_the_summary(tmp_path, capsys):
    files = []
    for d in (shard_doc(0, 2, [0.2, 0.5, 0.4]), shard_doc(1, 2, [0.3, 0.1, 0.6])):
        f = tmp_path / f"inv_{d['shard']}.json"
        f.write_text(json.dumps(d))
        files.append(str(f))
    out = tmp_path / "inv.json"
    assert mq.main(["inversion", "--merge", *files, "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["n"] == 6 and len(doc["values"]) == 6
    assert "median_lpips_alex" in capsys.readouterr().out
