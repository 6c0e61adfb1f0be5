"""``python -m l2sync_dagster.demo [CONNECTIONS] [--offline]``: the whole demo."""

import argparse
import sys
from pathlib import Path

from l2sync_dagster.demo.customers import run_demo
from l2sync_dagster.demo.microsoft import run_microsoft_demos


def main(argv: list[str] | None = None) -> int:
    """Run the offline demo, then (unless ``--offline``) the sandbox scenarios."""
    p = argparse.ArgumentParser(prog="python -m l2sync_dagster.demo")
    p.add_argument("connections", nargs="?", default="connections", type=Path)
    p.add_argument("--offline", action="store_true",
                   help="only the CSV <-> SQLite demo, no sandbox servers")
    args = p.parse_args(argv)
    code = run_demo(args.connections)
    if code != 0 or args.offline:
        return code
    return run_microsoft_demos(args.connections)


if __name__ == "__main__":
    sys.exit(main())
