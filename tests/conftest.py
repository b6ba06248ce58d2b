import os
import shutil

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


@pytest.fixture(scope="session")
def chrome():
    """A headless Chromium driven by selenium, or a skip (a failure with GIS_REQUIRE_CHROMIUM=1).

    Requested before the run fixtures, so a machine without Chromium skips before any work."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    try:
        import selenium  # noqa: F401
    except ImportError:
        selenium_ok = False
    else:
        selenium_ok = True
    missing = [name for name, ok in (("chromium", browser), ("chromedriver", driver),
                                     ("selenium", selenium_ok)) if not ok]
    if missing:
        msg = (f"headless Chromium test needs {', '.join(missing)}: run `apt-get install "
               "chromium chromium-driver` and `pip install selenium` (or "
               "`bash scripts/install.sh --test`)")
        if os.environ.get("GIS_REQUIRE_CHROMIUM") == "1":
            pytest.fail(msg)
        pytest.skip(msg)
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,2400"):
        options.add_argument(arg)
    browser = webdriver.Chrome(service=Service(executable_path=driver), options=options)
    try:
        browser.set_page_load_timeout(20)
        yield browser
    finally:
        browser.quit()
