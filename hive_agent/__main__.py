"""`python -m hive_agent agent|mind <command>`: how the local backend starts harnesses."""

import sys

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in ("agent", "mind"):
        print("usage: python -m hive_agent agent|mind <command> ...", file=sys.stderr)
        sys.exit(2)
    if sys.argv[2:3] == ["mcp"]:  # the lean path claude takes every turn
        from hive_agent.relay import main

        sys.exit(main())
    from hive_agent.cli import run

    sys.exit(run("manager" if sys.argv[1] == "mind" else "agent", sys.argv[2:]))
