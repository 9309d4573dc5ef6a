"""Binding a server's socket and the host names it answers."""

import socket

import pytest

from service.errors import ServiceError
from service.serving import allowed_hosts, bind, is_loopback


def test_the_host_names_a_server_answers():
    assert allowed_hosts("127.0.0.1", 8765) == {"127.0.0.1:8765", "localhost:8765", "[::1]:8765"}
    assert allowed_hosts("::1", 80) == {"[::1]:80", "127.0.0.1:80", "localhost:80"}
    assert allowed_hosts("0.0.0.0", 8765) is None
    assert is_loopback("localhost") and is_loopback("::1") and is_loopback("127.0.0.2") and not is_loopback("192.0.2.1")


def test_a_port_in_use_is_one_line():
    with bind("127.0.0.1", 0) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(ServiceError, match=f"port {port} on 127.0.0.1 is in use: pass --port N"):
            bind("127.0.0.1", port)


def test_port_zero_listens_on_a_free_port():
    with bind("127.0.0.1", 0) as sock, socket.create_connection(sock.getsockname()[:2], timeout=5):
        assert sock.getsockname()[1] > 0
