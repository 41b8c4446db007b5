"""Wire types, name validation and framing shared by hive-core and the harness.

Depends on pydantic and the standard library only.
"""

PROTOCOL_VERSION = 1
