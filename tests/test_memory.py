"""Issue 17, memory: the `gis` process's measures (gis.memory) and the streamed catalogue
embedding. What they save is measured in benchmarks/, not here."""

from __future__ import annotations

import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

import gis
from gis.data import load_dataset
from gis.engine.pipeline import embed_catalogue, embed_dataset


def _python(code: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env={**os.environ, **env})


def test_exit_now_runs_the_exit_handlers_flushes_and_keeps_the_status():
    res = _python("import atexit, sys; from gis.memory import exit_now; "
                  "atexit.register(lambda: print('handler ran')); "
                  "sys.stdout.write('buffered '); exit_now(3)")
    assert res.returncode == 3 and res.stdout == "buffered handler ran\n"
    res = _python("from gis.memory import exit_now; exit_now('bad input')")
    assert res.returncode == 1 and res.stderr == "bad input\n"
    assert _python("from gis.memory import exit_now; exit_now(None)").returncode == 0


def test_exit_now_waits_for_a_running_non_daemon_thread():
    # the thread would be killed by an immediate exit: exit_now falls back to sys.exit
    res = _python("import threading, time; from gis.memory import exit_now\n"
                  "def work():\n    time.sleep(0.5); print('thread finished', flush=True)\n"
                  "threading.Thread(target=work).start(); exit_now(4)")
    assert res.returncode == 4 and res.stdout == "thread finished\n"


def test_triton_is_skipped_only_without_cuda():
    code = ("import sys; from gis.memory import skip_triton_without_cuda as s; "
            "import torch; print(s(), torch.cuda.is_available(), "
            "sys.modules.get('triton', 'absent') is None)")
    out = _python(code, CUDA_VISIBLE_DEVICES="").stdout.split()
    assert out == ["True", "False", "True"]
    # asked to keep it: left alone
    out = _python(code, CUDA_VISIBLE_DEVICES="", GIS_KEEP_TRITON="1").stdout.split()
    assert out == ["False", "False", "False"]


def test_release_free_heap_leaves_tensors_intact():
    from gis.memory import release_free_heap

    x = torch.arange(1000.0)
    garbage = [torch.randn(1 << 16) for _ in range(64)]
    del garbage
    assert release_free_heap() is sys.platform.startswith("linux")
    assert torch.equal(x, torch.arange(1000.0))


def test_embed_dataset_equals_the_embedding_of_the_whole_catalogue():
    ds = load_dataset("fashion-colors")
    rec = gis.get_recommender("dvbpr")
    # a catalogue of 700 items: two batches of 512, the last one partial
    sub = SimpleNamespace(images=ds.images[:700],
                          image_tensor=lambda idx=None, **kw: ds.image_tensor(
                              slice(0, 700) if idx is None else
                              slice(idx.start, min(idx.stop, 700)), **kw))
    for value_range in ((-1.0, 1.0), (0.0, 1.0)):
        whole = embed_catalogue(rec, rec.prepare(sub.image_tensor(value_range=value_range),
                                                 value_range))
        streamed = embed_dataset(rec, sub, value_range=value_range)
        assert streamed.shape == (700, whole.shape[1]) and streamed.dtype == torch.float32
        assert torch.equal(streamed, whole)


def test_the_console_script_exits_cleanly_with_stdout_closed():
    # `gis generators >&-`: Python starts with sys.stdout None
    res = subprocess.run([sys.executable, "-c", "from gis.cli import main; main()",
                          "generators"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         text=True, timeout=120, pass_fds=(),
                         preexec_fn=lambda: os.close(1))
    assert res.returncode == 0 and "Traceback" not in res.stderr


@pytest.mark.parametrize("argv,status", [(["--version"], 0), (["no-such-command"], 2)])
def test_the_console_script_exits_with_the_commands_status(argv, status):
    res = subprocess.run([sys.executable, "-c", "from gis.cli import main; main()", *argv],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == status
    assert ("gis, version" in res.stdout) if status == 0 else ("No such command" in res.stderr)
