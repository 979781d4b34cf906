"""Graceful stop of ``mmsctl serve --foreground``: fail readiness, let the requests
in flight finish, then stop MMS.

MMS 1.1.11's frontend closes every connection at once on SIGTERM (its shutdown
hook closes all channels), so a request in flight gets no answer. The order here:

1. mark the server as draining: ``<state_dir>/draining`` (``/readyz`` answers 503
   from then on, so a load balancer stops sending new requests);
2. wait while any request is in flight on the inference port, at most the drain
   bound (the container's ``stopTimeout`` minus a margin for stopping MMS);
3. stop MMS.

MMS counts no requests in flight, so they are read from the kernel: for each
established TCP connection to the inference port, ``tcp_info`` says how long ago
data was last received and last sent (netlink ``sock_diag``, what ``ss -ti``
shows; no privilege needed for the sockets of one's own network namespace). HTTP/1.1
answers one request at a time per connection, so a connection that received data
more recently than it sent any has a request in flight. The kernel's timestamps
have jiffy resolution (1-10 ms): when both fall in the same jiffy the order is
unknown, and the connection counts as busy (a request sent right after the last
answer must not be cut; an idle keep-alive connection then holds the drain at
most until its bound). Where netlink is unavailable every established connection
counts (psutil).

New connections during the drain are still accepted by MMS (it cannot stop
listening without closing the open connections); they are served and waited
for too, within the bound.
"""
import datetime
import os
import socket
import struct
import time

import psutil

DRAINING_FILE = "draining"
#: seconds ``mmsctl serve --foreground`` waits for requests in flight after SIGTERM (default)
DEFAULT_DRAIN_TIMEOUT = 20.0
POLL_INTERVAL = 0.05

# linux/netlink.h, linux/sock_diag.h, linux/inet_diag.h, linux/tcp.h
_NETLINK_SOCK_DIAG = 4
_SOCK_DIAG_BY_FAMILY = 20
_NLM_F_REQUEST, _NLM_F_DUMP = 0x1, 0x300
_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_INET_DIAG_INFO = 2
_TCP_ESTABLISHED = 1
_NLMSG_HEADER = struct.Struct("=IHHII")
_DIAG_MSG_SIZE = 72          # struct inet_diag_msg
_TCPI_LAST_DATA_SENT = 44    # offsets in struct tcp_info
_TCPI_LAST_DATA_RECV = 52


def draining_path(state_dir):
    return os.path.join(state_dir, DRAINING_FILE)


def mark_draining(state_dir, reason="SIGTERM"):
    """Write ``<state_dir>/draining`` (readiness fails from now on)."""
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    with open(draining_path(state_dir), "w", encoding="utf-8") as handle:
        handle.write("draining since %s (%s)\n" % (now, reason))


def clear_draining(state_dir):
    try:
        os.remove(draining_path(state_dir))
    except FileNotFoundError:
        pass


def is_draining(state_dir):
    return os.path.exists(draining_path(state_dir))


def _diag_request(family):
    request = struct.pack("=BBBBI", family, socket.IPPROTO_TCP, 1 << (_INET_DIAG_INFO - 1), 0,
                          1 << _TCP_ESTABLISHED) + bytes(48)  # struct inet_diag_sockid: no filter
    return _NLMSG_HEADER.pack(_NLMSG_HEADER.size + len(request), _SOCK_DIAG_BY_FAMILY,
                              _NLM_F_REQUEST | _NLM_F_DUMP, 1, 0) + request


def _attributes(payload):
    position = _DIAG_MSG_SIZE
    while position + 4 <= len(payload):
        length, kind = struct.unpack_from("=HH", payload, position)
        if length < 4:
            break
        yield kind, payload[position + 4:position + length]
        position += (length + 3) & ~3


def tcp_connections(family):
    """(local port, remote port, ms since data was last sent, ms since data was last received)
    of every established TCP connection of ``family`` in this network namespace."""
    found = []
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, _NETLINK_SOCK_DIAG) as sock:
        sock.sendall(_diag_request(family))
        while True:
            data = sock.recv(1 << 16)
            if not data:
                return found
            offset = 0
            while offset + _NLMSG_HEADER.size <= len(data):
                length, kind, _, _, _ = _NLMSG_HEADER.unpack_from(data, offset)
                if length < _NLMSG_HEADER.size:
                    return found
                payload = data[offset + _NLMSG_HEADER.size:offset + length]
                offset += (length + 3) & ~3
                if kind == _NLMSG_DONE:
                    return found
                if kind == _NLMSG_ERROR:
                    code = -struct.unpack_from("=i", payload)[0]
                    if code:
                        raise OSError(code, os.strerror(code))
                    continue
                local_port, remote_port = struct.unpack_from(">HH", payload, 4)
                for attribute, value in _attributes(payload):
                    if attribute == _INET_DIAG_INFO and len(value) >= _TCPI_LAST_DATA_RECV + 4:
                        sent = struct.unpack_from("=I", value, _TCPI_LAST_DATA_SENT)[0]
                        received = struct.unpack_from("=I", value, _TCPI_LAST_DATA_RECV)[0]
                        found.append((local_port, remote_port, sent, received))


def in_flight(port):
    """Connections to local ``port`` with a request in flight (see the module's notes)."""
    try:
        connections = tcp_connections(socket.AF_INET) + tcp_connections(socket.AF_INET6)
    except OSError:
        return sum(1 for c in psutil.net_connections(kind="tcp")
                   if c.status == psutil.CONN_ESTABLISHED and c.laddr and c.laddr.port == port)
    # ms ago: received no longer ago than sent = received after (or in the same jiffy as) the last answer
    return sum(1 for local, _, sent, received in connections if local == port and received <= sent)


def wait_idle(port, timeout, poll=POLL_INTERVAL, clock=time.monotonic):
    """Wait until no request is in flight on ``port`` or ``timeout`` seconds passed.

    Returns (requests in flight when the wait began, requests still in flight at its end).
    """
    deadline = clock() + max(0.0, timeout)
    first = busy = in_flight(port)
    while busy and clock() < deadline:
        time.sleep(poll)
        busy = in_flight(port)
    return first, busy


def drain(state_dir, port, timeout, log=None):
    """Steps 1 and 2: mark draining, then wait for the requests in flight (at most ``timeout`` s)."""
    started = time.monotonic()
    mark_draining(state_dir)
    first, left = wait_idle(port, timeout)
    if log is not None:
        log("mmsctl: draining: %d request(s) in flight at SIGTERM, %d left after %.1f s (bound %.0f s); "
            "stopping the server" % (first, left, time.monotonic() - started, timeout))
    return first, left
