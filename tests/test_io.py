"""gis.io: atomic files and folders, the JSON encoder, the trust and output-folder checks."""

from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import torch

from gis.errors import GisUsageError, UntrustedFileError
from gis.io import (
    JSONEncoder,
    atomic_folder,
    atomic_path,
    check_output_folder,
    require_trust,
    storage_full,
    write_bytes,
    write_json,
)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_atomic_file_write_replaces_whole_or_not_at_all(tmp_path):
    path = tmp_path / "a" / "page.html"
    write_bytes(path, b"first")
    assert path.read_bytes() == b"first"
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~_umask()  # not mkstemp's 0600
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("interrupted")
    assert path.read_bytes() == b"first"
    assert sorted(p.name for p in path.parent.iterdir()) == ["page.html"]


def test_atomic_path_keeps_the_suffix_for_writers_that_check_it(tmp_path):
    path = tmp_path / "features.npy"
    with atomic_path(path) as tmp:
        np.save(tmp, np.arange(3))  # np.save appends .npy to any other name
    np.testing.assert_array_equal(np.load(path), np.arange(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["features.npy"]


def test_atomic_folder_leaves_nothing_behind_on_exception(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(RuntimeError), atomic_folder(out) as tmp:
        (tmp / "result.json").write_text("{}")
        (tmp / "sub").mkdir()
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []

    with atomic_folder(out) as tmp:
        (tmp / "result.json").write_text('{"command": "shift"}')
    assert stat.S_IMODE(out.stat().st_mode) == 0o777 & ~_umask()
    with pytest.raises(GisUsageError, match="already exists: pass --overwrite"):
        with atomic_folder(out):
            pass
    with pytest.raises(RuntimeError), atomic_folder(out, overwrite=True) as tmp:
        (tmp / "grid.png").write_text("new")
        raise RuntimeError("interrupted")
    assert [p.name for p in tmp_path.iterdir()] == ["run"]
    assert [p.name for p in out.iterdir()] == ["result.json"]
    with atomic_folder(out, overwrite=True) as tmp:
        (tmp / "grid.png").write_text("new")
    assert [p.name for p in tmp_path.iterdir()] == ["run"]
    assert [p.name for p in out.iterdir()] == ["grid.png"]


class SafetensorError(Exception):
    """As safetensors' Rust writer raises a full disk: not an OSError."""


@pytest.mark.parametrize("error", [
    OSError(errno.ENOSPC, "No space left on device"),  # PIL, numpy, open()
    OSError(errno.EDQUOT, "Disk quota exceeded"),
    SafetensorError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, '
                    'message: "No space left on device" })'),
])
def test_a_full_disk_is_a_one_line_error_and_leaves_the_old_folder(tmp_path, error):
    """A write that fails for lack of room (a new user's trial: `gis shift` onto a full
    tmpfs printed safetensors' traceback): one line naming the folder and the reason, and
    what was there before is kept."""
    out = tmp_path / "run"
    with atomic_folder(out) as tmp:
        (tmp / "result.json").write_text('{"command": "shift"}')
    with pytest.raises(GisUsageError) as err, atomic_folder(out, overwrite=True) as tmp:
        (tmp / "base.png").write_bytes(b"x")
        raise error
    msg = str(err.value)
    assert msg.startswith(f"cannot write {out} (") and "choose another --out" in msg
    assert ("quota" in msg) == (error.args[0] == errno.EDQUOT) and "\n" not in msg
    assert [p.name for p in tmp_path.iterdir()] == ["run"]
    assert (out / "result.json").read_text() == '{"command": "shift"}'
    assert storage_full(RuntimeError("wrapped")) is None
    cache = OSError(errno.ENOSPC, "No space left on device", "/elsewhere/cache/lpips.pth")
    assert storage_full(cache) == "No space left on device"
    assert storage_full(cache, where=tmp_path) is None  # a full cache is not the output's
    with pytest.raises(OSError), atomic_folder(tmp_path / "other2") as tmp:
        raise cache
    with pytest.raises(OSError), atomic_folder(tmp_path / "other") as tmp:
        raise OSError(errno.EACCES, "Permission denied")  # not a full disk: as it was


def test_an_empty_output_folder_made_beforehand_is_used_without_overwrite(tmp_path):
    """`mkdir out && gis shift --out out`: nothing to lose, so no --overwrite needed (a new
    user's trial); a folder with a file in it still needs --overwrite."""
    out = tmp_path / "made"
    out.mkdir()
    out.chmod(0o2770)  # made for a group: filled in place, its mode (and owner) kept
    inode = out.stat().st_ino
    with atomic_folder(out) as tmp:
        assert tmp.parent == out  # the temporary folder is made inside it
        (tmp / "result.json").write_text('{"command": "shift"}')
        (tmp / "sub").mkdir()
    assert sorted(p.name for p in out.iterdir()) == ["result.json", "sub"]
    assert stat.S_IMODE(out.stat().st_mode) == 0o2770 and out.stat().st_ino == inode
    with pytest.raises(GisUsageError, match="already exists: pass --overwrite"):
        check_output_folder(out)
    # a symlink to an empty folder: the files go to its target, the link stays
    target = tmp_path / "target"
    target.mkdir()
    link = tmp_path / "link"
    link.symlink_to(target)
    with atomic_folder(link) as tmp:
        (tmp / "grid.png").write_text("x")
    assert link.is_symlink() and [p.name for p in target.iterdir()] == ["grid.png"]
    # an error inside the block leaves the empty folder empty and in place
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(RuntimeError), atomic_folder(empty) as tmp:
        (tmp / "base.png").write_text("x")
        raise RuntimeError("interrupted")
    assert empty.is_dir() and list(empty.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "link", "made", "target"]


def test_output_folder_check(tmp_path):
    assert check_output_folder(tmp_path / "new") == tmp_path / "new"
    assert check_output_folder(tmp_path) == tmp_path  # empty: nothing to replace
    (tmp_path / "mine.txt").write_text("x")
    with pytest.raises(GisUsageError, match="already exists"):
        check_output_folder(tmp_path)
    (tmp_path / "mine.txt").unlink()
    assert check_output_folder(tmp_path, overwrite=True) == tmp_path
    (tmp_path / "file").write_text("x")
    with pytest.raises(GisUsageError, match="is not a folder"):
        check_output_folder(tmp_path / "file", overwrite=True)
    # run folders filled over time: an empty one is fine, a used one only with --resume
    (tmp_path / "empty").mkdir()
    assert check_output_folder(tmp_path / "empty", resume=False)
    with pytest.raises(GisUsageError, match="not empty: pass --resume"):
        check_output_folder(tmp_path, resume=False)
    assert check_output_folder(tmp_path, resume=True) == tmp_path


def test_trust_check(tmp_path):
    x = tmp_path / "x.pt"
    torch.save({"w": torch.zeros(2)}, x)
    require_trust(x, trust=True, what="ProGAN checkpoint")
    with pytest.raises(UntrustedFileError, match=r"x.pt is a pickle-based ProGAN checkpoint: "
                       r"loading it can run arbitrary code. Pass --trust .* or convert it"):
        require_trust(x, trust=False, what="ProGAN checkpoint",
                      hint="convert it to a .safetensors file")
    # a legacy (pickle) torch.save file and a .npy are pickle-based too
    legacy = tmp_path / "legacy.pt"
    torch.save({"w": 1}, legacy, _use_new_zipfile_serialization=False)
    npy = tmp_path / "d.npy"
    np.save(npy, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    for f in (legacy, npy):
        with pytest.raises(UntrustedFileError):
            require_trust(f, trust=False, what="checkpoint")
    # a file that cannot be one is named as such, trusted or not: nobody is asked to trust it
    junk = tmp_path / "x.jpg"
    junk.write_bytes(bytes([0xE9, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06]))
    for trust in (False, True):
        with pytest.raises(GisUsageError, match=r"x.jpg is not a ProGAN checkpoint: it is "
                           r"neither a torch.save file \(zip or pickle\) nor a .npy file"):
            require_trust(junk, trust=trust, what="ProGAN checkpoint")
    with pytest.raises(GisUsageError, match="cannot read .*missing.pt"):
        require_trust(tmp_path / "missing.pt", trust=True, what="ProGAN checkpoint")


def test_json_encoder(tmp_path):
    doc = {"i": np.int64(3), "f": np.float32(0.5), "b": np.bool_(True), "a": np.arange(2),
           "t": torch.tensor([1.0, 2.0]), "s": torch.tensor(4), "p": Path("x/y"),
           "d": torch.device("cpu"), "dt": torch.float16, "set": {"b", "a"}}
    path = write_json(tmp_path / "r.json", doc)
    text = path.read_text()
    assert text.endswith("}\n") and text.startswith('{\n  "i": 3')
    assert json.loads(text) == {"i": 3, "f": 0.5, "b": True, "a": [0, 1], "t": [1.0, 2.0],
                                "s": 4, "p": "x/y", "d": "cpu", "dt": "torch.float16",
                                "set": ["a", "b"]}
    with pytest.raises(TypeError, match="not JSON-serialisable: object"):
        json.dumps({"o": object()}, cls=JSONEncoder)
