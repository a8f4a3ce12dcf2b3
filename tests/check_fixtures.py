#!/usr/bin/env python3
"""Checks that the fixture snapshot in tests/ matches the shared recording.

The shared directory is the truth about what real clients send; the snapshot
exists so that a lone clone can run its tests. When the shared copy is not
beside the checkout there is nothing to compare, and the check says so.
"""
import filecmp
import os
import sys


def main() -> int:
    snapshot, shared = sys.argv[1], sys.argv[2]
    if not os.path.isdir(shared):
        print(f"shared fixtures not present at {shared}; snapshot used as is")
        return 0
    names = sorted(os.listdir(shared))
    match, mismatch, errors = filecmp.cmpfiles(snapshot, shared, names,
                                               shallow=False)
    extra = sorted(set(os.listdir(snapshot)) - set(names))
    for name in mismatch + errors:
        print(f"differs or missing in snapshot: {name}")
    for name in extra:
        print(f"in snapshot but not shared: {name}")
    print(f"{len(match)} fixture files identical to the shared copy")
    return 1 if mismatch or errors or extra else 0


if __name__ == "__main__":
    sys.exit(main())
