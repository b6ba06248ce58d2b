"""Every run says what produced it (gis.provenance): weights files with their sha256, layout and
epoch, the operator implementation, the device, torch's thread counts and the versions; and a
run without targets shifts for the default target, all users of the recommender."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import torch
from click.testing import CliRunner

import gis
from gis.cli import cli
from gis.engine.targets import DEFAULT_TARGET
from gis.provenance import file_sha256, model_entry, provenance
from gis.record import ShiftRecord


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_shipped_weights_are_named_with_their_sha256_format_and_layout(small_shift_run):
    out, _ = small_shift_run
    doc = json.loads((out / "result.json").read_text())
    gen, rec = doc["generator"], doc["recommender"]
    assert Path(gen["checkpoint"]).name == "fashion-colors.safetensors"
    assert "gis_progan" in gen["checkpoint"] and "gis_dvbpr" in rec["checkpoint"]
    assert gen["sha256"] == sha256(Path(gen["checkpoint"]))
    assert rec["sha256"] == sha256(Path(rec["checkpoint"]))
    assert (gen["format"], rec["format"], rec["layout"]) == ("gis-progan", "gis.dvbpr", "32")
    assert gen["epoch"] is None and rec["epoch"] is None  # neither file records an epoch
    p = doc["provenance"]
    # the shared run may have been made under a test's one_torch_thread: any count >= 1
    assert p["device"] == "cpu" and p["threads"]["intra_op"] >= 1
    assert p["threads"]["inter_op"] == torch.get_num_interop_threads()
    assert p["ops"]["implementation"] == gis.ops.implementation("cpu")["implementation"]
    assert p["numerics"]["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert doc["versions"]["torch"] == torch.__version__ and doc["versions"]["cpu"]
    assert doc["targets"]["default"] is None  # --users was given
    assert ShiftRecord.from_json(doc).provenance.threads.intra_op == p["threads"]["intra_op"]


def test_an_aip_checkpoint_is_named_with_its_epoch_and_layout(tmp_path):
    """The case of shared/cases/recommender-checkpoint-not-recorded: an AIP-style .tar
    (DataParallel keys, numpy U) is recorded with its path, sha256, epoch and layout."""
    tiny = gis.get_recommender("dvbpr", pretrained=False, layout="128", width=1 / 32, k=4,
                               user_ids=["a", "b", "c"])
    path = tmp_path / "aip_dvbpr.tar"
    torch.save({"epoch": 7, "model_state_dict": {f"module.{k}": v for k, v in
                                                 tiny.cnn.state_dict().items()},
                "optimizer_state_dict": {}, "loss": 0.1, "U": tiny.theta.detach().numpy()},
               path)
    rec = gis.get_recommender("dvbpr", checkpoint=str(path), trust=True)
    entry = model_entry(rec, "dvbpr")
    assert entry["checkpoint"] == str(path.resolve()) and entry["sha256"] == sha256(path)
    assert (entry["epoch"], entry["layout"]) == (7, "128")
    assert entry["format"] == "AIP-style PyTorch DVBPR checkpoint"
    # a randomly initialised model has no weights file: nothing is invented for it
    assert {k: model_entry(tiny, "dvbpr")[k] for k in ("checkpoint", "sha256", "format",
                                                       "layout", "epoch")} == dict.fromkeys(
        ("checkpoint", "sha256", "format", "layout", "epoch"))
    # the digest follows the file's bytes (cached per size and modification time)
    before = file_sha256(path)
    path.write_bytes(path.read_bytes() + b"\0")
    assert file_sha256(path) == sha256(path) != before


def test_provenance_records_threads_ops_and_environment(monkeypatch):
    threads = torch.get_num_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("GIS_OPS", "reference")
    try:
        torch.set_num_threads(1)
        p = provenance("cpu")
    finally:
        torch.set_num_threads(threads)
    assert p.threads.intra_op == 1 and p.threads.environment == {"OMP_NUM_THREADS": "1"}
    assert p.ops["implementation"] == "reference" and p.ops["selected_by"] == "GIS_OPS=reference"
    monkeypatch.delenv("GIS_OPS")
    auto = provenance("cpu").ops
    assert auto["selected_by"] == "auto"
    assert auto["implementation"] == ("native" if gis.ops.native_available("cpu")
                                      else "reference")
    assert (auto["fallback_reason"] is None) == (auto["implementation"] == "native")


def test_another_thread_count_is_recorded(small_shift_run, tmp_path):
    """A rerun with the same seed on another thread count may give other variants
    (docs/ENGINE.md); its record names the count, and nothing else of the provenance changes.
    (Same seed, inputs and thread count repeat bit for bit: tests/test_cli_shift.py.)"""
    threads = torch.get_num_threads()
    other = 1 if threads > 1 else 2
    for name, count in (("a", threads), ("c", other)):
        try:
            torch.set_num_threads(count)
            res = invoke("shift", "--random-latent", "--users", "u0001,u0042", "--steps", "1",
                         "--n", "2", "--quiet", "--out", tmp_path / name)
        finally:
            torch.set_num_threads(threads)
        assert res.exit_code == 0, res.output
    da, dc = (json.loads((tmp_path / d / "result.json").read_text()) for d in ("a", "c"))
    assert (da["provenance"]["threads"]["intra_op"], dc["provenance"]["threads"]["intra_op"]) \
        == (threads, other)
    same = {k: v for k, v in da["provenance"].items() if k != "threads"}
    assert same == {k: v for k, v in dc["provenance"].items() if k != "threads"}


def test_the_report_shows_what_produced_the_run(small_shift_run, tmp_path):
    from gis.report import write_report

    run = tmp_path / "run"
    shutil.copytree(small_shift_run[0], run)
    doc = json.loads((run / "result.json").read_text())
    page = write_report(run).read_text()
    table = page[page.index('id="provenance"'):]
    table = table[:table.index("</table>")]
    for text in (doc["recommender"]["sha256"], doc["generator"]["sha256"],
                 "gis.dvbpr, layout 32", f"{doc['provenance']['threads']['intra_op']} intra-op",
                 doc["provenance"]["ops"]["implementation"]):
        assert text in table, text
    # a record written before gis recorded provenance says so
    del doc["provenance"]
    (run / "result.json").write_text(json.dumps(doc))
    page = write_report(run, tmp_path / "old.html").read_text()
    assert "<th class=\"name\">Device, operators, threads</th><td>not recorded" in page
    assert doc["recommender"]["sha256"] in page  # the weights are still named


def test_no_targets_shifts_for_all_users_of_the_recommender(tmp_path):
    """`gis shift --generator progan --recommender dvbpr` as the design writes it."""
    out = tmp_path / "all"
    res = invoke("shift", "--generator", "progan", "--recommender", "dvbpr", "--out", out,
                 "--steps", "1", "--invert-steps", "1", "--n", "2", "--quiet")
    assert res.exit_code == 0, res.output
    rec = gis.get_recommender("dvbpr")
    first = res.output.splitlines()[0]
    assert first == (f"no --users, --users-file or --n-users: shifting for {DEFAULT_TARGET} "
                     f"({rec.num_users} users of dvbpr, mean aggregation)")
    doc = json.loads((out / "result.json").read_text())
    t = doc["targets"]
    assert t["default"] == DEFAULT_TARGET and t["count"] == rec.num_users == 3000
    assert t["user_ids"] == list(rec.user_ids[:1000]) and t["user_ids_truncated"] is True
    per_user = doc["per_user"]
    assert per_user["truncated_to"] == 1000 and len(per_user["ranks"]) == 1000
    assert len(per_user["scores"]) == 1000
    assert 0 <= per_user["rank_summary"]["share_of_users_whose_best_variant_ranks_higher"] <= 1
    # the aggregates are over all 3000 users, the per-user lists over the first 1000
    base = doc["scores"]["base"]
    assert base["min"] <= min(u["base"] for u in per_user["scores"])
    assert base["min"] <= base["softmin"] <= base["mean"]
