"""Ports for servers a test or ``asyncgate up`` starts: free, and out of the way of the local
ports outgoing connections get."""

import socket

from services.common.nats_server import _ephemeral_range, free_port


def test_chosen_ports_are_free_distinct_and_below_the_ephemeral_range() -> None:
    low, _ = _ephemeral_range()
    ports = [free_port() for _ in range(50)]

    assert len(set(ports)) == len(ports)
    assert all(1024 < port < low for port in ports)
    for port in ports[:5]:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
            server.bind(("127.0.0.1", port))  # raises if it were taken
