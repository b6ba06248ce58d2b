import pytest
import torch

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture
def one_torch_thread():
    """torch on one thread during the test: tiny networks run faster, timings are steadier on
    a busy machine (``pytestmark = pytest.mark.usefixtures("one_torch_thread")``)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def small_shift_run(tmp_path_factory):
    """One real `gis shift` on the shipped models with few steps, shared by the test modules
    (read-only: copy it before changing anything). Returns (folder, CLI output)."""
    from click.testing import CliRunner

    from gis.cli import cli

    out = tmp_path_factory.mktemp("shared-runs") / "run"
    res = CliRunner().invoke(cli, ["shift", "--generator", "progan", "--recommender", "dvbpr",
                                   "--users", "u0001,u0042", "--out", str(out), "--steps", "3",
                                   "--invert-steps", "2", "--n", "3", "--quiet",
                                   # 3 steps barely move the variants: no "visible change"
                                   # check, so that the run recommends one
                                   "--min-distance", "0"],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return out, res.output
