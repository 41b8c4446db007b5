"""The in-container harness: `hive-agent` (sub-agents) and `hive-mind` (the manager)."""

__version__ = "0.1.0"
