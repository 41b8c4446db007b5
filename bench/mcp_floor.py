"""The least MCP server there is: `python -I -S bench/mcp_floor.py DESCRIPTION.json`.

Standard library only. It answers `initialize` and the list requests claude sends at
start with what DESCRIPTION.json holds (the hyperhive server's own `initialize` result
and `tools/list` result, captured from a running harness), and anything else with
"method not found". `claude_turn_mcp_floor_p50` runs the bare CLI with it: what any
turn that offers these tools over MCP costs, whoever serves them.
"""

from __future__ import annotations

import json
import sys

EMPTY_LISTS: dict[str, dict[str, list[object]]] = {
    "prompts/list": {"prompts": []},
    "resources/list": {"resources": []},
    "resources/templates/list": {"resourceTemplates": []},
}


def main() -> int:
    with open(sys.argv[1], encoding="utf-8") as f:
        description = json.load(f)
    for line in sys.stdin:
        message = json.loads(line)
        if "id" not in message:
            continue  # a notification
        method = message.get("method")
        reply: dict[str, object] = {"jsonrpc": "2.0", "id": message["id"]}
        if method == "initialize":
            version = message.get("params", {}).get("protocolVersion")
            reply["result"] = {**description["initialize"], "protocolVersion": version}
        elif method == "tools/list":
            reply["result"] = description["tools"]
        elif method in EMPTY_LISTS:
            reply["result"] = EMPTY_LISTS[method]
        else:
            reply["error"] = {"code": -32601, "message": f"method not found: {method}"}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
