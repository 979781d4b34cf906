"""Helpers shared by the test modules (import them: ``from helpers import free_port``)."""
import os
import random
import socket

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_TAKEN = set()


def _port_free(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port():
    """A free loopback port in 20000-32000 (MMS 1.1.11 rejects ports from 32767 up)."""
    rng = random.Random()
    for _ in range(500):
        port = rng.randrange(20000, 32000)
        if port not in _TAKEN and _port_free(port):
            _TAKEN.add(port)
            return port
    raise RuntimeError("no free port found in 20000-32000")
