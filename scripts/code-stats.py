#!/usr/bin/env python3
"""Code-shape figures for the closing notes of refactoring work.

Usage: scripts/code-stats.py [DIR ...]   (default: core/src components host/src)

Prints, for the Rust files below each DIR:
- the files by code lines (not blank, not comment-only, outside `#[cfg(test)]` blocks),
- every function longer than 60 lines outside `#[cfg(test)]` blocks.

It reads text with brace counting, not a Rust parser: braces inside strings or char
literals can fool it, which our code style makes rare. Good enough to steer by; the
figures it prints are the ones quoted in issue notes.
"""

import pathlib
import re
import sys

FN = re.compile(r"^\s*(pub(\([^)]*\))?\s+)?(const\s+)?(async\s+)?(unsafe\s+)?fn\s+(\w+)")
LIMIT = 60


def strip_strings(line):
    # Drop string literal contents and line comments so braces inside them do not count.
    line = re.sub(r'"(\\.|[^"\\])*"', '""', line)
    line = re.sub(r"'(\\.|[^'\\])'", "''", line)
    return line.split("//", 1)[0]


def analyse(path):
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    code = 0
    depth = 0
    test_depth = None  # depth at which a #[cfg(test)] item started
    pending_test = False
    fns = []  # (name, start, depth at start)
    open_fns = []
    long_fns = []
    for number, raw in enumerate(lines, 1):
        stripped = raw.strip()
        clean = strip_strings(raw)
        in_test = test_depth is not None
        if stripped.startswith("#[cfg(test)]"):
            pending_test = True
        if not in_test and stripped and not stripped.startswith("//") and not pending_test:
            code += 1
        m = FN.match(raw)
        if m and not in_test and not pending_test:
            open_fns.append((m.group(6), number, depth))
        opens = clean.count("{")
        closes = clean.count("}")
        if pending_test and opens:
            test_depth = depth
            pending_test = False
        elif pending_test and stripped.endswith(";"):
            pending_test = False  # `#[cfg(test)] mod testing;` or a use
        depth += opens - closes
        if test_depth is not None and depth <= test_depth:
            test_depth = None
        while open_fns and depth <= open_fns[-1][2] and (opens or closes or stripped.endswith(";")):
            name, start, _ = open_fns.pop()
            if number - start + 1 > LIMIT:
                long_fns.append((name, start, number - start + 1))
            if not (opens or closes):
                break
    return code, long_fns


def main():
    dirs = sys.argv[1:] or ["core/src", "components", "host/src"]
    files = []
    long_fns = []
    for d in dirs:
        for path in sorted(pathlib.Path(d).rglob("*.rs")):
            code, longs = analyse(path)
            files.append((code, str(path)))
            long_fns += [(str(path), *f) for f in longs]
    files.sort(reverse=True)
    print("code lines (outside #[cfg(test)]), largest first:")
    for code, path in files:
        print(f"  {code:5}  {path}")
    print(f"functions over {LIMIT} lines outside tests: {len(long_fns)}")
    for path, name, start, length in long_fns:
        print(f"  {path}:{start} {name} ({length} lines)")


if __name__ == "__main__":
    main()
