import os

import pytest
import torch

os.environ.setdefault("GIS_TEST", "1")
torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def small_shift_run(tmp_path_factory):
    """One real `gis shift` on the shipped models with few steps, shared by the test modules
    (read-only: copy it before changing anything). Returns (folder, CLI output)."""
    from click.testing import CliRunner

    from gis.cli import cli

    out = tmp_path_factory.mktemp("shared-runs") / "run"
    res = CliRunner().invoke(cli, ["shift", "--generator", "progan", "--recommender", "dvbpr",
                                   "--users", "u0001,u0042", "--out", str(out), "--steps", "3",
                                   "--invert-steps", "2", "--n", "3", "--quiet"],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return out, res.output
