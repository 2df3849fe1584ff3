"""Importing ftkit gives blocks of 1 MiB or more their own mappings (glibc), so a long grid's heap cannot creep.

mallopt is process-wide, so each case runs in a fresh interpreter. The probe frees a 2 MiB block and asks for
another: with glibc's default the first free raises the mmap threshold and the second block comes from the heap;
with ftkit's fixed threshold it is a mapping of its own.
"""
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc is Linux's")

PROBE = r"""
import ctypes, sys
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
applied = None
if sys.argv[1] == "import ftkit":
    import ftkit
    from ftkit.core.torchutil import map_large_blocks_apart
    applied = map_large_blocks_apart()
libc.free(libc.malloc(2 << 20))
block = libc.malloc(2 << 20)
heap = [line.split()[0].split("-") for line in open("/proc/self/maps") if line.rstrip().endswith("[heap]")]
in_heap = any(int(lo, 16) <= block < int(hi, 16) for lo, hi in heap)
print(applied, "heap" if in_heap else "own mapping")
"""


def run_probe(what: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in ("MALLOC_MMAP_THRESHOLD_", "FTKIT_MMAP_THRESHOLD")}
    return subprocess.run([sys.executable, "-c", PROBE, what], env={**clean, **env}, capture_output=True, text=True,
                          timeout=300)


def probe(what: str, **env: str) -> str:
    done = run_probe(what, **env)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_without_ftkit_a_freed_large_block_is_reused_from_the_heap():
    assert probe("plain") == "None heap"  # glibc's dynamic threshold: the control the next test differs from


def test_importing_ftkit_gives_large_blocks_their_own_mapping():
    assert probe("import ftkit") == "True own mapping"


def test_a_threshold_the_user_set_is_left_alone():
    assert probe("import ftkit", MALLOC_MMAP_THRESHOLD_="33554432") == "False heap"


def test_ftkit_mmap_threshold_0_keeps_glibcs_dynamic_threshold():
    assert probe("import ftkit", FTKIT_MMAP_THRESHOLD="0") == "False heap"


def test_a_larger_ftkit_mmap_threshold_keeps_smaller_blocks_in_the_heap():
    assert probe("import ftkit", FTKIT_MMAP_THRESHOLD=str(4 << 20)) == "True heap"


def test_a_threshold_that_is_not_a_number_is_refused_at_import_with_the_fix():
    done = run_probe("import ftkit", FTKIT_MMAP_THRESHOLD="1MB")
    assert done.returncode != 0
    assert "FTKIT_MMAP_THRESHOLD='1MB' is not a number of bytes" in done.stderr and "1048576" in done.stderr
