"""`gis shift` / `gis invert` / `gis design` end to end on the shipped models (few steps)."""

from __future__ import annotations

import json
import re

import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from safetensors.torch import load_file

from gis.cli import cli

FEW = ["--steps", "3", "--invert-steps", "2", "--n", "3", "--quiet"]


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def shift_run(small_shift_run):
    return small_shift_run


def test_shift_writes_the_documented_files(shift_run):
    out, output = shift_run
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(["item.png", "base.png", "grid.png", "result.json",
                            "latents.safetensors", "variant_00.png", "variant_01.png",
                            "variant_02.png"])
    with Image.open(out / "variant_00.png") as im:
        assert im.size == (32, 32)
    lat = load_file(str(out / "latents.safetensors"))
    assert lat["shifts"].shape == (3, 512) and float(lat["shifts"].abs().max()) <= 0.4 + 1e-6
    doc = json.loads((out / "result.json").read_text())
    assert doc["item"]["default"] is True and doc["targets"]["user_ids"] == ["u0001", "u0042"]
    assert set(doc["scores"]["base"]) == {"mean", "min", "softmin", "coverage"}
    assert len(doc["scores"]["variants"]) == 3
    ranks = doc["per_user"]["ranks"]
    assert len(ranks) == 2 and len(ranks[0]["variants"]) == 3 and ranks[0]["item"] >= 1
    assert doc["bridge"]["resize"] == "none" and doc["catalogue_size"] == 6000
    assert doc["category"] is None  # progan is unconditional
    assert "variants for 2 target user(s)" in output
    assert f"-> {out} (docs/OUTPUTS.md); `gis report {out}`" in output
    dist = doc["distances"]
    assert dist["metric"] == "lpips-alex"
    for key in ("to_base", "to_item", "nearest_variant", "nearest_variant_index"):
        assert len(dist[key]) == 3, key
    assert all(0 <= v < 1 for v in dist["to_base"] + dist["to_item"] + dist["nearest_variant"])
    assert all(j != i and 0 <= j < 3 for i, j in enumerate(dist["nearest_variant_index"]))
    assert 0 <= dist["base_to_item"] < 1 and dist["mean_pairwise"] >= min(dist["nearest_variant"])
    best = max(range(3), key=lambda i: doc["scores"]["variants"][i]["mean"])
    assert f"LPIPS {dist['to_item'][best]:.3f} from the item" in output
    assert f"mean pairwise LPIPS {dist['mean_pairwise']:.3f}" in output


def test_same_seed_same_outputs_on_cpu(shift_run, tmp_path):
    out, _ = shift_run
    again = tmp_path / "again"
    # the shared run may have been made under another test's thread count: use the same
    threads = json.loads((out / "result.json").read_text())["provenance"]["threads"]["intra_op"]
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        res = invoke("shift", "--users", "u0001,u0042", "--out", again, *FEW)
    finally:
        torch.set_num_threads(before)
    assert res.exit_code == 0, res.output
    a = load_file(str(out / "latents.safetensors"))
    b = load_file(str(again / "latents.safetensors"))
    for k in a:
        assert (a[k] == b[k]).all(), k
    for i in range(3):  # same seed, inputs and thread count: bit for bit
        name = f"variant_{i:02d}.png"
        assert (out / name).read_bytes() == (again / name).read_bytes(), name
    da, db = (json.loads((d / "result.json").read_text()) for d in (out, again))
    assert da["scores"] == db["scores"] and da["per_user"] == db["per_user"]
    assert da["provenance"] == db["provenance"]  # the thread count, ops path, device, ...


def test_existing_output_folder_is_refused(shift_run):
    out, _ = shift_run
    before = (out / "result.json").read_text()
    res = CliRunner().invoke(cli, ["shift", "--users", "u0001", "--out", str(out), *FEW])
    assert res.exit_code == 2 and "already exists" in res.output
    assert (out / "result.json").read_text() == before


@pytest.mark.parametrize("args, message", [
    (["--users", "nobody"], "unknown user id 'nobody': this recommender knows 3000 users (e.g. u0000, u0001, u0002); list them with `gis data users fashion-colors --top 0`"),
    (["--users", ","], "empty"),
    (["--users", "u0001", "--n", "1"], "n must be an integer from 2"),
    (["--users", "u0001", "--n", "1000"], "to 64 (memory grows with n squared), got 1000"),
    (["--users", "u0001", "--eps", "0"], "eps must be a finite number > 0"),
    (["--users", "u0001", "--eps", "inf"], "eps must be a finite number > 0 (got inf)"),
    (["--users", "u0001", "--lr", "inf"], "shifting lr must be a finite number > 0 (got inf)"),
    (["--users", "u0001", "--min-distance", "inf"],
     "min_distance (--min-distance) is a finite LPIPS distance >= 0, got inf"),
    (["--users", "u0001", "--steps", "0"], "shifting steps must be a positive integer"),
    (["--users", "u0001", "--invert-steps", "0"], "inversion steps must be a positive integer"),
    (["--users", "u0001", "--item-id", "nope"], "unknown item id 'nope'"),
    (["--users", "u0001", "--recommender", "nope"], "unknown recommender 'nope'"),
    (["--users", "u0001", "--category", "Bag"], "progan is unconditional: drop --category"),
    (["--users", "u0001", "--generator", "dvbpr-gan", "--random-latent"],
     "dvbpr-gan is class-conditional: pass --category (one of T-shirt/top, Trouser"),
    (["--users", "u0001", "--generator", "dvbpr-gan", "--category", "Hat"],
     "unknown category 'Hat'"),
    (["--users", "u0001", "--loss", "nope=1"], "unknown loss 'nope'; available: "),
    (["--users", "u0001", "--loss", "distnct=0"], "unknown loss 'distnct'; available: "),
    (["--users", "u0001", "--loss", "mse=1"],
     "loss 'mse' cannot join the shifting objective: it is made for inversion"),
    (["--users", "u0001", "--invert-loss", "lpips=0", "--invert-loss", "mse=0"],
     "the inversion needs a loss term of weight > 0"),
])
def test_bad_input_is_a_one_line_error_and_writes_nothing(tmp_path, args, message):
    out = tmp_path / "out"
    res = CliRunner().invoke(cli, ["shift", "--out", str(out), "--quiet", *args])
    assert res.exit_code == 2, res.output
    assert message in res.output and "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) == 1
    assert not out.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("option", ["--loss", "--invert-loss"])
def test_malformed_loss_weights_are_one_line_errors(tmp_path, option):
    for value in ("identity=abc", "identity", "=1", "identity=-1", "mse=inf", "mse=nan"):
        res = CliRunner().invoke(cli, ["shift", "--users", "u0001", "--out",
                                       str(tmp_path / "o"), option, value, "--quiet"])
        assert res.exit_code == 2, res.output
        assert res.output.strip().splitlines() == [
            f"Error: {option} takes NAME=WEIGHT with a number WEIGHT >= 0 (0 switches the term "
            f"off), got {value!r}"]
    assert list(tmp_path.iterdir()) == []


def test_loss_terms_and_weights_from_the_command_line(tmp_path):
    """--loss / --invert-loss merge into the recipe's terms (0 switches one off); the run
    records the weights, and each term's history."""
    res = invoke("shift", "--users", "u0001", "--out", tmp_path / "a", "--recipe", "paper",
                 "--loss", "shift_ce=0", "--loss", "identity=0.5", "--invert-loss", "lpips=0",
                 *FEW)
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "a" / "result.json").read_text())
    assert doc["settings"]["losses"] == {"shift_mae": 1.0, "preference": 1.0, "identity": 0.5}
    assert list(doc["history"]) == ["mae", "pref", "identity", "total"]
    assert all(v > 0 for v in doc["history"]["identity"][1:])
    assert doc["invert_settings"]["losses"] == {"mse": 1.0}
    assert set(doc["inversion"]["history"]) == {"mse", "total"}
    res = invoke("shift", "--users", "u0001", "--out", tmp_path / "b", "--recipe",
                 "official-code", "--loss", "shift_ce=0.3", *FEW)
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "b" / "result.json").read_text())
    assert doc["settings"]["losses"] == {"shift_ce": 0.3, "shift_mae": 1.0, "preference": 1.0}


def test_bad_item_files(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image at all")
    for item in (bad, tmp_path / "missing.jpg"):
        res = CliRunner().invoke(cli, ["shift", "--item", str(item), "--users", "u0001",
                                       "--out", str(tmp_path / "o"), "--quiet"])
        assert res.exit_code == 2 and "Traceback" not in res.output, res.output
        assert not (tmp_path / "o").exists()


def test_item_file_and_random_latent(tmp_path):
    img = tmp_path / "shoe.png"
    Image.new("RGBA", (50, 40), (200, 30, 30, 255)).save(img)  # RGBA, not square
    res = invoke("shift", "--item", img, "--users", "u0003", "--out", tmp_path / "a", *FEW)
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "a" / "result.json").read_text())
    assert doc["item"] == {"source": "file", "path": str(img)}
    res = invoke("shift", "--random-latent", "--n-users", "5", "--out", tmp_path / "b", *FEW)
    assert res.exit_code == 0, res.output
    assert not (tmp_path / "b" / "item.png").exists()
    doc = json.loads((tmp_path / "b" / "result.json").read_text())
    assert doc["item"]["source"] == "random latent" and doc["targets"]["count"] == 5


def test_conditional_generator_shifts_under_the_items_category(tmp_path):
    res = invoke("shift", "--generator", "dvbpr-gan", "--item-id", "train-12830", "--users",
                 "u0001", "--out", tmp_path / "a", *FEW)  # the default item: a T-shirt
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "a" / "result.json").read_text())
    assert doc["item"]["category"] == "T-shirt/top"
    assert doc["category"] == {"index": 0, "name": "T-shirt/top"}
    # the category check asks the variants for the class the generator shifted under
    assert doc["checks"]["category"]["of"] == "class asked for"
    assert doc["checks"]["category"]["reference"] == "T-shirt/top"
    res = invoke("shift", "--generator", "dvbpr-gan", "--random-latent", "--category", "7",
                 "--users", "u0001", "--out", tmp_path / "b", *FEW)
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "b" / "result.json").read_text())
    assert doc["category"] == {"index": 7, "name": "Sneaker"}
    assert doc["checks"]["category"]["reference"] == "Sneaker"
    assert all(ok == (v == "Sneaker") for ok, v in zip(doc["checks"]["category"]["passed"],
                                                     doc["checks"]["category"]["values"],
                                                     strict=True))


def test_device_the_machine_lacks_is_a_one_line_error(tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    res = CliRunner().invoke(cli, ["shift", "--users", "u0001", "--device", "cuda",
                                   "--out", str(tmp_path / "o"), "--quiet"])
    assert res.exit_code == 2, res.output
    assert "device 'cuda' requested" in res.output and "pass --device cpu" in res.output
    assert len(res.output.strip().splitlines()) == 1 and not (tmp_path / "o").exists()
    res = CliRunner().invoke(cli, ["shift", "--users", "u0001", "--device", "tpu9",
                                   "--out", str(tmp_path / "o"), "--quiet"])
    assert res.exit_code == 2 and "unknown device 'tpu9'" in res.output, res.output


def test_invert_and_design(tmp_path):
    res = invoke("invert", "--steps", "2", "--out", tmp_path / "inv", "--quiet")
    assert res.exit_code == 0, res.output
    assert {p.name for p in (tmp_path / "inv").iterdir()} == {
        "item.png", "base.png", "grid.png", "latents.safetensors", "result.json"}
    res = invoke("design", "--user", "u0001", "--category", "Sneaker", "--n", "4",
                 "--steps", "2", "--out", tmp_path / "d", "--quiet")
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "d" / "result.json").read_text())
    assert doc["category"]["name"] == "Sneaker" and len(doc["scores"]) == 4
    res = CliRunner().invoke(cli, ["design", "--user", "u0001", "--category", "Hat",
                                   "--out", str(tmp_path / "e"), "--quiet"])
    assert res.exit_code == 2 and "unknown category 'Hat'" in res.output
    res = CliRunner().invoke(cli, ["design", "--user", "u0001", "--category", "Sneaker",
                                   "--generator", "progan", "--out", str(tmp_path / "f"),
                                   "--quiet"])
    assert res.exit_code == 2 and not (tmp_path / "f").exists()
    assert "progan is unconditional" in res.output and "dvbpr-gan" in res.output
    res = CliRunner().invoke(cli, ["design", "--user", "u0001", "--category", "Sneaker",
                                   "--eta", "-1", "--out", str(tmp_path / "g"), "--quiet"])
    assert res.exit_code == 2 and not (tmp_path / "g").exists()
    assert "design needs a finite eta >= 0" in res.output
    doc = json.loads((tmp_path / "inv" / "result.json").read_text())
    assert doc["generator"]["options"] == {}
    assert doc["dataset"] == {"name": "fashion-colors", "options": {}}
    # --overwrite replaces the folders gis wrote (and only those: tests/test_out_folders.py)
    res = invoke("invert", "--steps", "2", "--out", tmp_path / "inv", "--overwrite", "--quiet")
    assert res.exit_code == 0, res.output
    res = invoke("design", "--user", "u0001", "--category", "Sneaker", "--n", "2", "--steps",
                 "1", "--out", tmp_path / "d", "--overwrite", "--quiet")
    assert res.exit_code == 0, res.output
    assert len(json.loads((tmp_path / "d" / "result.json").read_text())["scores"]) == 2


def test_options_are_recorded_and_a_run_without_a_win_says_so(tmp_path, monkeypatch):
    from gis.engine import pipeline
    from gis.report import write_report

    real = pipeline.run_gis

    def item_beats_every_variant(**kwargs):  # e.g. a badly inverted item
        run = real(**kwargs)
        run.item_scores = {a: 100.0 for a in run.item_scores}
        return run

    monkeypatch.setattr(pipeline, "run_gis", item_beats_every_variant)
    out = tmp_path / "run"
    args = ["shift", "--users", "u0001", "--out", out, "--generator-option", "clamp=false",
            "--dataset-option", "resolution=16", *FEW]
    res = invoke(*args)
    assert res.exit_code == 0, res.output
    # no variant passes the checks, or none that does beats the item: keep it, either way
    assert any(line.startswith("  WARNING: no variant") and "keep the item" in line
               for line in res.output.splitlines()), res.output
    doc = json.loads((out / "result.json").read_text())
    assert doc["generator"]["name"] == "progan" and doc["generator"]["options"] == {"clamp": False}
    assert doc["recommender"]["options"] == {}
    assert doc["dataset"] == {"name": "fashion-colors", "options": {"resolution": 16}}
    text = write_report(out).read_text(encoding="utf-8")
    assert ('<div class="callout warning" id="recommended">' in text
            and re.search(r"<strong>No variant[^<]*: keep the item\.</strong>", text))
    assert "Recommended: Variant" not in text
    assert "progan, trained on fashion-colors (checkpoint fashion-colors.safetensors), options " \
           "clamp=false" in text
    assert '<tr><th class="name">options</th><td>clamp: false</td></tr>' in text
    assert 'id="settings-dataset"><tr><th class="name">name</th><td>fashion-colors</td></tr>' \
           '<tr><th class="name">options</th><td>resolution: 16</td></tr>' in text
    res = invoke(*args, "--overwrite")  # a gis shift folder with its report: gis's to replace
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


@pytest.mark.parametrize("args, message", [
    (["shift", "--n", "abc"], "Error: Invalid value for '--n': 'abc' is not a valid integer. "
                              "See 'gis shift --help'."),
    (["shift", "--bogus"], "Error: No such option '--bogus'."),
    (["nope"], "Error: No such command 'nope'. See 'gis --help'."),
    (["--bogus"], "Error: No such option '--bogus'. See 'gis --help'."),
    (["data", "--bogus"], "Error: No such option '--bogus'. See 'gis data --help'."),
])
def test_click_usage_errors_are_one_line(args, message):
    res = CliRunner().invoke(cli, args, prog_name="gis")
    assert res.exit_code == 2
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), res.output


def test_the_recommenders_folder_dataset_is_never_looked_up_in_the_current_folder(
        tmp_path, monkeypatch):
    """A recommender trained on a folder dataset records only its name ("shop"): without
    --data, gis asks for the folder instead of loading whatever ./shop is (another catalogue)
    or saying "unknown dataset" (a new user's trial). A registered name is still the
    default."""
    from types import SimpleNamespace

    from gis.engine.commands import _dataset_for
    from gis.errors import GisUsageError

    monkeypatch.chdir(tmp_path)
    (tmp_path / "shop" / "images").mkdir(parents=True)
    shop_rec = SimpleNamespace(card=SimpleNamespace(dataset_name="shop"))
    with pytest.raises(GisUsageError, match=r"trained on 'shop' \(its model card\), which is "
                                            r"not a registered dataset: pass .* with --data"):
        _dataset_for(shop_rec, None, False)
    fc_rec = SimpleNamespace(card=SimpleNamespace(dataset_name="fashion-colors"))
    assert _dataset_for(fc_rec, None, False).meta["name"] == "fashion-colors"


def test_an_item_id_is_recorded_as_the_catalogue_spells_it():
    """`--item-id TRAIN-00024` (case, as ids match) is recorded as the catalogue's
    'train-00024', so result.json and the report name the real item (a new user's trial)."""
    from gis.data import load_dataset
    from gis.engine.commands import _load_item

    ds = load_dataset("fashion-colors")
    x, source = _load_item(None, " TRAIN-00024 ", ds, 32)
    assert source["item_id"] == "train-00024" and x.shape == (1, 3, 32, 32)
