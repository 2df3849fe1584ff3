import socket
import subprocess
import sys

import pytest


def test_outbound_connection_fails_loudly():
    with pytest.raises(OSError, match="network access blocked"):
        socket.create_connection(("pypi.org", 443), timeout=2)


def test_child_python_processes_are_guarded_too():
    code = (
        "import socket\n"
        "try:\n"
        "    socket.create_connection(('example.com', 80), timeout=2)\n"
        "except OSError as e:\n"
        "    print('blocked' if 'network access blocked' in str(e) else 'other', e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.startswith("blocked"), out.stdout + out.stderr
