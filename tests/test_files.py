"""Named pipes and sockets where mmsctl reads or walks: every reader refuses them at
once and every walker skips them, never blocking in open() (issue 16: a test walking
the quickstart's server folder sat in the kernel's fifo_open for 600 s).

Each call runs in a thread with a deadline, so a regression fails with a message
instead of hanging the suite.
"""
import os
import socket
import threading

import pytest

from mmsctl import bench, cli, files
from mmsctl.bench import soak
from mmsctl.archives import builder, mar
from mmsctl.archives.errors import InvalidInput
from mmsctl.client import PredictionError, predict
from mmsctl.errors import UsageError

pytestmark = pytest.mark.unit

DEADLINE_S = 10.0


def finishes(call, *args, **kwargs):
    """Run ``call`` in a thread; its result, or the exception it raised. Fails the test
    if it is still running after DEADLINE_S (blocked in open() on a pipe)."""
    outcome = {}

    def target():
        try:
            outcome["value"] = call(*args, **kwargs)
        except BaseException as err:  # handed back to the test below
            outcome["error"] = err

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(DEADLINE_S)
    if thread.is_alive():
        pytest.fail("%s blocked for %.0f s: it opened a named pipe" % (getattr(call, "__name__", call), DEADLINE_S))
    return outcome


@pytest.fixture
def fifo(tmp_path):
    path = str(tmp_path / "pipe")
    os.mkfifo(path)
    return path


def test_open_regular_refuses_a_pipe_at_once(fifo):
    error = finishes(files.read_regular, fifo)["error"]
    assert isinstance(error, files.NotARegularFile) and error.strerror == "is a named pipe, not a regular file"


def test_open_regular_refuses_a_folder_and_reads_a_file(tmp_path):
    assert finishes(files.read_regular, str(tmp_path))["error"].strerror == "is a folder, not a regular file"
    (tmp_path / "a.bin").write_bytes(b"abc")
    assert files.read_regular(str(tmp_path / "a.bin")) == b"abc"


def test_regular_files_skips_pipes_sockets_links_and_folders(tmp_path):
    (tmp_path / "a.py").write_text("x = 1\n")
    os.mkfifo(str(tmp_path / "b.py"))
    os.symlink(str(tmp_path / "a.py"), str(tmp_path / "c.py"))
    (tmp_path / "d").mkdir()
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(tmp_path / "e.sock"))
        assert finishes(files.regular_files, str(tmp_path))["value"] == ["a.py"]


def test_handler_sources_skip_a_pipe_in_the_handler_folder(tmp_path):
    (tmp_path / "base.py").write_text("x = 1\n")
    os.mkfifo(str(tmp_path / "stray.py"))
    sources = finishes(builder.handler_sources, str(tmp_path))["value"]
    assert sources == {"%s/base.py" % builder.HANDLER_PACKAGE: b"x = 1\n"}


def test_synset_that_is_a_pipe_is_refused(fifo):
    error = finishes(builder.read_synset, fifo, 3)["error"]
    assert isinstance(error, InvalidInput) and "named pipe" in str(error)


def test_inspect_of_a_pipe_is_one_line(fifo, capsys):
    assert isinstance(finishes(mar.describe, fifo)["error"], InvalidInput)
    assert finishes(cli.main, ["archive", "inspect", fifo])["value"] == 1
    err = capsys.readouterr().err.strip()
    assert err == "mmsctl: error: archive %s is a named pipe, not a regular file" % fifo


@pytest.mark.parametrize("reader, error", [(bench.read_input, bench.BenchError), (soak.read_body, UsageError)])
def test_request_body_readers_refuse_a_pipe(fifo, reader, error):
    raised = finishes(reader, fifo)["error"]
    assert isinstance(raised, error) and "named pipe" in str(raised)


def test_predict_refuses_a_pipe_before_connecting(fifo):
    raised = finishes(predict, "http://127.0.0.1:9", "m", [fifo])["error"]
    assert isinstance(raised, PredictionError) and "named pipe" in str(raised)


def test_remove_special_files_keeps_regular_files(tmp_path):
    (tmp_path / "sub").mkdir()
    os.mkfifo(str(tmp_path / "sub" / "x-stdout"))
    (tmp_path / "keep.log").write_text("log\n")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(tmp_path / ".mms.sock.9000"))
    assert files.remove_special_files(str(tmp_path)) == 2
    assert sorted(os.listdir(tmp_path)) == ["keep.log", "sub"] and os.listdir(tmp_path / "sub") == []
