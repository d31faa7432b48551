"""Holds one grid cell's lock, as a run of that cell would, until its stdin closes.

``python hold_cell_lock.py OUT HASH``: takes ``OUT/.locks/HASH.lock`` through the library's own
:func:`dece.experiments.store.cell_lock` (which records pid, host and start time in the sidecar),
prints ``held`` and waits for EOF on stdin, then releases it. SIGKILL it to leave a stale
sidecar behind, as a crashed run would.
"""

from __future__ import annotations

import sys
from pathlib import Path

from dece.experiments.store import cell_lock


def main() -> int:
    out, h = Path(sys.argv[1]), sys.argv[2]
    with cell_lock(out, h, wait=False) as holder:
        if holder is not None:
            sys.stderr.write(f"already held by {holder.describe()}\n")
            return 1
        sys.stdout.write("held\n")
        sys.stdout.flush()
        sys.stdin.read()
    return 0


if __name__ == "__main__":
    sys.exit(main())
