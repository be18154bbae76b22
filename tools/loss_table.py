"""Rewrite the README's table of losses from the registry (fastloss/_registry.py).

    python tools/loss_table.py           # rewrite README.md in place
    python tools/loss_table.py --check   # exit 1 if README.md's table is stale

The table sits between two marker comments in README.md; everything outside
them is left as it is.  tests/test_registry.py fails when the committed table
differs from the registry's.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fastloss._registry import TABLE_END, TABLE_START, loss_table  # noqa: E402


def with_table(text: str) -> str:
    """``text`` (the README) with the block between the markers replaced by the table."""
    start, end = text.index(TABLE_START), text.index(TABLE_END)
    return text[:start + len(TABLE_START)] + "\n" + loss_table() + "\n" + text[end:]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check, do not write")
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md")
    args = parser.parse_args()
    text = args.readme.read_text(encoding="utf-8")
    updated = with_table(text)
    if args.check:
        if updated != text:
            print(f"{args.readme}: the loss table is stale; run python tools/loss_table.py")
            return 1
        return 0
    if updated != text:
        args.readme.write_text(updated, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
