"""The in-container harness: `hive-agent` (sub-agents) and `hive-mind` (the manager)."""

__version__ = "0.1.0"
"""The release version."""


def build_version() -> str:
    """The release version and the digest of the code this harness runs
    (`hive_share.build`), reported in `alive`: hive-core tells the overseer when it differs
    from its own. Computed at the first call and cached."""
    from hive_share import build

    return build.version(__version__)
