"""A stand-in for the claude binary that prints hostile stream-json, for the pump's tests."""

import json
import sys

print(json.dumps({"type": "system", "subtype": "init", "session_id": "s-1", "model": "m",
                  "mcp_servers": []}))  # fmt: skip
print(json.dumps({"type": "mystery_future_type", "payload": [1, 2, 3]}))
big = "x" * (5 * 1024 * 1024)
print(json.dumps({"type": "assistant", "message": {"content": [{"type": "text", "text": big}]}}))
print("this line is not json {")
print('{"type": "assistant", "message": {"content": [{"type": "text", "text": "after"}]}}')
print(json.dumps({"type": "result", "subtype": "success", "is_error": False, "result": "after",
                  "usage": {"input_tokens": 1, "output_tokens": 2}}))  # fmt: skip
sys.stdout.flush()
