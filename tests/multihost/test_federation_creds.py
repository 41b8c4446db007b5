"""Hosts that log in with a credentials file: a user JWT and its NKey seed, as `nsc`
writes them for a NATS server in operator mode (the accounts and users are the
operator's signed JWTs, not entries in the server's config). The JWTs here are made and
signed with the `nkeys` library the way `nsc` makes them; the user's permissions are the
ones hive-core documents."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nkeys
import pytest

from hive_core.federation import names
from tests.multihost.hives import HIVE_ID, Hosts, login_holds
from tests.multihost.nats_cluster import SERVER_READY, Node, find_binary, worker_port_base

WAIT = 20.0
NODE_INDEX = 9
"""The server's ports: the worker's base + 90, clear of a three-node cluster's."""
UNLIMITED = {"subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
             "wildcards": True, "conn": -1, "leaf": -1}  # fmt: skip


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _keys(prefix: int) -> Any:
    return nkeys.from_seed(nkeys.encode_seed(secrets.token_bytes(32), prefix))


def _public(keys: Any) -> str:
    return str(keys.public_key.decode())


def _jwt(issuer: Any, subject: str, name: str, nats: dict[str, Any]) -> str:
    """A NATS JWT (v2) of `subject`, signed by `issuer`'s key."""
    claims: dict[str, Any] = {"iat": int(time.time()), "iss": _public(issuer), "name": name,
                              "sub": subject, "nats": {**nats, "version": 2}}  # fmt: skip
    digest = hashlib.sha256(json.dumps(claims, sort_keys=True).encode()).digest()
    claims["jti"] = base64.b32encode(digest).decode().rstrip("=")
    head = _b64(json.dumps({"typ": "JWT", "alg": "ed25519-nkey"}).encode())
    body = _b64(json.dumps(claims).encode())
    return f"{head}.{body}.{_b64(issuer.sign(f'{head}.{body}'.encode()))}"


def _creds(user_jwt: str, user: Any) -> str:
    return (
        f"-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n"
        f"-----BEGIN USER NKEY SEED-----\n{user.seed.decode()}\n------END USER NKEY SEED------\n"
    )


@pytest.fixture
def operator_mode(tmp_path: Path) -> Iterator[tuple[Node, dict[str, Path]]]:
    """A JetStream server in operator mode with one account for the hive, and a
    credentials file for hosts a and b (held to their permissions) and for x, a user
    of an account the server does not know."""
    operator, system, hive = (_keys(p) for p in (nkeys.PREFIX_BYTE_OPERATOR,
                              nkeys.PREFIX_BYTE_ACCOUNT, nkeys.PREFIX_BYTE_ACCOUNT))  # fmt: skip
    stranger = _keys(nkeys.PREFIX_BYTE_ACCOUNT)
    streams = {"mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1}
    accounts = {
        _public(system): _jwt(operator, _public(system), "SYS",
                              {"type": "account", "limits": UNLIMITED}),
        _public(hive): _jwt(operator, _public(hive), "hive",
                            {"type": "account", "limits": {**UNLIMITED, **streams}}),
    }  # fmt: skip
    creds = {}
    for host in ("a", "b", "x"):
        user = _keys(nkeys.PREFIX_BYTE_USER)
        publish, subscribe = names.permissions(HIVE_ID, host)
        claims = {"type": "user", "pub": {"allow": publish}, "sub": {"allow": subscribe},
                  "resp": {"max": 1, "ttl": 0}, "subs": -1, "data": -1, "payload": -1}  # fmt: skip
        signer = stranger if host == "x" else hive
        creds[host] = tmp_path / f"{host}.creds"
        creds[host].write_text(_creds(_jwt(signer, _public(user), host, claims), user))
    node = Node(NODE_INDEX, tmp_path, worker_port_base())
    node.dir.mkdir(parents=True)
    preload = "\n".join(f"  {key}: {value}" for key, value in accounts.items())
    node.config.write_text(
        f"listen: 127.0.0.1:{node.client_port}\n"
        f"operator: {_jwt(operator, _public(operator), 'op', {'type': 'operator'})}\n"
        f"system_account: {_public(system)}\n"
        f"resolver: MEMORY\nresolver_preload: {{\n{preload}\n}}\n"
        f'jetstream {{ store_dir: "{node.store}", max_mem: 64MB, max_file: 256MB }}\n'
    )
    node.spawn(find_binary())
    try:
        node.wait_for(SERVER_READY, time.monotonic() + 20, "ready")
        yield node, creds
    finally:
        if node.proc is not None:
            node.proc.terminate()
            node.reap(10)


def _env(node: Node, host: str, creds: Path) -> dict[str, str]:
    return {"HIVE_NATS_URL": node.url, "HIVE_HIVE_ID": HIVE_ID, "HIVE_HOST_ID": host,
            "HIVE_NATS_REPLICAS": "1", "HIVE_NATS_CREDS": str(creds)}  # fmt: skip


async def test_hosts_log_in_with_credentials_files(
    operator_mode: tuple[Node, dict[str, Path]],
) -> None:
    node, creds = operator_mode
    hosts = Hosts(None, {h: _env(node, h, creds[h]) for h in ("a", "b")})
    stranger = Hosts(None, {"x": _env(node, "x", creds["x"])})
    await login_holds(hosts, stranger, "by creds")
