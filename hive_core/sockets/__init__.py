"""The unix sockets of hive-core: one listener per principal (identity = socket)."""
