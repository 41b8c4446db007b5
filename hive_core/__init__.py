"""hive-core: the host daemon and its CLI."""

__version__ = "0.1.0"
"""The release version (`hive-core --version`, the banner)."""


def build_version() -> str:
    """The release version and the digest of the code this process runs
    (`hive_share.build`): what each harness's `alive` report is compared with. Computed at
    the first call and cached, so the CLI, which never calls it, hashes nothing."""
    from hive_share import build

    return build.version(__version__)
