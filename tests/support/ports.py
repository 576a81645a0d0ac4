"""TCP states for port tests: TIME-WAIT sockets made for real and read back from /proc."""

from __future__ import annotations

import socket

TIME_WAIT = "06"  # the state column of /proc/net/tcp


def time_wait_port() -> int:
    """A port whose only socket is the server end of a closed connection, in TIME-WAIT."""
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn's listener does
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        conn, _ = server.accept()
        conn.close()  # the side that closes first keeps the TIME-WAIT
        client.recv(1)  # wait for the FIN, then answer it
        client.close()
    return port


def time_wait_ports() -> set[int]:
    """Local ports of TIME-WAIT TCP sockets on 127.0.0.1."""
    ports = set()
    with open("/proc/net/tcp", encoding="ascii") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if fields[3] == TIME_WAIT and fields[1].startswith("0100007F:"):
                ports.add(int(fields[1].split(":")[1], 16))
    return ports
