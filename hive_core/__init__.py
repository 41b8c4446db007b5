"""hive-core: the host daemon and its CLI."""

__version__ = "0.1.0"
