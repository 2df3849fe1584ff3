"""Where memory is scarce, importing ftkit gives blocks of 1 MiB or more their own mappings (glibc's mmap threshold).

That keeps a long grid's heap from creeping on Binder; elsewhere glibc keeps its faster default. mallopt is
process-wide, so each case that sets it runs in a fresh interpreter (``FTKIT_MMAP_THRESHOLD`` stands in for a small
machine). The probe frees a 2 MiB block and asks for
another: with glibc's default the first free raises the mmap threshold and the second block comes from the heap;
with ftkit's fixed threshold it is a mapping of its own.
"""
import os
import subprocess
import sys

import pytest

from ftkit.core.torchutil import chosen_mmap_threshold, memory_limit_bytes

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


def test_ftkit_threshold_gives_large_blocks_their_own_mapping():
    assert probe("import ftkit", FTKIT_MMAP_THRESHOLD="1048576") == "True own mapping"


def test_a_threshold_the_user_set_is_left_alone():
    assert probe("import ftkit", MALLOC_MMAP_THRESHOLD_="33554432") == "False heap"


@pytest.mark.parametrize("limit, expected", [(2 * 10**9, 1 << 20), (4 << 30, 1 << 20), ((4 << 30) + 1, 0),
                                             (24 << 30, 0), (None, 0)])
def test_the_threshold_is_set_only_where_memory_is_scarce(limit, expected):
    assert chosen_mmap_threshold({}, limit) == expected  # Binder's 2 GB pod: set; a 24 GB machine: glibc's own


def test_the_environment_decides_before_the_machine():
    assert chosen_mmap_threshold({"FTKIT_MMAP_THRESHOLD": "0"}, 2 * 10**9) == 0
    assert chosen_mmap_threshold({"FTKIT_MMAP_THRESHOLD": "4194304"}, 24 << 30) == 4 << 20
    assert chosen_mmap_threshold({"MALLOC_MMAP_THRESHOLD_": "131072"}, 2 * 10**9) == 0


def test_the_memory_limit_is_this_machines_ram_or_less():
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert 0 < memory_limit_bytes() <= ram


def test_ftkit_mmap_threshold_0_keeps_glibcs_dynamic_threshold():
    assert probe("import ftkit", FTKIT_MMAP_THRESHOLD="0") == "False heap"


def test_left_to_itself_ftkit_sets_the_threshold_only_on_a_small_machine():
    scarce = memory_limit_bytes() <= 4 << 30  # here and in CI (24 GB): not scarce, glibc's own stays
    assert probe("import ftkit") == ("True own mapping" if scarce else "False heap")


def test_a_larger_ftkit_mmap_threshold_keeps_smaller_blocks_in_the_heap():
    assert probe("import ftkit", FTKIT_MMAP_THRESHOLD=str(4 << 20)) == "True heap"


def test_a_threshold_that_is_not_a_number_is_refused_at_import_with_the_fix():  # a typo must not pass silently
    done = run_probe("import ftkit", FTKIT_MMAP_THRESHOLD="1MB")
    assert done.returncode != 0
    assert "FTKIT_MMAP_THRESHOLD='1MB' is not a number of bytes" in done.stderr and "1048576" in done.stderr
