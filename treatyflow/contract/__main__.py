"""`python -m treatyflow.contract [--check] [--out DIR]`: write docs/contract, or check it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from treatyflow.contract.files import ROOT, drift, render, write


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m treatyflow.contract",
                                     description="Generate the wire contract (docs/contract).")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 listing every file that drifted")
    parser.add_argument("--out", type=Path, default=ROOT, help=f"the folder (default {ROOT})")
    args = parser.parse_args(argv)
    if args.check:
        drifted = drift(args.out)
        for name in drifted:
            print(f"drifted: {args.out / name}")
        if drifted:
            print("docs/contract is not what the code gives: run `make contract`",
                  file=sys.stderr)
            return 1
        print(f"{len(render())} files in {args.out} match the code")
        return 0
    touched = write(args.out)
    for name in touched:
        print(f"wrote: {args.out / name}")
    print(f"{len(touched)} file(s) changed in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
