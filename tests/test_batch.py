"""`gis batch`: manifests, segments, task folders identical to `gis shift`'s, failures that do
not stop the others, resuming after kill -9, a local process pool, a real local Ray head, and
the index page in headless Chromium."""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from gis.batch.manifest import read_manifest, task_id
from gis.batch.segments import dataset_segments, read_segments, resolve_segment
from gis.cli import cli
from gis.errors import GisUsageError

# tiny loops: these tests check the plumbing, not the variants
FEW = ["--steps", "2", "--invert-steps", "2", "--n", "3", "--quiet"]
ITEMS = ("train-00024", "train-00027", "train-00050")


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def files_of(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def same_run(a: Path, b: Path) -> None:
    """Two `gis shift` folders hold the same files, byte for byte, but result.json's timings
    and the thread variables of the process's environment (Ray sets OMP_NUM_THREADS in its
    workers) that its provenance records."""
    fa, fb = files_of(a), files_of(b)
    assert sorted(fa) == sorted(fb)
    for name in fa:
        if name == "result.json":
            ja, jb = (json.loads(f[name]) for f in (fa, fb))
            for j in (ja, jb):
                j.pop("seconds")
                j["provenance"]["threads"].pop("environment")
            assert ja == jb
        else:
            assert fa[name] == fb[name], name


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


# ------------------------------------------------------------------------------ manifests
def test_manifest_csv_and_jsonl(tmp_path):
    img = tmp_path / "shoe.png"
    img.write_bytes(b"not read here")
    users = tmp_path / "vip.txt"
    users.write_text("u0001\nu0002\n")
    (tmp_path / "m.csv").write_text(
        "id,item,users,users_file,segment,n_users,steps,lr,recipe\n"
        "a,train-00024,\"u0001;u0002, u0003\",,,,5,0.1,paper\n"
        ",shoe.png,,vip.txt,,,,,\n"
        ",train-00027,,,category:Coat,,,,\n"
        ",train-00050,,,,10,,,\n"
        ",train-00062,,,,,,,\n")
    tasks = read_manifest(tmp_path / "m.csv")
    assert [t.id for t in tasks] == ["a", "0002-shoe", "0003-train-00027", "0004-train-00050",
                                     "0005-train-00062"]
    assert tasks[0].users == ("u0001", "u0002", "u0003")
    assert tasks[0].settings == {"steps": 5, "lr": 0.1, "recipe": "paper"}
    assert tasks[1].image == str(img.resolve()) and tasks[1].item_id is None
    assert tasks[1].users_file == str(users.resolve())
    assert tasks[2].segment == "category:Coat" and tasks[3].n_users == 10
    assert tasks[4].target_text() == "all users"
    assert tasks[3].target_text(5) == "10 random users (seed 5)"
    assert tasks[1].image_as_given == "shoe.png"
    assert [t.line for t in tasks] == [2, 3, 4, 5, 6]
    (tmp_path / "m.jsonl").write_text(
        '{"item_id": "train-00024", "users": ["u0001", "u0002"], "n": 4}\n\n'
        '# a comment\n{"image": "shoe.png", "segment": "all", "seed": 3}\n')
    jt = read_manifest(tmp_path / "m.jsonl")
    assert jt[0].users == ("u0001", "u0002") and jt[0].settings == {"n": 4}
    assert jt[1].image == str(img.resolve()) and jt[1].settings == {"seed": 3}
    assert jt[1].line == 4


@pytest.mark.parametrize("text, message", [
    ("item,colour\n1,red\n", "unknown column(s) colour"),
    ("item,image\n1,x.png\n", "give only one of item, image"),
    ("users\nu1\n", "exactly one of item, item_id, image"),
    ("item,users,n_users\n1,u1,3\n", "give only one target of users, n_users"),
    ("item,steps\n1,many\n", "steps must be a whole number (got 'many')"),
    ("item,n_users\n1,0\n", "n_users must be >= 1"),
    ("item\nmissing.png\n", "image 'missing.png' not found"),
    ("id,item\nx,1\nx,2\n", "task id 'x' is also on line 2"),
    ("id,item\n../up,1\n", "must be a folder name"),
    ("id,item\n.hidden,1\n", "must not start with '.'"),
    ("id,item\n" + "a" * 121 + ",1\n", "is 121 characters long: at most 120"),
    ("item,n\n1,3.5\n", "n must be a whole number (got '3.5')"),
    ("item\n", "holds no task"),
    ('item,users\n1,u1\n"unterminated,u0002\n2,u3\n', "line 4: unexpected end of data (a "
                                                       "quote left open?)"),
])
def test_manifest_errors_name_the_line(tmp_path, text, message):
    path = tmp_path / "m.csv"
    path.write_text(text)
    with pytest.raises(GisUsageError) as err:
        read_manifest(path)
    assert message in str(err.value) and "\n" not in str(err.value)
    bad = tmp_path / "m.jsonl"
    bad.write_text('{"item": "1"}\n[1, 2]\n')
    with pytest.raises(GisUsageError, match=r"line 2: each line must be a JSON object"):
        read_manifest(bad)


def test_task_ids_are_safe_folder_names():
    assert task_id(7, "shoes/red shoe.JPG") == "0007-shoes_red_shoe.JPG"
    assert task_id(1, "../..") == "0001-item"


# ------------------------------------------------------------------------------ segments
def test_dataset_segments_follow_the_interactions():
    from gis.data import load_dataset

    ds = load_dataset("fashion-colors")
    seg = dataset_segments(ds)
    assert seg["all"] == list(ds.user_ids)
    cats = [k for k in seg if k.startswith("category:")]
    assert cats and all(k[len("category:"):] in ds.category_names for k in cats)
    members = [u for k in cats for u in seg[k]]
    assert len(members) == len(set(members))  # a user is in one category segment at most
    row = {u: i for i, u in enumerate(ds.user_ids)}
    items = ds.user_items()
    for k in cats[:3]:
        c = ds.category_names.index(k[len("category:"):])
        for u in seg[k][:20]:
            counts = np.bincount(ds.categories[items[row[u]]], minlength=len(ds.category_names))
            assert counts.argmax() == c


def test_segments_file_and_unknown_segment(tmp_path):
    path = tmp_path / "seg.csv"
    path.write_text("User ID,Segment\nu0001,vip\nu0002,vip\nu0003,new\n")
    seg = read_segments(path)
    assert seg == {"vip": ["u0001", "u0002"], "new": ["u0003"]}
    with pytest.raises(GisUsageError, match="unknown segment 'vp'; known segments: new, vip"):
        resolve_segment("vp", seg)
    (tmp_path / "bad.csv").write_text("user_id,group\nu1,a\n")
    with pytest.raises(GisUsageError, match="needs the columns user_id and segment"):
        read_segments(tmp_path / "bad.csv")


# ------------------------------------------------------------------------------ batches
@pytest.fixture(scope="module")
def batch_run(tmp_path_factory):
    """One in-process batch (2 tasks: a user list, a segment) with its `gis shift` twins."""
    root = tmp_path_factory.mktemp("batch")
    manifest = root / "m.csv"
    manifest.write_text(f"item,users,segment\n{ITEMS[0]},u0001;u0042,\n"
                        f"{ITEMS[1]},,category:Coat\n")
    res = invoke("batch", "--manifest", manifest, "--out", root / "out", "--workers", 1, *FEW)
    assert res.exit_code == 0, res.output
    return root, res.output


def test_batch_folders_are_what_gis_shift_writes(batch_run, tmp_path):
    from gis.batch.segments import dataset_segments
    from gis.data import load_dataset

    root, output = batch_run
    out = root / "out"
    assert sorted(p.name for p in (out / "tasks").iterdir()) == [f"0001-{ITEMS[0]}",
                                                                 f"0002-{ITEMS[1]}"]
    res = invoke("shift", "--item-id", ITEMS[0], "--users", "u0001,u0042", "--out",
                 tmp_path / "s0", *FEW)
    assert res.exit_code == 0, res.output
    same_run(out / "tasks" / f"0001-{ITEMS[0]}", tmp_path / "s0")
    coat = dataset_segments(load_dataset("fashion-colors"))["category:Coat"]
    doc = json.loads((out / "tasks" / f"0002-{ITEMS[1]}" / "result.json").read_text())
    assert doc["targets"]["user_ids"] == sorted(coat, key=coat.index)[:1000]
    assert "2 of 2 tasks done" in output and "index.html" in output
    # a report per task; batch.json records the definition and the command
    assert sorted(p.name for p in (out / "reports").iterdir()) == [
        f"0001-{ITEMS[0]}.html", f"0002-{ITEMS[1]}.html"]
    record = json.loads((out / "batch.json").read_text())
    assert record["format"] == "gis-batch/1"
    assert record["command"].startswith("gis batch --manifest ") and "--workers 1" in \
        record["command"]
    assert [t["item_id"] for t in record["tasks"]] == list(ITEMS[:2])


def test_summary_csv_matches_the_records(batch_run):
    from gis.record import ShiftRecord
    from gis.report.summary import summarise

    out = batch_run[0] / "out"
    table = read_csv(out / "summary.csv")
    assert len(table) == 2 and {r["status"] for r in table} == {"done"}
    gains = [float(r["best_gain"]) if r["best_gain"] else -np.inf for r in table]
    assert gains == sorted(gains, reverse=True)  # highest gain first
    for r in table:
        rec = ShiftRecord.from_json(json.loads(
            (out / "tasks" / r["task"] / "result.json").read_text()))
        s = summarise(rec)
        assert r["n_users"] == str(rec.targets.count)
        assert r["passing"] == f"{sum(rec.checks.passed)}/{len(rec.checks.passed)}"
        # the batch's workers run the category check against the dataset's catalogue
        cat = rec.checks.category["passed"]
        assert cat is not None and r["same_category"] == f"{sum(cat)}/{len(cat)}"
        assert float(r["inversion_lpips"]) == pytest.approx(rec.inversion.lpips_vgg, abs=1e-6)
        assert r["base_is_item"] == str(rec.checks.base["faithful"])
        if s.recommended is None:
            assert r["recommended_variant"] == "" and r["beats_reference"] == "False"
            continue
        k = s.recommended
        assert int(r["recommended_variant"]) == k
        assert float(r["best_gain"]) == pytest.approx(s.v_scores[k] - s.item[s.agg], abs=1e-6)
        assert float(r["rank_change"]) == s.ranks.median_ref - s.ranks.median_variants[k]


def test_same_command_again_does_nothing(batch_run):
    root, _ = batch_run
    out = root / "out"
    before = {p: p.stat().st_mtime_ns for p in (out / "tasks").glob("*/result.json")}
    report = out / "reports" / f"0001-{ITEMS[0]}.html"
    page = report.read_bytes()
    report.unlink()  # as a run stopped between the task's folder and its report leaves it
    res = invoke("batch", "--manifest", root / "m.csv", "--out", out, "--workers", 1, *FEW)
    assert res.exit_code == 0, res.output
    assert {p: p.stat().st_mtime_ns for p in before} == before
    assert report.read_bytes() == page
    # another batch, or a folder gis did not write, is refused before any work
    res = invoke("batch", "--manifest", root / "m.csv", "--out", out, "--workers", 1,
                 *FEW[:4], "--n", "4", "--quiet")
    assert res.exit_code == 2, res.output
    assert "holds a batch run with other options (n: 3 -> 4)" in res.output
    foreign = root / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep")
    res = invoke("batch", "--items", 1, "--out", foreign, *FEW)
    assert res.exit_code == 2 and "is not a gis batch folder" in res.output
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]


def test_a_failing_task_does_not_stop_the_others(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"item,users\n{ITEMS[0]},u0001\nno-such-item,u0001\nbroken.png,u0001\n"
                        f"{ITEMS[1]},nobody\n")
    out = tmp_path / "out"
    res = invoke("batch", "--manifest", manifest, "--out", out, "--workers", 1, *FEW)
    assert res.exit_code == 1, res.output
    assert "Traceback" not in res.output
    assert "3 of 4 tasks failed" in res.output
    assert [p.name for p in (out / "tasks").iterdir()] == [f"0001-{ITEMS[0]}"]
    failed = {p.stem: json.loads(p.read_text()) for p in (out / "failed").iterdir()}
    assert sorted(failed) == ["0002-no-such-item", "0003-broken", f"0004-{ITEMS[1]}"]
    assert "unknown item id 'no-such-item'" in failed["0002-no-such-item"]["error"]
    assert "broken.png" in failed["0003-broken"]["error"]
    assert "nobody" in failed[f"0004-{ITEMS[1]}"]["error"]
    assert all("\n" not in f["error"] and "traceback" not in f for f in failed.values())
    table = read_csv(out / "summary.csv")
    assert [r["status"] for r in table] == ["done", "failed", "failed", "failed"]
    assert table[1]["error"] == failed[table[1]["task"]]["error"]
    # a failed dataset item still shows its category; an image file or unknown id has none
    from gis.data import load_dataset

    ds = load_dataset("fashion-colors")
    _, k = ds.find_item(ITEMS[1])
    category = {r["task"]: r["category"] for r in table}
    assert category[f"0004-{ITEMS[1]}"] == ds.category_names[int(ds.categories[k])]
    assert category["0002-no-such-item"] == category["0003-broken"] == ""
    # again: only the failed tasks run again (the finished folder is not rewritten)
    done = out / "tasks" / f"0001-{ITEMS[0]}" / "result.json"
    stamp = done.stat().st_mtime_ns
    manifest.write_text(manifest.read_text())  # same definition
    res = invoke("batch", "--manifest", manifest, "--out", out, "--workers", 1, *FEW)
    assert res.exit_code == 1 and done.stat().st_mtime_ns == stamp
    # a failed task's row may be fixed; a finished task's may not
    manifest.write_text(manifest.read_text().replace("nobody", "u0002"))
    res = invoke("batch", "--manifest", manifest, "--out", out, "--workers", 1, *FEW)
    assert res.exit_code == 1 and "2 of 4 tasks failed" in res.output
    assert (out / "tasks" / f"0004-{ITEMS[1]}" / "result.json").is_file()
    assert not (out / "failed" / f"0004-{ITEMS[1]}.json").exists()
    assert read_csv(out / "summary.csv")[-1]["status"] == "failed"
    manifest.write_text(manifest.read_text().replace(f"{ITEMS[0]},u0001", f"{ITEMS[0]},u0003"))
    res = invoke("batch", "--manifest", manifest, "--out", out, "--workers", 1, *FEW)
    assert res.exit_code == 2 and (f"task 0001-{ITEMS[0]} is finished but the manifest now "
                                   'defines it otherwise (users.0: "u0001" -> "u0003")') \
        in res.output


def test_impossible_settings_fail_before_any_output(tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"item,n_users,n\n{ITEMS[0]},2,0\n")
    res = invoke("batch", "--manifest", manifest, "--out", tmp_path / "out", *FEW[:-3])
    assert res.exit_code == 2 and "Traceback" not in res.output, res.output
    assert f"{manifest}, line 2, task 0001-{ITEMS[0]}: n must be an integer from 2" in \
        res.output.replace("\n", "")
    assert not (tmp_path / "out").exists()
    # a manifest row's unknown segment names the file and line too
    manifest.write_text(f"item,segment\n{ITEMS[0]},category:Nope\n")
    res = invoke("batch", "--manifest", manifest, "--out", tmp_path / "out", *FEW)
    assert res.exit_code == 2 and f"{manifest}, line 2, task 0001-{ITEMS[0]}: unknown " \
        "segment 'category:Nope'" in res.output.replace("\n", ""), res.output
    assert not (tmp_path / "out").exists()
    # --loss-option reaches every task, and a misspelt term is refused before any output
    manifest.write_text(f"item,n_users\n{ITEMS[0]},2\n")
    res = invoke("batch", "--manifest", manifest, "--out", tmp_path / "out",
                 "--loss-option", "distnct.reduction=pairs", *FEW)
    assert res.exit_code == 2 and "'distnct' is not a term of the shifting objective" in \
        res.output.replace("\n", ""), res.output
    assert not (tmp_path / "out").exists()
    # the command line's own impossible setting is not blamed on a manifest line
    manifest.write_text(f"item,n_users\n{ITEMS[0]},2\n")
    res = invoke("batch", "--manifest", manifest, "--out", tmp_path / "out", "--n", 1)
    assert res.exit_code == 2 and res.output.startswith("Error: n must be an integer from 2")
    assert not (tmp_path / "out").exists()
    res = invoke("batch", "--items", 2, "--users", "nobody", "--out", tmp_path / "out", *FEW)
    assert res.exit_code == 2 and "unknown user id 'nobody'" in res.output
    assert not (tmp_path / "out").exists()
    res = invoke("batch", "--items", 2, "--segment", "category:Nope", "--out",
                 tmp_path / "out", *FEW)
    assert res.exit_code == 2 and "unknown segment 'category:Nope'" in res.output
    assert not (tmp_path / "out").exists()
    res = invoke("batch", "--items", 2, "--manifest", manifest, "--out", tmp_path / "out")
    assert res.exit_code == 2 and "either --manifest FILE or --items" in res.output
    res = invoke("batch", "--items", 2, "--users", ",", "--out", tmp_path / "out")
    assert res.exit_code == 2 and "the target user set is empty" in res.output
    res = invoke("batch", "--items", 2, "--workers", 0, "--out", tmp_path / "out")
    assert res.exit_code == 2 and "--workers must be >= 1" in res.output
    assert not (tmp_path / "out").exists()


def _gis(*args) -> list[str]:
    return [sys.executable, "-c", "from gis.cli import main; main()", *map(str, args)]


def test_an_edited_users_or_segments_file_is_another_batch(tmp_path):
    from gis.batch.manifest import BatchTask
    from gis.batch.runner import ModelSpec, create_out, definition, read_out

    users, segs = tmp_path / "users.txt", tmp_path / "segments.csv"
    users.write_text("u0001\nu0002\n")
    segs.write_text("segment,user\nvip,u0001\n")
    task = BatchTask(id="0001-a", line=0, item_id="train-00024", users_file=str(users))
    options = {"steps": 2, "segments_file": str(segs)}
    out = tmp_path / "out"
    defn = definition(ModelSpec(), options, [task])
    assert defn["tasks"][0]["users_file_sha256"] == __import__("hashlib").sha256(
        users.read_bytes()).hexdigest()
    create_out(out, defn)
    (out / "tasks" / task.id).mkdir(parents=True)
    (out / "tasks" / task.id / "result.json").write_text("{}")
    assert read_out(out, definition(ModelSpec(), options, [task])).done == {task.id}
    # the same path, other users: the finished task is not this task any more
    users.write_text("u0003\n")
    with pytest.raises(GisUsageError, match="task 0001-a is finished but the manifest now "
                                            "defines it otherwise \\(users_file_sha256"):
        read_out(out, definition(ModelSpec(), options, [task]))
    users.write_text("u0001\nu0002\n")
    segs.write_text("segment,user\nvip,u0002\n")
    with pytest.raises(GisUsageError, match="other options \\(segments_file_sha256"):
        read_out(out, definition(ModelSpec(), options, [task]))
    # a batch.json written before gis hashed the files still resumes
    old = json.loads((out / "batch.json").read_text())
    old["options"].pop("segments_file_sha256")
    old["tasks"][0].pop("users_file_sha256")
    (out / "batch.json").write_text(json.dumps(old))
    assert read_out(out, definition(ModelSpec(), options, [task])).done == {task.id}


def test_settings_that_restate_the_recipe_are_the_same_batch(tmp_path):
    """`--n 8` under the seller recipe (n = 8) is the batch without `--n`; a task's own
    setting that restates the batch's is the task without it; an older batch.json that
    recorded such a restatement still resumes."""
    from gis.batch.manifest import BatchTask
    from gis.batch.runner import ModelSpec, canonical_options, create_out, definition, read_out

    assert canonical_options({"n": 8, "seed": 0, "recipe": "seller", "steps": 2,
                              "losses": ["distinct=1"], "category": "Coat"}) == {
        "steps": 2, "category": "Coat"}
    assert canonical_options({"n": 4, "recipe": "paper"}) == {"n": 4, "recipe": "paper"}
    assert canonical_options({"n": 4}, base={"n": 4}) == {}
    assert canonical_options({"n": 8}, base={"n": 4}) == {"n": 8}
    assert canonical_options({"n": 0}) == {"n": 0}  # impossible: refused later, as given
    assert canonical_options({"min_distance": 0.02}) == {}  # the check's default
    # seller's 150 steps is no restatement for a task that runs the paper recipe (300)
    assert canonical_options({"steps": 150}, overlays=[{}, {"recipe": "paper"}]) == {
        "steps": 150}
    paper = BatchTask(id="0002-p", line=0, item_id="train-00027", settings={"recipe": "paper"})
    ran = tmp_path / "ran"
    create_out(ran, definition(ModelSpec(), {"steps": 150}, [paper]))
    (ran / "tasks" / paper.id).mkdir(parents=True)
    (ran / "tasks" / paper.id / "result.json").write_text("{}")
    with pytest.raises(GisUsageError, match=r"other options \(steps: 150 -> the default\)"):
        read_out(ran, definition(ModelSpec(), {}, [paper]))
    task = BatchTask(id="0001-a", line=0, item_id="train-00024", settings={"eps": 0.4})
    out = tmp_path / "out"
    create_out(out, definition(ModelSpec(), {"n": 8, "steps": 2, "seed": 0}, [task]))
    (out / "tasks" / task.id).mkdir(parents=True)
    (out / "tasks" / task.id / "result.json").write_text("{}")
    plain = BatchTask(id="0001-a", line=0, item_id="train-00024")
    assert read_out(out, definition(ModelSpec(), {"steps": 2}, [plain])).done == {task.id}
    with pytest.raises(GisUsageError, match=r"other options \(n: the default -> 7\)"):
        read_out(out, definition(ModelSpec(), {"steps": 2, "n": 7}, [plain]))
    changed = BatchTask(id="0001-a", line=0, item_id="train-00024", settings={"eps": 0.3})
    with pytest.raises(GisUsageError, match="task 0001-a is finished but the manifest now "
                                            "defines it otherwise"):
        read_out(out, definition(ModelSpec(), {"steps": 2}, [changed]))


def test_a_changed_recipe_definition_is_another_batch(tmp_path, monkeypatch):
    """batch.json records each recipe the batch runs as this gis defines it: a later gis
    whose seller recipe changed refuses to resume (one batch never mixes two versions of a
    recipe); a task's own recipe is recorded too; a batch.json without the record resumes."""
    from gis.batch.manifest import BatchTask
    from gis.batch.runner import ModelSpec, create_out, definition, read_out
    from gis.engine import settings as settings_mod

    task = BatchTask(id="0001-a", line=0, item_id="train-00024")
    paper = BatchTask(id="0002-p", line=0, item_id="train-00027", settings={"recipe": "paper"})
    defn = definition(ModelSpec(), {"steps": 2}, [task, paper])
    assert set(defn["recipes"]) == {"seller", "paper"}
    assert defn["recipes"]["seller"]["shift"]["loss_options"]["distinct"]["reduction"] == \
        "nearest"
    out = tmp_path / "out"
    create_out(out, defn)
    (out / "tasks" / task.id).mkdir(parents=True)
    (out / "tasks" / task.id / "result.json").write_text("{}")
    assert read_out(out, definition(ModelSpec(), {"steps": 2}, [task, paper])).done == {task.id}
    seller = settings_mod.RECIPES["seller"]
    changed = {**seller, "loss_options": {**seller["loss_options"],
                                          "distinct": {**seller["loss_options"]["distinct"],
                                                       "reduction": "pairs"}}}
    monkeypatch.setitem(settings_mod.RECIPES, "seller", changed)
    with pytest.raises(GisUsageError, match=r"started under another definition of recipe "
                       r"'seller' \(shift\.loss_options\.distinct\.reduction: \"nearest\" -> "
                       r"\"pairs\"\): resume it with the gis version that started it"):
        read_out(out, definition(ModelSpec(), {"steps": 2}, [task, paper]))
    # a batch.json written before gis recorded the recipes resumes under the current ones
    old = json.loads((out / "batch.json").read_text())
    old.pop("recipes")
    (out / "batch.json").write_text(json.dumps(old))
    assert read_out(out, definition(ModelSpec(), {"steps": 2}, [task, paper])).done == {task.id}


def test_loss_option_reaches_every_task(tmp_path):
    """`gis batch --loss-option` is `gis shift --loss-option` for every task (result.json
    records it), and batch.json keeps it among the batch-wide options."""
    out = tmp_path / "out"
    res = invoke("batch", "--items", 1, "--n-users", 2, "--out", out, "--workers", 1,
                 "--loss-option", "distinct.reduction=pairs", *FEW)
    assert res.exit_code == 0, res.output
    doc = json.loads((out / "tasks" / f"0001-{ITEMS[0]}" / "result.json").read_text())
    assert doc["settings"]["loss_options"]["distinct"]["reduction"] == "pairs"
    assert json.loads((out / "batch.json").read_text())["options"]["loss_options"] == [
        "distinct.reduction=pairs"]


def test_items_load_the_recommender_once(tmp_path, monkeypatch):
    import gis.plugins

    calls = []
    real = gis.plugins.get_recommender
    monkeypatch.setattr(gis.plugins, "get_recommender",
                        lambda *a, **k: calls.append(a) or real(*a, **k))
    res = invoke("batch", "--items", 1, "--n-users", 2, "--out", tmp_path / "out",
                 "--workers", 1, *FEW)
    assert res.exit_code == 0, res.output
    assert len(calls) == 1 and (tmp_path / "out" / "tasks" / "0001-train-00024").is_dir()


def test_resume_after_kill_9(tmp_path):
    """kill -9 in the middle of a batch; the same command again finishes only the rest."""
    out = tmp_path / "out"
    cmd = _gis("batch", "--items", 4, "--n-users", 2, "--out", out, "--workers", 1,
               "--threads", 1, *FEW)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    log = tmp_path / "stderr.txt"
    with open(log, "wb") as err:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.monotonic() + 300
        def whole():  # pathlib's "*" also matches the hidden partial folder being written
            return [p for p in (out / "tasks").glob("*/result.json")
                    if not p.parent.name.startswith(".")]

        while not whole():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finished = {p.parent.name: p.stat().st_mtime_ns for p in whole()}
    assert 1 <= len(finished) < 4
    # only whole task folders are visible (a hidden partial one may remain: it is swept)
    visible = [p for p in (out / "tasks").iterdir() if not p.name.startswith(".")]
    assert sorted(p.name for p in visible) == sorted(finished)
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    assert "4 of 4 tasks done" in res.stdout
    assert {k: (out / "tasks" / k / "result.json").stat().st_mtime_ns for k in finished} \
        == finished
    ids = [t["id"] for t in json.loads((out / "batch.json").read_text())["tasks"]]
    assert sorted(p.name for p in (out / "tasks").iterdir()) == ids  # no partial one left
    assert len(read_csv(out / "summary.csv")) == 4


@pytest.fixture(scope="module")
def one_thread_reference(tmp_path_factory):
    """Two tasks run in process on one torch thread: what a pool or Ray worker of one thread
    computes."""
    out = tmp_path_factory.mktemp("ref") / "out"
    res = invoke("batch", "--items", 2, "--users", "u0001,u0002", "--out", out, "--workers", 1,
                 "--threads", 1, *FEW)
    import torch

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    assert res.exit_code == 0, res.output
    return out


def test_local_pool_of_two_workers(one_thread_reference, tmp_path):
    out = tmp_path / "out"
    res = subprocess.run(_gis("batch", "--items", 2, "--users", "u0001,u0002", "--out", out,
                              "--workers", 2, "--threads", 1, *FEW),
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    assert "leaked" not in res.stderr and "Traceback" not in res.stderr
    for task in (one_thread_reference / "tasks").iterdir():
        same_run(task, out / "tasks" / task.name)


def _workers_of(pid: int) -> list[int]:
    """The pool worker processes (multiprocessing spawn children) of process ``pid``."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    out = []
    for c in map(int, children):
        try:
            if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes():
                out.append(c)
        except OSError:
            pass
    return out


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
def test_unwritable_task_folder_and_deleted_failed_row(tmp_path, monkeypatch):
    """A task whose folder cannot be written fails with its item's category in the summary;
    deleting a failed task's manifest row removes its failure record on the next run."""
    import gis.batch.runner as runner
    from gis.data import load_dataset

    real = runner.atomic_folder

    def full_disk(path, **kw):
        if path.name.endswith(ITEMS[1]):
            raise OSError(28, "No space left on device")
        return real(path, **kw)

    monkeypatch.setattr(runner, "atomic_folder", full_disk)
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"item,users\n{ITEMS[0]},u0001\n{ITEMS[1]},u0001\n")
    out = tmp_path / "out"
    res = invoke("batch", "--manifest", manifest, "--out", out, "--workers", 1, *FEW)
    assert res.exit_code == 1 and "1 of 2 tasks failed" in res.output, res.output
    failed = out / "failed" / f"0002-{ITEMS[1]}.json"
    entry = json.loads(failed.read_text())
    assert entry["error"].startswith("cannot write its folder: ") and "No space" in entry["error"]
    ds = load_dataset("fashion-colors")
    _, k = ds.find_item(ITEMS[1])
    assert entry["category"] == ds.category_names[int(ds.categories[k])]
    row = read_csv(out / "summary.csv")[1]
    assert row["status"] == "failed" and row["category"] == entry["category"]
    # the user deletes the failed row: its record goes, the finished task stays
    done = out / "tasks" / f"0001-{ITEMS[0]}" / "result.json"
    manifest.write_text(f"item,users\n{ITEMS[0]},u0001\n")
    res = invoke("batch", "--manifest", manifest, "--out", out, "--workers", 1, *FEW)
    assert res.exit_code == 0, res.output
    assert not failed.exists() and done.is_file()
    assert [r["status"] for r in read_csv(out / "summary.csv")] == ["done"]


def test_pool_survives_a_dead_worker_and_ends_with_the_driver(tmp_path):
    """A worker killed mid-task: the pool starts again and every task finishes. The driver
    killed with kill -9: its workers end too (they hold the models, ~1 GB each)."""
    cmd = _gis("batch", "--items", 3, "--users", "u0001,u0002", "--out", tmp_path / "a",
               "--workers", 2, "--threads", 1, *FEW)
    with open(tmp_path / "a.log", "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 300
        while len(_workers_of(proc.pid)) < 2:
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        time.sleep(2)  # the workers are loading the models or running their first tasks
        os.kill(_workers_of(proc.pid)[0], signal.SIGKILL)
        assert proc.wait(timeout=600) == 0, (tmp_path / "a.log").read_text()
    assert "3 of 3 tasks done" in (tmp_path / "a.log").read_text()
    cmd = _gis("batch", "--items", 3, "--users", "u0001,u0002", "--out", tmp_path / "b",
               "--workers", 2, "--threads", 1, *FEW)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while len(_workers_of(proc.pid)) < 2:
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.1)
    workers = _workers_of(proc.pid)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 30
    while any(_alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(w) for w in workers)


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
def test_ctrl_c_on_a_pool_leaves_no_leaked_semaphores(tmp_path):
    """Ctrl-C while two workers run tasks: exit 130, the rest left to a later run, and no
    "leaked semaphore objects" warning (a terminated worker's multiprocessing locks)."""
    out = tmp_path / "out"
    cmd = _gis("batch", "--items", 8, "--users", "u0001,u0002", "--out", out, "--workers", 2,
               "--threads", 1, "--steps", 40, "--invert-steps", 20, "--n", 3, "--quiet")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    while not list((out / "tasks").glob("*/result.json")) if (out / "tasks").is_dir() else True:
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    output = proc.communicate(timeout=120)[0].decode()
    assert proc.returncode == 130, output
    assert "run the same command again to finish the rest" in output
    assert "leaked" not in output and "Traceback" not in output, output


def test_ctrl_c_that_surfaces_as_another_error_is_still_a_stop(tmp_path, monkeypatch):
    """SIGINT while Python initialises a C extension (matplotlib's, imported lazily by a
    task's report) surfaces as ``ImportError: initialization failed`` raised from the
    KeyboardInterrupt (seen in CI): still exit 130, the resume hint, no traceback."""
    import gis.batch.commands as commands

    def interrupted_import(*args, **kwargs):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as exc:
            raise ImportError("initialization failed") from exc

    monkeypatch.setattr(commands, "execute", interrupted_import)
    res = invoke("batch", "--items", 2, "--users", "u0001", "--out", tmp_path / "out", *FEW)
    assert res.exit_code == 130, res.output
    assert "run the same command again to finish the rest" in res.output
    assert res.output.strip().splitlines()[-1] == "Interrupted (SIGINT).", res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)


def test_a_task_cut_by_ctrl_c_is_a_stop_not_a_failed_task():
    """Inside a task (one worker: in the driver's process) an error a stop caused is the stop:
    raised, not recorded as a failed task while the batch carries on; any other error is a
    failed task (review)."""
    from gis.batch.manifest import BatchTask
    from gis.batch.runner import TaskWorker
    from gis.interrupts import Stopped

    worker = TaskWorker.__new__(TaskWorker)  # no models: _run is replaced
    task = BatchTask(id="0001-x", line=0, image="/nowhere.png")

    def cut(signal_error):
        def run(_task):
            try:
                raise signal_error
            except KeyboardInterrupt as exc:
                raise ImportError("initialization failed") from exc
        return run

    worker._run = cut(KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        worker.run(task)
    worker._run = cut(Stopped(signal.SIGTERM))
    with pytest.raises(Stopped) as err:
        worker.run(task)
    assert err.value.signum == signal.SIGTERM
    worker._run = lambda _task: 1 / 0
    outcome = worker.run(task)
    assert outcome.error == "ZeroDivisionError: division by zero" and outcome.traceback


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


#: a loopback-only test cluster: no usage statistics, no token (the driver and the head share
#: this environment)
RAY_ENV = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}


@pytest.fixture
def ray_head(tmp_path):
    """A real Ray head on loopback (`ray start --head`), stopped after the test."""
    try:
        import ray  # noqa: F401
    except ImportError:
        msg = "the Ray test needs Ray: pip install ray (or bash scripts/install.sh --test)"
        if os.environ.get("GIS_REQUIRE_RAY") == "1":
            pytest.fail(msg)
        pytest.skip(msg)
    ray_bin = Path(sys.executable).with_name("ray")
    port = _free_port()
    start = subprocess.run(
        [str(ray_bin), "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port),
         "--num-cpus", "2", "--include-dashboard", "false", "--disable-usage-stats"],
        capture_output=True, text=True, env=RAY_ENV, timeout=180)
    assert start.returncode == 0, start.stdout + start.stderr
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([str(ray_bin), "stop", "--force"], capture_output=True, env=RAY_ENV,
                       timeout=120)


def test_ray_cluster_on_loopback(ray_head, one_thread_reference, tmp_path):
    out = tmp_path / "out"
    res = subprocess.run(_gis("batch", "--items", 2, "--users", "u0001,u0002", "--out", out,
                              "--ray", ray_head, *FEW),
                         capture_output=True, text=True, timeout=600,
                         env=RAY_ENV)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "2 of 2 tasks done" in res.stdout
    for task in (one_thread_reference / "tasks").iterdir():
        same_run(task, out / "tasks" / task.name)
    index = (out / "index.html").read_text()
    assert f"Ray ({ray_head})" in index


def test_ray_unreachable_is_one_line(tmp_path):
    pytest.importorskip("ray")
    res = subprocess.run(_gis("batch", "--items", 1, "--users", "u0001", "--out",
                              tmp_path / "out", "--ray", f"127.0.0.1:{_free_port()}", *FEW),
                         capture_output=True, text=True, timeout=300, env=RAY_ENV)
    assert res.returncode == 2, res.stderr
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: cannot join the Ray cluster at") and "ray start" in last
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------ index page
def test_index_page_text(batch_run):
    out = batch_run[0] / "out"
    html = (out / "index.html").read_text()
    table = read_csv(out / "summary.csv")
    positions = [html.index(f'id="task-{r["task"]}"') for r in table]
    assert positions == sorted(positions)  # ranked as summary.csv is
    for r in table:
        assert f'href="reports/{r["task"]}.html"' in html
        assert f'src="tasks/{r["task"]}/item.png"' in html
        row = html[html.index(f'id="task-{r["task"]}"'):]
        row = row[:row.index("</tr>")]
        # a variant is shown as the recommendation only when it beats the item
        assert ("keep the item" in row) == (r["beats_reference"] != "True")
        # a task whose base is not the item says so beside the inversion's LPIPS
        assert ("base-not-item" in row) == (r["base_is_item"] == "False")


def test_index_marks_a_task_whose_base_is_not_the_item(tmp_path):
    from gis.batch.summary import COLUMNS, write_index

    row = {c: "" for c in COLUMNS}
    row.update(task="0001-x", item="x", status="done", recommended_variant="",
               beats_reference=False, inversion_lpips=0.31, base_is_item=False, seconds=1.0)
    html = write_index(tmp_path, [row, {**row, "task": "0002-y", "base_is_item": True}],
                       title="t", header=[], pending=0).read_text()
    first, second = html.split('id="task-0002-y"')
    assert "base-not-item" in first and "not the item" in first
    assert "base-not-item" not in second


@pytest.mark.chromium
def test_index_page_in_headless_chromium(chrome, batch_run):
    from selenium.webdriver.common.by import By

    out = batch_run[0] / "out"
    table = read_csv(out / "summary.csv")
    chrome.get((out / "index.html").resolve().as_uri())
    rows = chrome.find_elements(By.CSS_SELECTOR, "#tasks tr.task-row")
    assert [r.get_attribute("id") for r in rows] == [f"task-{r['task']}" for r in table]
    imgs = chrome.find_elements(By.CSS_SELECTOR, "#tasks img")
    expected = sum(1 + (r["recommended_variant"] != "") for r in table)
    assert len(imgs) == expected
    for img in imgs:
        complete, natural = chrome.execute_script(
            "return [arguments[0].complete, arguments[0].naturalWidth]", img)
        assert complete and natural > 0, img.get_attribute("src")
        assert img.size["width"] >= 48
    links = chrome.find_elements(By.CSS_SELECTOR, "a.report-link")
    assert len(links) == len(table)
    target = links[0].get_attribute("href")
    chrome.get(target)
    assert chrome.find_element(By.ID, "title").text.startswith("Product variants")
