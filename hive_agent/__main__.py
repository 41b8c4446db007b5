"""`python -m hive_agent agent|mind <command>`: how the local backend starts harnesses."""

import sys

from hive_agent.cli import run

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in ("agent", "mind"):
        print("usage: python -m hive_agent agent|mind <command> ...", file=sys.stderr)
        sys.exit(2)
    sys.exit(run("manager" if sys.argv[1] == "mind" else "agent", sys.argv[2:]))
