"""Blocks network access in every Python process started by the test suite.

tests/conftest.py puts this folder on PYTHONPATH and sets FTKIT_BLOCK_NETWORK=1,
so notebook kernels started by papermill are guarded too. Loopback and Unix
sockets stay allowed (Jupyter kernels talk over them).
"""
import os


def install() -> None:
    """Patch socket so that any non-loopback connection raises. Idempotent."""
    import socket

    if hasattr(socket, "NetworkBlockedError"):
        return

    _real_connect = socket.socket.connect
    _real_connect_ex = socket.socket.connect_ex
    _real_getaddrinfo = socket.getaddrinfo
    _LOCAL = {"localhost", "127.0.0.1", "::1", "0.0.0.0", "", None}

    class NetworkBlockedError(OSError):
        """Raised when code under test tries to reach the network."""

    def _check(address):
        if isinstance(address, (str, bytes)):  # AF_UNIX path
            return
        host = address[0] if isinstance(address, tuple) else address
        if host in _LOCAL or (isinstance(host, str) and host.startswith("127.")):
            return
        raise NetworkBlockedError(
            f"network access blocked during tests (tried {address!r}); "
            "weights and data must come from installed packages"
        )

    def _guarded_connect(self, address):
        _check(address)
        return _real_connect(self, address)

    def _guarded_connect_ex(self, address):
        _check(address)
        return _real_connect_ex(self, address)

    def _guarded_getaddrinfo(host, *args, **kwargs):
        _check((host,))
        return _real_getaddrinfo(host, *args, **kwargs)

    socket.NetworkBlockedError = NetworkBlockedError
    socket.socket.connect = _guarded_connect
    socket.socket.connect_ex = _guarded_connect_ex
    socket.getaddrinfo = _guarded_getaddrinfo


if os.environ.get("FTKIT_BLOCK_NETWORK") == "1":
    install()
