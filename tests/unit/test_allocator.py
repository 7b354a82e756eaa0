"""distillery/allocator.py: freed large blocks stay in the process for the next training step."""
import subprocess
import sys
import textwrap

import pytest

# A 64 MB tensor allocated, written and freed, again and again: the page faults of 20 such steps after five
# uncounted ones. Without the thresholds glibc maps every block afresh: 16,384 faults of 4 KiB pages apiece.
# With them the heap keeps freed blocks: measured 0 to 3 blocks' worth of faults in 20 steps (the heap's free
# chunks settle), against 20 of 20.
SCRIPT = textwrap.dedent("""
    import resource, sys
    import torch
    from distillery.allocator import keep_freed_blocks
    set_ = keep_freed_blocks() if sys.argv[1] == "keep" else None
    for _ in range(5):
        torch.ones(16 * 1024 * 1024).sum()  # 64 MB: above glibc's largest default mmap threshold (32 MB)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):
        torch.ones(16 * 1024 * 1024).sum()
    print(set_, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
""")


def _faults(mode: str) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, check=True).stdout
    set_, faults = out.split()
    return set_, int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_a_freed_large_block_is_reused_without_page_faults():
    default_set, default_faults = _faults("default")
    kept_set, kept_faults = _faults("keep")
    assert kept_set == "True"
    block = 16 * 1024 * 1024 * 4 // 4096  # pages in one 64 MB block
    assert default_faults >= 18 * block  # the default re-maps (nearly) every block
    assert kept_faults < 8 * block
