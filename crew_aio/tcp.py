"""Kernel readings of a TCP connection's liveness (Linux ``TCP_INFO`` and ``TIOCOUTQ``).

A peer whose machine vanished or whose network dropped (no FIN, no RST) goes on looking
connected for as long as the heartbeat takes to notice; the kernel knows within a second. Used
by the WebSocket transport to push nothing to a silent peer.
"""

from __future__ import annotations

import asyncio
import fcntl
import socket
import struct
import termios

__all__ = ["SILENT_EVERY", "tcp_stalled"]

# the head of Linux's struct tcp_info: 8 u8 (state, ca_state, retransmits, probes, backoff,
# options, window scales, rate flags), then u32 rto, ato, snd_mss, rcv_mss, unacked, sacked,
# lost, retrans, fackets, last_data_sent (ms since new data last left)
_TCP_INFO = struct.Struct("8B10I")
_OUTQ = struct.Struct("i")
STALLED_AFTER = 2  # retransmissions of the oldest segment in flight, unanswered
STUCK_MS = 1000  # bytes queued for the peer and none could leave for this long: not reading
SILENT_EVERY = 0.1  # seconds a silence reading is reused (a few syscalls per peer at most)


def tcp_stalled(transport: asyncio.BaseTransport | None) -> bool:
    """True when the peer vanished (the kernel retransmits to it unanswered) or does not read
    (bytes wait for it and none could be sent for STUCK_MS: its window is shut)."""
    if transport is None:
        return True
    sock = transport.get_extra_info("socket")
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return False
    try:
        raw = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO.size)
        info: tuple[int, ...] = _TCP_INFO.unpack_from(raw)
        if info[2] >= STALLED_AFTER:  # retransmits
            return True
        if info[8 + 9] < STUCK_MS:  # new data left recently: the peer takes it
            return False
        queued = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, _OUTQ.pack(0))
    except OSError:
        return False
    return bool(_OUTQ.unpack(queued)[0] > 0)
