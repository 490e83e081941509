"""Output places: every -o the file system refuses is one OutputError line; a device or FIFO the user names is
written through and stays what it was; and no file the user did not name is ever overwritten."""

from __future__ import annotations

import os
import stat
import threading

import pytest
from bad_input import refused, untouched

from unetinspect.errors import OutputError
from unetinspect.render import diagram_view as graph_module
from unetinspect.render.export import write_output

COMMANDS = [["summary", "tiny"], ["diagram", "tiny"], ["profile", "tiny", "--device", "cpu", "--repeat", "1"]]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
@pytest.mark.parametrize("where,words", [
    ("/proc/unetinspect-test.json", "no new files are made in /proc"),
    ("{tmp}/a-file/out.json", "is a file, not a folder"),
    ("{tmp}/" + "x" * 300 + ".json", "File name too long"),
    ("{tmp}/missing/out.json", "does not exist"),
], ids=["proc", "parent-is-a-file", "name-too-long", "missing-folder"])
def test_unwritable_places(command, where, words, tmp_path, invoke):
    (tmp_path / "a-file").write_text("keep")
    refused(invoke, tmp_path, *command, "-o", where.format(tmp=tmp_path), words=words)


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder(tmp_path, invoke):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        refused(invoke, tmp_path, "summary", "tiny", "-o", folder / "out.txt", words="ermission denied")
    finally:
        folder.chmod(0o700)


def _null_device(tmp_path):
    """A character device like /dev/null, made in tmp_path (never touching the real /dev): needs root."""
    path = tmp_path / "null"
    try:
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("making a device node needs root")
    return path


def test_a_device_is_written_through_not_replaced(tmp_path, invoke):
    null = _null_device(tmp_path)
    result = invoke("summary", "tiny", "-f", "json", "-o", null)
    assert result.exit_code == 0, result.stderr
    assert stat.S_ISCHR(os.stat(null).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["null"]


def test_a_full_device_is_a_clean_error(tmp_path, invoke):
    full = tmp_path / "full"
    try:
        os.mknod(full, 0o666 | stat.S_IFCHR, os.makedev(1, 7))
    except PermissionError:
        pytest.skip("making a device node needs root")
    refused(invoke, tmp_path, "summary", "tiny", "-o", full, words="No space left on device")
    assert stat.S_ISCHR(os.stat(full).st_mode)


def test_a_fifo_without_reader_is_refused(tmp_path, invoke):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    refused(invoke, tmp_path, "summary", "tiny", "-o", fifo, words="no program is reading")


def test_a_fifo_with_a_reader_gets_the_output(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(open(fifo, "rb").read()), daemon=True)
    reader.start()
    for _ in range(100):  # the reader must have the FIFO open before we write
        try:
            write_output(fifo, "hello\n")
            break
        except OutputError:
            threading.Event().wait(0.05)
    reader.join(timeout=10)
    assert received == [b"hello\n"] and stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_other_special_files_are_refused(tmp_path, invoke):
    import socket

    path = tmp_path / "sock"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))
        refused(invoke, tmp_path, "summary", "tiny", "-o", path, words="a socket")


def test_diagram_fallback_never_overwrites_a_dot_file(tmp_path, invoke, monkeypatch):
    monkeypatch.setattr(graph_module.shutil, "which", lambda name: None)
    (tmp_path / "unet.dot").write_text("mine")
    message = refused(invoke, tmp_path, "diagram", "tiny", "-o", tmp_path / "unet.svg", words="not installed")
    assert "not written" in message
    assert (tmp_path / "unet.dot").read_text() == "mine"


def test_diagram_fallback_writes_a_new_dot_file(tmp_path, invoke, monkeypatch):
    monkeypatch.setattr(graph_module.shutil, "which", lambda name: None)
    result = invoke("diagram", "tiny", "-o", tmp_path / "unet.svg")
    assert result.exit_code == 1 and "wrote" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["unet.dot"]


def test_library_write_output_raises_output_error(tmp_path):
    (tmp_path / "f").write_text("x")
    with untouched(tmp_path, "library: write_output under a file"):
        with pytest.raises(OutputError):
            write_output(tmp_path / "f" / "g.json", "{}")
