"""Recording shims of `nixos-container`, `nix`, `journalctl` and `machinectl` for the
nixos backend.

One script, installed under the four names, appends every call (tool and argv) as a
JSON line to `calls.jsonl`, then answers:

- a scripted reply, when one in `replies.json` matches (the tool and every word of it
  in the argv): its exit code, stdout and stderr;
- a crash point, when `armed.json` matches: it tells the test its pid on the `reached`
  socket and waits to be killed (like the git shim of test_deploy_crash);
- otherwise the emulation: a "container" is a directory under `containers/`, and
  starting it runs the real harness (`python -m hive_agent`) with the paths the
  container would bind (`/state`, `/run/hive`) mapped back to the host's; `nix`
  succeeds and keeps a `flake.lock` whose `hyperhive` revision is `hyperhive-rev`.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hive_core.containers.local import STRIPPED_ENV

TOOLS = ("nixos-container", "nix", "journalctl", "machinectl")
"""`machinectl` is found beside `nixos-container`; it only records (`bind` succeeds)."""
REACH_TIMEOUT = 60.0

SCRIPT = r"""#!{python}
import json, os, re, select, signal, socket, subprocess, sys
ROOT = {root!r}
STATE = {state!r}
RUN = {run!r}
CONF = {conf!r}
PY = {python!r}
MANAGER = "hm1nd"
tool = os.path.basename(sys.argv[0])
args = sys.argv[1:]
with open(os.path.join(ROOT, "calls.jsonl"), "a") as f:
    f.write(json.dumps({{"tool": tool, "argv": args}}) + "\n")


def matches(rule):
    return rule.get("tool") == tool and all(w in args for w in rule.get("words", []))


armed = os.path.join(ROOT, "armed.json")
try:
    with open(armed) as f:
        want = json.load(f)
except FileNotFoundError:
    want = None
if want is not None and matches(want):
    want["skip"] -= 1
    if want["skip"] < 0:
        os.unlink(armed)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.sendto(str(os.getpid()).encode(), os.path.join(ROOT, "reached"))
        signal.pause()
    with open(armed, "w") as f:
        json.dump(want, f)

try:
    with open(os.path.join(ROOT, "replies.json")) as f:
        replies = json.load(f)
except FileNotFoundError:
    replies = []
for rule in replies:
    if matches(rule):
        sys.stdout.write(rule.get("stdout", ""))
        sys.stderr.write(rule.get("stderr", ""))
        sys.exit(rule.get("code", 0))


def cdir(name):
    return os.path.join(ROOT, "containers", name)


def pid_of(name):
    try:
        pid = int(open(os.path.join(cdir(name), "pid")).read())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return 0
    with open(f"/proc/{{pid}}/stat") as f:
        if f.read().split(") ")[-1].startswith("Z"):
            return 0
    return pid


def up(name):
    return os.path.exists(os.path.join(cdir(name), "up"))


def harness_env(name):
    agent = name[2:]
    with open(os.path.join(ROOT, "base-env.json")) as f:
        env = json.load(f)
    text = open(os.path.join(STATE, "meta", "flake.nix")).read()
    block = text[text.index('"' + agent + '" = nixpkgs.lib.nixosSystem'):]
    port = re.search(r"port = (\d+);", block).group(1)
    sock_dir = os.path.join(RUN, "agents", agent)
    role = "manager" if agent == MANAGER else "agent"
    env.update(
        HIVE_AGENT_NAME=agent, HIVE_ROLE=role, HIVE_WEB_PORT=port,
        HIVE_SOCKET=os.path.join(sock_dir, "manager.sock" if role == "manager" else "agent.sock"),
        HIVE_HARNESS_SOCKET=os.path.join(sock_dir, "harness.sock"),
        HIVE_STATE=os.path.join(STATE, "agents", agent, "state"),
        HIVE_AGENT_CONFIG=os.path.join(STATE, "agents", agent, "applied", "agent.toml"),
    )
    return env, role


def launch(name):
    env, role = harness_env(name)
    log = open(os.path.join(cdir(name), "journal.log"), "ab")
    proc = subprocess.Popen(
        [PY, "-m", "hive_agent", "mind" if role == "manager" else "agent", "serve"],
        env=env, cwd=env["HIVE_STATE"], stdin=subprocess.DEVNULL, stdout=log, stderr=log,
        start_new_session=True,
    )
    with open(os.path.join(cdir(name), "pid"), "w") as f:
        f.write(str(proc.pid))


def halt(name):
    pid = pid_of(name)
    if pid:
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            return
        os.killpg(pid, signal.SIGTERM)
        exited, _, _ = select.select([fd], [], [], 20)  # readable once the harness has exited
        os.close(fd)
        if not exited:
            os.killpg(pid, signal.SIGKILL)


def built_from(name, ref):
    agent = ref.split("#", 1)[1]
    text = open(os.path.join(ref.split("#", 1)[0], "flake.nix")).read()
    url = re.search(r'"agent-' + agent + r'"\.url = "([^"]*)"', text).group(1)
    with open(os.path.join(cdir(name), "built"), "w") as f:
        f.write(url)


def need(name):
    if not os.path.isdir(cdir(name)):
        sys.stderr.write(f"/var/lib/nixos-containers/{{name}}: no such container\n")
        sys.exit(1)


if tool == "nixos-container":
    verb, name = args[0], (args[1] if len(args) > 1 else "")
    if verb == "list":
        os.makedirs(os.path.join(ROOT, "containers"), exist_ok=True)
        for entry in sorted(os.listdir(os.path.join(ROOT, "containers"))):
            print(entry)
    elif verb == "create":
        if os.path.isdir(cdir(name)):
            sys.stderr.write(f"container {{name}} already exists\n")
            sys.exit(1)
        os.makedirs(cdir(name))
        with open(os.path.join(CONF, name + ".conf"), "w") as f:
            f.write("PRIVATE_NETWORK=0\nHOST_ADDRESS=\nLOCAL_ADDRESS=\n")
        built_from(name, args[args.index("--flake") + 1])
    elif verb == "update":
        need(name)
        built_from(name, args[args.index("--flake") + 1])
    elif verb == "start":
        need(name)
        open(os.path.join(cdir(name), "up"), "w").close()
        if not pid_of(name):
            launch(name)
    elif verb == "stop":
        need(name)
        halt(name)
        if up(name):
            os.unlink(os.path.join(cdir(name), "up"))
    elif verb == "status":
        need(name)
        print("up" if up(name) else "down")
    elif verb == "destroy":
        need(name)
        halt(name)
        import shutil
        shutil.rmtree(cdir(name))
        if os.path.exists(os.path.join(CONF, name + ".conf")):
            os.unlink(os.path.join(CONF, name + ".conf"))
    elif verb == "run":
        need(name)
        command = args[args.index("--") + 1:]
        if not up(name):
            sys.stderr.write(f"{{name}} is not running\n")
            sys.exit(1)
        if command[:2] == ["systemctl", "show"]:
            print(pid_of(name))
        elif command[:2] == ["systemctl", "restart"]:
            halt(name)
            launch(name)
        else:
            sys.exit(0)
    else:
        sys.stderr.write(f"unknown verb {{verb}}\n")
        sys.exit(2)
elif tool == "nix":
    words = [a for a in args if not a.startswith("-") and a != "nix-command flakes"]

    def write_lock(flake):
        rev = open(os.path.join(ROOT, "hyperhive-rev")).read().strip()
        lock = {{"nodes": {{"root": {{"inputs": {{"hyperhive": "hyperhive"}}}},
                           "hyperhive": {{"locked": {{"rev": rev}}}}}},
                "root": "root", "version": 7}}
        with open(os.path.join(flake, "flake.lock"), "w") as f:
            json.dump(lock, f, indent=2)

    if words[:2] == ["flake", "lock"]:
        if not os.path.exists(os.path.join(words[2], "flake.lock")):
            write_lock(words[2])
    elif words[:3] == ["flake", "update", "hyperhive"]:
        write_lock(args[args.index("--flake") + 1])
sys.exit(0)
"""


@dataclass
class Shims:
    """The shims of one test: where they are, what they recorded, what they will answer."""

    root: Path
    conf: Path

    @classmethod
    def install(cls, root: Path, state: Path, run: Path, env: Mapping[str, str]) -> Shims:
        conf = root / "conf"
        conf.mkdir(parents=True, exist_ok=True)
        text = SCRIPT.format(python=sys.executable, root=str(root), state=str(state),
                             run=str(run), conf=str(conf))  # fmt: skip
        for tool in TOOLS:
            path = root / tool
            path.write_text(text)
            path.chmod(0o755)
        base = {k: v for k, v in env.items() if k not in STRIPPED_ENV}
        (root / "base-env.json").write_text(json.dumps(base))
        (root / "hyperhive-rev").write_text("rev-1\n")
        return cls(root, conf)

    def settings_env(self) -> dict[str, str]:
        """The HIVE_* settings that point hive-core at these shims."""
        return {
            "HIVE_BACKEND": "nixos",
            "HIVE_NIXOS_CONTAINER": str(self.root / "nixos-container"),
            "HIVE_NIX": str(self.root / "nix"),
            "HIVE_JOURNALCTL": str(self.root / "journalctl"),
            "HIVE_HYPERHIVE_FLAKE": "path:/nonexistent/hyperhive",
            "HIVE_NIXOS_CONTAINERS_CONF": str(self.conf),
        }

    def calls(self, tool: str | None = None) -> list[list[str]]:
        """Every recorded argv (of `tool` only, when given), oldest first."""
        path = self.root / "calls.jsonl"
        if not path.exists():
            return []
        got = [json.loads(line) for line in path.read_text().splitlines()]
        return [c["argv"] for c in got if tool is None or c["tool"] == tool]

    def clear_calls(self) -> None:
        (self.root / "calls.jsonl").unlink(missing_ok=True)

    def reply(self, tool: str, words: list[str], code: int = 0, stdout: str = "",
              stderr: str = "") -> None:  # fmt: skip
        """Answer the next calls of `tool` whose argv holds every one of `words` so."""
        path = self.root / "replies.json"
        rules: list[dict[str, Any]] = json.loads(path.read_text()) if path.exists() else []
        rules.append({"tool": tool, "words": words, "code": code, "stdout": stdout,
                      "stderr": stderr})  # fmt: skip
        path.write_text(json.dumps(rules))

    def clear_replies(self) -> None:
        (self.root / "replies.json").unlink(missing_ok=True)

    def arm(self, tool: str, words: list[str], skip: int) -> None:
        (self.root / "armed.json").write_text(
            json.dumps({"tool": tool, "words": words, "skip": skip})
        )

    def built(self, name: str) -> str:
        """The agent input URL the container `h-<name>` was last created or updated from."""
        return (self.root / "containers" / f"h-{name}" / "built").read_text()

    def containers(self) -> list[str]:
        found = self.root / "containers"
        return sorted(p.name for p in found.iterdir()) if found.is_dir() else []

    def stop_all(self) -> None:
        """Kill every emulated container's harness (containers outlive hive-core)."""
        for name in self.containers():
            pid_file = self.root / "containers" / name / "pid"
            try:
                pid = int(pid_file.read_text())
                os.killpg(pid, signal.SIGKILL)
            except (OSError, ValueError):
                continue


def reached_socket(root: Path) -> socket.socket:
    """Where an armed shim reports its pid (bound before anything is armed)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(root / "reached"))
    sock.settimeout(REACH_TIMEOUT)
    return sock
