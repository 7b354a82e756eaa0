"""distillery/training.py: every Trainer.train starts with a full garbage collection (accelerate's free_memory),
which walked a long-lived process's every object at each training (59 CPU-s of the test suite's run)."""
import subprocess
import sys
import textwrap

# In a process of its own: this one's objects may already be frozen by an earlier training.
SCRIPT = textwrap.dedent("""
    import gc, weakref
    import torch  # a real process's modules: hundreds of thousands of objects for a collection to walk
    from distillery.training import _freeze_survivors

    class Node:
        pass

    assert gc.get_freeze_count() == 0
    _freeze_survivors()
    frozen = gc.get_freeze_count()
    _freeze_survivors()  # a second training freezes nothing more
    again = gc.get_freeze_count()
    left = Node(); left.me = left; ref = weakref.ref(left)  # a cycle a training leaves behind
    del left
    gc.collect()
    print(frozen, again, ref() is None)
""")


def test_the_first_training_freezes_what_survives_and_later_garbage_is_still_collected():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True).stdout
    frozen, again, collected = out.split()
    assert int(frozen) > 100_000, frozen  # torch's and Distillery's modules
    assert again == frozen
    assert collected == "True"
