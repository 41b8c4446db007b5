"""Daemon settings: `HIVE_*` environment variables and CLI flags, read once at the edge."""

from __future__ import annotations

import ipaddress
import os
import re
import urllib.parse
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from hive_core.ports import PORT_BASE, PORT_RANGE
from hive_core.run_dir import default_run_dir, host_socket, systemd_directory
from hive_share.names import MANAGER_NAME

SOCKET_PATH_MAX = 107
"""`sun_path` holds 108 bytes including the terminating NUL."""

LONGEST_SOCKET_SUFFIX = "/agents/" + "x" * 9 + "/harness.sock"


HOST_NAME = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))*")


def is_loopback(host: str) -> bool:
    """True for a loopback address or `localhost`; any other name counts as beyond loopback."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def host_header_name(entry: str) -> str:
    """One allowed host as a Host header carries it: lowercase, an IPv6 address in brackets.

    Raises:
        ValueError: not a host name or an address, or one no browser can send (0.0.0.0, ::).
    """
    name = entry.strip().lower()
    if not name:
        raise ValueError("an empty host name (a comma too many?)")
    bare = name[1:-1] if name.startswith("[") and name.endswith("]") else name
    try:
        address = ipaddress.ip_address(bare)
    except ValueError:
        if len(name) > 253 or not HOST_NAME.fullmatch(name):
            raise ValueError(
                f"{entry!r} is not a host name or an IP address (no scheme, port or path)"
            ) from None
        return name
    if address.is_unspecified:
        raise ValueError(f"{entry!r} is the any-address; name the host browsers connect to")
    return f"[{address.compressed}]" if address.version == 6 else address.compressed


def default_state_dir() -> Path:
    """`$STATE_DIRECTORY` (systemd's), else `$XDG_STATE_HOME/hyperhive`, else
    `~/.local/state/hyperhive`."""
    given = systemd_directory("STATE_DIRECTORY")
    if given is not None:
        return given
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "hyperhive"


def split_urls(text: str) -> list[str]:
    """URLs separated by spaces, commas or newlines; `#` starts a comment to the line's end."""
    found = []
    for line in text.splitlines():
        line = line.split("#", 1)[0] if line.lstrip().startswith("#") or " #" in line else line
        found += [u for u in re.split(r"[\s,]+", line) if u]
    return found


FEDERATION_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")
"""A hive's or a host's id: one NATS subject token, a stream and bucket name part."""
NATS_SCHEMES = ("nats", "tls")


def default_host_id() -> str:
    """The machine's short host name, lowercased, characters an id cannot hold as `-`."""
    short = (os.uname().nodename or "host").split(".", 1)[0].lower()
    cleaned = re.sub(r"[^a-z0-9-]", "-", short).strip("-")[:32]
    return cleaned or "host"


def check_nats_url(url: str) -> str:
    """One NATS server URL, as given.

    Raises:
        ValueError: not nats:// or tls:// with a host.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in NATS_SCHEMES or not parts.hostname:
        raise ValueError(f"{url[:100]!r} is not a nats:// or tls:// URL with a host")
    try:
        parts.port  # noqa: B018 - raises on a port out of range
    except ValueError:
        raise ValueError(f"{url[:100]!r} has a bad port") from None
    return url


TURN_MEMORY = 384 * 2**20
"""Bytes one running turn is budgeted (claude holds ≈ 200–300 MB while it works)."""


def cores() -> int:
    """The CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) or 1


def default_turn_slots() -> int:
    """Turns at once by default: 8 per core, no more than memory holds at `TURN_MEMORY`
    each, at least 2."""
    memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return max(2, min(8 * cores(), memory // TURN_MEMORY))


def default_turn_starts() -> int:
    """Claude processes starting at once by default: two per core.

    A start is not all CPU (a 40-agent burst on 2 cores ended 1.8x later with one start per
    core than with no cap, 1.2x with two), and the first turn of a burst reaches the model
    in about the same time with two per core as with one."""
    return 2 * cores()


class Settings(BaseSettings):
    """Every setting of hive-core. Services get this object; none reads the environment."""

    model_config = SettingsConfigDict(env_prefix="HIVE_", frozen=True, extra="ignore")

    state_dir: Path = Field(default_factory=default_state_dir)
    """Durable state: hive.sqlite, per-agent repos and state dirs."""
    run_dir: Path = Field(default_factory=default_run_dir)
    """Sockets. Keep it short: unix socket paths are limited to 107 bytes."""
    backend: Literal["local", "nixos"] = "local"
    """Container backend."""
    dashboard_host: str = "127.0.0.1"
    """Dashboard bind address."""
    dashboard_allowed_hosts: Annotated[tuple[str, ...], NoDecode] = ()
    """Host names the dashboard answers to beyond loopback (comma-separated in the environment);
    required to bind beyond loopback. The first one is the host of the printed links."""
    dashboard_port: int = Field(default=7357, ge=0, le=65535)
    """Dashboard port; 0 picks a free one and writes it to `<run>/dashboard.port`."""
    agent_port_base: int = Field(default=PORT_BASE, ge=1024, le=65536 - PORT_RANGE)
    """The first of the 1000 ports the agents' pages get theirs from (the hash of the name
    into the range); a registered agent keeps its port when this changes."""
    operator_pronouns: str = "she/her"
    """Substituted into the agents' role prompts."""
    git: str = "git"
    """The git binary run on the config repos: a path, or a name looked up on git's own
    fixed PATH (`git.SEARCH_PATH`), never the daemon's."""
    cli_name: str = "hive-core"
    """How the start-up banner's hint names the CLI (`./dev` sets `./dev`)."""
    hyperhive_flake: str = ""
    """The flake reference of hyperhive itself: the meta flake's `hyperhive` input (nixos
    backend; required there)."""
    nixos_container: str = "nixos-container"
    """The `nixos-container` binary (nixos backend): a path, or a name looked up on the
    fixed PATH git uses too."""
    nix: str = "nix"
    """The `nix` binary (nixos backend): builds and locks the meta flake."""
    journalctl: str = "journalctl"
    """The `journalctl` binary (nixos backend): an agent's harness log."""
    nix_instantiate: str = "nix-instantiate"
    """The `nix-instantiate` binary (nixos backend): parses the rendered meta flake before
    a spawn."""
    nix_system: str = "x86_64-linux"
    """The system the agents' NixOS configurations are built for (nixos backend)."""
    nixos_containers_conf: Path = Path("/etc/nixos-containers")
    """Where `nixos-container` keeps each container's `<name>.conf` (nixos backend): the
    bind mounts are written there."""
    nix_build_timeout: float = Field(default=1800.0, gt=0)
    """Seconds one `nix build` or `nixos-container create/update` may take."""
    nixos_status_interval: float = Field(default=10.0, gt=0)
    """Seconds between two reads of every container's state (nixos backend)."""
    skip_meta_migration: bool = False
    """Skip the one-time registration of existing agents in a new meta flake."""
    stuck_no_progress_minutes: float = Field(default=10.0, gt=0, le=10_080)
    """A turn with no new tool call or text for this many minutes is stuck (`no_progress`)."""
    stuck_repeat: int = Field(default=5, ge=2, le=1000)
    """The same tool call with the same input, or the same error result in a row, this many
    times in one turn is stuck (`repetition`)."""
    stuck_burn_tokens: int = Field(default=2_000_000, ge=1000, le=10**12)
    """A turn that spent this many tokens (input + cache creation + output) without a call
    that changed anything (a write or edit, a Bash command that succeeded, a send) is stuck
    (`burn`)."""
    ping_pong_messages: int = Field(default=30, ge=2, le=100_000)
    """Two agents that send each other more than this many messages within
    `ping_pong_window_minutes`, with no operator message to or from either and no tool
    but messaging in their turns, are stuck (`ping_pong`)."""
    ping_pong_window_minutes: float = Field(default=10.0, gt=0, le=1440)
    """The window `ping_pong_messages` is counted over."""
    silent_minutes: float = Field(default=15.0, gt=0, le=10_080)
    """A running agent with messages queued this long and no turn started since is stuck
    (`silent`)."""
    budget_tokens_5h: int | None = Field(default=None, ge=1, le=10**12)
    """Each agent's token limit over 5 hours (agent.toml `[budget] tokens_5h` overrides it);
    unset: no limit."""
    budget_tokens_7d: int | None = Field(default=None, ge=1, le=10**12)
    """Each agent's token limit over 7 days (`[budget] tokens_7d`); unset: no limit."""
    budget_usd_7d: float | None = Field(default=None, gt=0, le=1e6)
    """Each agent's dollar limit over 7 days, counted from the cost Claude Code reports
    (`[budget] usd_7d`); unset: no limit."""
    budget_warn_percent: int = Field(default=80, ge=1, le=99)
    """Past this percentage of a limit an agent is `budget_warning` (its turns go on)."""
    notify_urls: Annotated[tuple[str, ...], NoDecode] = ()
    """Apprise URLs the attention list is sent to (separated by spaces or commas); each may
    carry `hive_severity=` and `hive_kinds=` to filter what it gets."""
    notify_urls_file: Path | None = None
    """A file of more notification URLs (one or more per line, `#` comments), read at start:
    keeps their secrets out of unit files and the journal."""
    notify_hive_name: str = Field(default_factory=lambda: os.uname().nodename or "hive")
    """How notifications name this hive (default: the host name)."""
    notify_renudge_minutes: float = Field(default=30.0, gt=0, le=10_080)
    """A pending approval or an open question is sent again once it is this old..."""
    notify_renudge_every_minutes: float = Field(default=60.0, gt=0, le=10_080)
    """... and again this often after that, while it stays open."""
    notify_quiet_hours: Annotated[tuple[int, int] | None, NoDecode] = None
    """Local hours (`22-7`) in which only urgent items are sent; the rest wait for a digest
    sent when they end."""
    notify_digest_minutes: float = Field(default=60.0, gt=0, le=10_080)
    """`info` items (to URLs that get them) go out together, at most this often."""
    notify_link_hours: float = Field(default=24.0, gt=0, le=720)
    """How long a notification's one-tap action link works (each works once)."""
    public_url: str = ""
    """The dashboard's address as the operator's devices reach it (`https://hive.example.net`),
    for the links in notifications; empty: the address it listens on."""
    turn_slots: int = Field(default_factory=default_turn_slots, ge=1, le=10_000)
    """How many turns run at once across the hive; more wait (`waiting`), the one with the
    oldest message first. Default: 8 per core, no more than memory holds at 384 MiB each."""
    turn_starts: int = Field(default_factory=default_turn_starts, ge=1, le=10_000)
    """Of those, how many may be starting their claude at once (from admission until
    claude's `system/init`: the CPU-heavy part of a turn). Default: two per core."""
    budget_grant_percent: int = Field(default=25, ge=1, le=1000)
    """How much approving a `budget` approval raises the limit it reached, in percent of
    that limit, until the window rolls."""
    nats_url: Annotated[tuple[str, ...], NoDecode] = ()
    """NATS servers (`nats://` or `tls://`, comma-separated): set, this hive-core joins the
    hive's other hosts over NATS JetStream (docs/multihost.md); empty, nothing of it runs."""
    hive_id: str = "hive"
    """The hive's id, shared by all its hosts: NATS subjects, streams and buckets carry it."""
    host_id: str = Field(default_factory=default_host_id)
    """This hive-core's id among the hive's hosts (default: the short host name)."""
    nats_creds: Path | None = None
    """A NATS credentials file (user JWT and NKey seed) this host connects with."""
    nats_nkey_seed: Path | None = None
    """A NATS user's NKey seed file (`SU…`, as `hive-core nats-nkey` writes it) this host
    signs the server's challenge with; the server lists the user's public key."""
    nats_tls_ca: Path | None = None
    """The CA that signs the NATS servers' certificates (TLS to them is then required)."""
    nats_tls_cert: Path | None = None
    """This host's client certificate for NATS (with `nats_tls_key`), when servers ask."""
    nats_tls_key: Path | None = None
    """The private key of `nats_tls_cert`."""
    nats_replicas: int = Field(default=3, ge=1, le=5)
    """Copies JetStream keeps of the hive's streams and buckets (at most the servers)."""
    host_capacity: int = Field(default=30, ge=0, le=10_000)
    """Agents this host takes: a spawn that names no host goes to the host with the most
    free places."""

    @field_validator("state_dir", "run_dir", "nixos_containers_conf")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().absolute()

    @field_validator("dashboard_allowed_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(value.split(",")) if value.strip() else ()
        return value

    @field_validator("nats_url", mode="before")
    @classmethod
    def _split_nats(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(u.strip() for u in value.split(",") if u.strip())
        return value

    @field_validator("nats_url")
    @classmethod
    def _nats_urls(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(check_nats_url(u) for u in value)

    @field_validator("hive_id", "host_id")
    @classmethod
    def _federation_id(cls, value: str) -> str:
        if not FEDERATION_ID.fullmatch(value):
            raise ValueError(
                f"{value[:40]!r}: 1-32 of a-z, 0-9 and '-', starting with a letter or digit"
            )
        return value

    @field_validator("nats_creds", "nats_nkey_seed", "nats_tls_ca", "nats_tls_cert", "nats_tls_key")
    @classmethod
    def _absolute_file(cls, value: Path | None) -> Path | None:
        return None if value is None else value.expanduser().absolute()

    @field_validator("notify_urls", mode="before")
    @classmethod
    def _split_urls(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(split_urls(value))
        return value

    @field_validator("notify_quiet_hours", mode="before")
    @classmethod
    def _quiet_hours(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        if not value.strip():
            return None
        found = re.fullmatch(r"\s*(\d{1,2})\s*-\s*(\d{1,2})\s*", value)
        start, end = (int(found[1]), int(found[2])) if found else (-1, -1)
        if not (0 <= start < 24 and 0 <= end < 24) or start == end:
            raise ValueError(f"{value[:40]!r}: give two different hours 0-23, like 22-7")
        return (start, end)

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str) -> str:
        if not value:
            return value
        parts = urllib.parse.urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{value[:100]!r} is not an http(s) URL with a host")
        return value.rstrip("/")

    @field_validator("notify_hive_name")
    @classmethod
    def _hive_name(cls, value: str) -> str:
        if not value.strip() or len(value) > 100 or not value.isprintable():
            raise ValueError("the hive's name must be 1-100 printable characters")
        return value

    @field_validator("dashboard_allowed_hosts")
    @classmethod
    def _hosts(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(dict.fromkeys(host_header_name(entry) for entry in value))

    @field_validator("operator_pronouns")
    @classmethod
    def _pronouns(cls, value: str) -> str:
        if not value.strip() or len(value) > 40 or not value.isprintable():
            raise ValueError("operator pronouns must be 1-40 printable characters, e.g. 'she/her'")
        return value

    @field_validator("cli_name")
    @classmethod
    def _cli_name(cls, value: str) -> str:
        if not value.strip() or len(value) > 200 or not value.isprintable():
            raise ValueError("the CLI name must be 1-200 printable characters, e.g. './dev'")
        return value

    def check_socket_paths(self) -> None:
        """Refuse a run dir whose longest socket path would not fit in `sun_path`.

        Raises:
            ValueError: naming the run dir and the byte count.
        """
        longest = len(os.fsencode(str(self.run_dir) + LONGEST_SOCKET_SUFFIX))
        if longest > SOCKET_PATH_MAX:
            raise ValueError(
                f"run dir {self.run_dir} is too long: agent socket paths would be {longest} bytes "
                f"(the limit is {SOCKET_PATH_MAX}); set HIVE_RUN_DIR to a shorter path"
            )

    def check_dashboard_hosts(self) -> None:
        """Refuse a bind beyond loopback that names no host to answer to.

        Raises:
            ValueError: naming the bind address and HIVE_DASHBOARD_ALLOWED_HOSTS.
        """
        if not is_loopback(self.dashboard_host) and not self.dashboard_allowed_hosts:
            raise ValueError(
                f"the dashboard would listen on {self.dashboard_host}, beyond loopback, but "
                "HIVE_DASHBOARD_ALLOWED_HOSTS is empty: set it to the host names browsers use "
                "to reach this machine (comma-separated, e.g. hive.example.net,192.0.2.7)"
            )

    def check_federation(self) -> None:
        """Refuse NATS settings that cannot work or would send in the clear beyond loopback.

        Raises:
            ValueError: naming the setting.
        """
        if not self.nats_url:
            return
        files = (self.nats_creds, self.nats_nkey_seed, self.nats_tls_ca, self.nats_tls_cert,
                 self.nats_tls_key)  # fmt: skip
        for path in files:
            if path is not None and not path.is_file():
                raise ValueError(f"{path} (a NATS credentials or TLS file) is not a file")
        if self.nats_creds is not None and self.nats_nkey_seed is not None:
            raise ValueError("HIVE_NATS_CREDS or HIVE_NATS_NKEY_SEED: one way to log in, not both")
        if (self.nats_tls_cert is None) != (self.nats_tls_key is None):
            raise ValueError("HIVE_NATS_TLS_CERT and HIVE_NATS_TLS_KEY go together")
        tls = self.nats_tls_ca is not None
        for url in self.nats_url:
            parts = urllib.parse.urlsplit(url)
            if not tls and parts.scheme != "tls" and not is_loopback(parts.hostname or ""):
                raise ValueError(
                    f"NATS server {parts.hostname} is beyond loopback: use tls:// URLs or "
                    "set HIVE_NATS_TLS_CA, so hosts never talk in the clear"
                )

    @property
    def federated(self) -> bool:
        """Whether this hive-core joins other hosts (HIVE_NATS_URL is set)."""
        return bool(self.nats_url)

    @property
    def db_path(self) -> Path:
        return self.state_dir / "hive.sqlite"

    @property
    def agents_dir(self) -> Path:
        return self.state_dir / "agents"

    @property
    def remote_config_dir(self) -> Path:
        """Working copies of other hosts' agents' config (`<agent>/applied`, a mirror, and
        `<agent>/proposed`), made for the manager when federated."""
        return self.state_dir / "remote"

    @property
    def host_socket(self) -> Path:
        return host_socket(self.run_dir)

    @property
    def manager_socket(self) -> Path:
        """`<run>/manager.sock`; on the nixos backend in the manager's own socket dir, which
        its container binds as `/run/hive`."""
        if self.backend == "nixos":
            return self.agent_run_dir(MANAGER_NAME) / "manager.sock"
        return self.run_dir / "manager.sock"

    @property
    def meta_dir(self) -> Path:
        """The core-owned meta flake (nixos backend)."""
        return self.state_dir / "meta"

    def agent_run_dir(self, name: str) -> Path:
        return self.run_dir / "agents" / name

    def agent_socket(self, name: str) -> Path:
        return self.agent_run_dir(name) / "agent.sock"

    def harness_socket(self, name: str) -> Path:
        return self.agent_run_dir(name) / "harness.sock"
