"""Files hive-core seeds into a new agent's `applied` repo (package data)."""
