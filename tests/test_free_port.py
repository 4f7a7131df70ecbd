"""The harness's ports for servers it starts: never from the range outgoing connections use."""

import socket

from gateway.redisproc import _ephemeral_low, free_port


def test_ports_are_below_the_ephemeral_range_and_never_handed_out_twice():
    low = _ephemeral_low()
    ports = [free_port() for _ in range(50)]
    assert len(set(ports)) == 50
    if low > 12000:
        assert all(10000 <= p < low for p in ports)


def test_a_port_handed_out_can_be_bound():
    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        s.listen()
