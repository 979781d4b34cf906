"""What a new user meets first: the README's two commands in a fresh clone, in order,
and servers that leave nothing behind (issue 16).
"""
import os
import re
import socket
import stat
import subprocess

import pytest

from mmsctl import server
from mmsctl.config import profiles
from mmsctl.errors import ServerError

from helpers import REPO, free_port

#: seconds each README command may take before the test calls it a hang
COMMAND_LIMIT_S = 900
#: seconds the clone may take
CLONE_LIMIT_S = 120
#: pytest-timeout's limit for the whole test: the clone and three commands at their limits, plus a margin, so
#: the test's own "hung after N s" message (with the command's output) is what a hang reports
NEWCOMER_TIMEOUT_S = CLONE_LIMIT_S + 3 * COMMAND_LIMIT_S + 120


def readme_commands():
    """The commands of the README's "Two commands" block, in order."""
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as handle:
        text = handle.read()
    block = re.search(r"## Two commands.*?```bash\n(.*?)```", text, re.S)
    assert block, "README.md has no '## Two commands' bash block"
    commands = [line.split("#", 1)[0].strip() for line in block.group(1).splitlines() if line.strip()]
    assert len(commands) == 2, commands
    return commands


def special_files(folder):
    """Named pipes and sockets under ``folder`` (found with lstat, never opened)."""
    found = []
    for root, _dirs, names in os.walk(folder):
        for name in names:
            mode = os.lstat(os.path.join(root, name)).st_mode
            if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
                found.append(os.path.relpath(os.path.join(root, name), folder))
    return found


def run_step(words, cwd, env, what):
    """Run one README command; fail with a clear message (and its last output) on a hang or an error."""
    try:
        done = subprocess.run(words, cwd=cwd, env=env, capture_output=True, text=True, timeout=COMMAND_LIMIT_S,
                              stdin=subprocess.DEVNULL, check=False)
    except subprocess.TimeoutExpired as err:
        tail = ((err.stdout or b"") + (err.stderr or b""))
        tail = tail.decode(errors="replace") if isinstance(tail, bytes) else tail
        pytest.fail("%s (`%s`) hung: no end after %d s; its last output:\n%s"
                    % (what, " ".join(words), COMMAND_LIMIT_S, tail[-3000:]))
    output = done.stdout + done.stderr
    assert done.returncode == 0, "%s (`%s`) exited %d:\n%s" % (what, " ".join(words), done.returncode,
                                                              output[-3000:])
    return output


@pytest.mark.slow
@pytest.mark.installs
@pytest.mark.server  # the quickstart starts a server
@pytest.mark.timeout(NEWCOMER_TIMEOUT_S)
def test_readme_commands_in_order_in_a_fresh_clone(tmp_path):
    """Clone, run the README's first command (twice: it must work again), then its second command
    restricted to the fast tests, the way a new user does; the clone keeps nothing but its venv.

    The clone is of the last commit: uncommitted changes are not in it.
    """
    clone = str(tmp_path / "clone")
    subprocess.run(["git", "clone", "-q", REPO, clone], check=True, timeout=CLONE_LIMIT_S)
    env = dict(os.environ, MMSCTL_CACHE_DIR=str(tmp_path / "cache"))
    for key in ("VIRTUAL_ENV", "PYTHONPATH", "MMSCTL_STATE_DIR"):
        env.pop(key, None)
    first, second = (command.split() for command in readme_commands())
    assert first == ["bash", "scripts/quickstart.sh"] and second == ["bash", "scripts/test.sh"]

    output = run_step(first, clone, env, "the README's first command")
    assert "tiger cat" in output and "server stopped" in output, output[-2000:]
    again = run_step(first, clone, env, "the README's first command, run a second time")
    assert "tiger cat" in again and "building" not in again, again[-2000:]
    assert special_files(str(tmp_path / "cache")) == []

    left = subprocess.run(["git", "status", "--porcelain", "--ignored"], cwd=clone, capture_output=True,
                          text=True, check=True).stdout.split("\n")
    state = [line for line in left if line and not re.search(r"(^!! \.venv/$|__pycache__/$|\.egg-info/$)", line)]
    assert state == [], "the quickstart left state inside the repository: %s" % state

    output = run_step(second + ["-q", "-p", "no:cacheprovider", "-m", "unit"], clone, env,
                      "the README's second command")
    assert re.search(r"\d+ passed", output), output[-2000:]


@pytest.mark.unit
def test_a_port_in_use_is_refused_in_one_line_before_anything_starts(tmp_path):
    busy = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", busy))
        taken.listen()
        profile = profiles.build_profile("cpu-latency", vcpus=2, model_store=str(tmp_path),
                                         inference_port=busy, management_port=free_port())
        with pytest.raises(ServerError) as raised:
            server.start(profile, str(tmp_path / "state"), {})
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith("port %d on 127.0.0.1 (the inference API) is not free" % busy)
    assert "`mmsctl stop`" in message and "--inference-port" in message
    assert not os.path.exists(str(tmp_path / "state" / server.STATE_FILE))


@pytest.mark.server
def test_a_stopped_server_leaves_no_pipe_or_socket(servers, model_store):
    state = servers.start(model_store, {"efficientnet-lite0": "efficientnet-lite0.mar"})
    assert special_files(state.state_dir), "a running MMS has worker pipes and sockets in its TEMP"
    server.stop(state)
    assert special_files(state.state_dir) == []
    assert not os.path.exists(os.path.join(state.state_dir, "tmp", ".model_server.pid"))
