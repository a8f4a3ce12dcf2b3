#!/usr/bin/env python3
"""Checks the dynamic symbol table of the shared library.

Every exported symbol must carry the lgr_ prefix (nothing of the C++ core,
SQLiteCpp or the standard library leaks), and every function the public
header declares with LGR_EXPORT must be exported.

Usage: check_exported_symbols.py LIBRARY HEADER
"""
import re
import subprocess
import sys


def main() -> int:
    library, header = sys.argv[1], sys.argv[2]
    out = subprocess.run(["nm", "-D", "--defined-only", library],
                         check=True, capture_output=True, text=True).stdout
    exported = set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in "TtWwDdBbRrVvi":
            exported.add(parts[2])
    bad = sorted(s for s in exported if not s.startswith("lgr_"))
    text = open(header, encoding="utf-8").read()
    declared = set(re.findall(r"LGR_EXPORT[^;(]*?\b(lgr_\w+)\s*\(", text))
    missing = sorted(declared - exported)
    for s in bad:
        print(f"exported without the lgr_ prefix: {s}")
    for s in missing:
        print(f"declared in the header but not exported: {s}")
    print(f"{len(exported)} exported, {len(declared)} declared")
    return 1 if bad or missing or not declared else 0


if __name__ == "__main__":
    sys.exit(main())
