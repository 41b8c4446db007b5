"""The docs name every CLI command, socket verb and setting; README and CI start from ./dev."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from pydantic_settings import BaseSettings

from hive_agent.settings import HarnessSettings
from hive_core.cli import build
from hive_core.settings import Settings
from hive_share.requests import ALL_VERBS, HARNESS_VERBS

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def _docs_text() -> str:
    pages = sorted(DOCS.glob("*.md"))
    assert pages, f"no docs/*.md under {DOCS}"
    return "\n".join(page.read_text(encoding="utf-8") for page in pages)


def _missing(patterns: dict[str, str], text: str) -> list[str]:
    """The keys whose regex does not occur in `text`."""
    return sorted(key for key, pattern in patterns.items() if re.search(pattern, text) is None)


def _cli_commands() -> list[str]:
    return sorted(build().commands)


def _env_vars(model: type[BaseSettings]) -> list[str]:
    prefix = str(model.model_config.get("env_prefix", ""))
    return sorted(f"{prefix}{field}".upper() for field in model.model_fields)


def _first_lines(text: str, count: int) -> list[str]:
    """The first `count` non-empty lines, code fences skipped."""
    lines = [line.strip() for line in text.splitlines()]
    return [line for line in lines if line and not line.startswith("```")][:count]


def _words(names: Iterable[str]) -> str:
    return ", ".join(names)


def test_every_cli_command_is_documented() -> None:
    commands = _cli_commands()
    assert "serve" in commands
    patterns = {c: rf"hive-core {re.escape(c)}(?![\w-])" for c in commands}
    missing = _missing(patterns, _docs_text())
    assert not missing, f"docs/*.md never mention `hive-core <cmd>` for: {_words(missing)}"


def test_every_socket_verb_is_documented() -> None:
    verbs = sorted(ALL_VERBS | HARNESS_VERBS)
    assert "send" in verbs
    patterns = {v: rf"`{re.escape(v)}`" for v in verbs}
    missing = _missing(patterns, _docs_text())
    assert not missing, f"docs/*.md never mention these socket verbs as `verb`: {_words(missing)}"


def test_every_daemon_setting_is_documented() -> None:
    names = _env_vars(Settings)
    assert "HIVE_STATE_DIR" in names
    missing = _missing({n: rf"{n}(?!\w)" for n in names}, _docs_text())
    assert not missing, f"docs/*.md never mention these hive-core settings: {_words(missing)}"


def test_every_harness_setting_is_documented() -> None:
    names = _env_vars(HarnessSettings)
    assert "HIVE_AGENT_NAME" in names
    missing = _missing({n: rf"{n}(?!\w)" for n in names}, _docs_text())
    assert not missing, f"docs/*.md never mention these harness settings: {_words(missing)}"


def test_readme_opens_with_the_two_dev_commands() -> None:
    first = _first_lines((ROOT / "README.md").read_text(encoding="utf-8"), 2)
    wanted = ["./dev serve", "./dev test"]
    wrong = [
        f"line {i + 1} should start with {w!r}, got {got!r}"
        for i, (w, got) in enumerate(zip(wanted, first + [""] * 2, strict=False))
        if not got.startswith(w)
    ]
    assert not wrong, "README.md must open with the two ./dev commands: " + "; ".join(wrong)


def test_dev_tells_hive_core_to_name_dev_in_its_hints() -> None:
    script = (ROOT / "dev").read_text(encoding="utf-8")
    export = script.find("export HIVE_CLI_NAME=")
    run = script.find('exec "$venv/bin/hive-core"')
    assert 0 <= export < run, "./dev must export HIVE_CLI_NAME before it runs hive-core"


def test_ci_runs_the_same_command_as_a_developer() -> None:
    script = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    code = [line for line in script.splitlines() if not line.lstrip().startswith("#")]
    assert any(re.search(r"\./dev test(?!\S)", line) for line in code), (
        f".ci/run does not call `./dev test`; its lines are: {code}"
    )


async def test_every_mcp_tool_is_documented() -> None:
    from hive_agent.mcp_tools import Tools, build_server

    names: set[str] = set()
    for role in ("agent", "manager"):
        server = build_server(role, Tools(ROOT / "unused.sock", lambda status: None))
        names |= {tool.name for tool in await server.list_tools()}
    assert {"send", "recv", "set_status", "whoami", "request_spawn", "list"} <= names
    patterns = {n: rf"`{re.escape(n)}(?:\(|`)" for n in names}
    missing = _missing(patterns, _docs_text())
    assert not missing, f"docs/*.md never mention the MCP tool `<name>` for: {_words(missing)}"


_LINK = re.compile(r"\]\(([^)\s]+)\)")
_OUTSIDE_NOTES = re.compile(
    r"\.\./shared/|(?<![\w-])shared/(?:spec|ARCHITECTURE|STYLE|SECURITY|PERFORMANCE)"
)


def _markdown_pages() -> list[Path]:
    return [ROOT / "README.md", ROOT / "CLAUDE.md", *sorted(DOCS.glob("*.md"))]


def _anchors(page: Path) -> set[str]:
    """GitHub's heading slugs: lowercase, punctuation dropped, spaces to dashes."""
    slugs = set()
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            slugs.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return slugs


def _broken_link(page: Path, target: str) -> str | None:
    """Why `target`, linked from `page`, does not land on something in this repository."""
    if re.match(r"[a-z]+:", target):
        return None  # a URL, not a path into the repository
    path_part, _, anchor = target.partition("#")
    dest = (page.parent / path_part).resolve() if path_part else page
    if not dest.is_relative_to(ROOT):
        return "leaves the repository"
    if not dest.exists():
        return "names a file that does not exist"
    if anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
        return f"names a heading #{anchor} that {dest.name} does not have"
    return None


def test_every_link_in_the_docs_stays_inside_the_repository() -> None:
    broken = []
    for page in _markdown_pages():
        text = page.read_text(encoding="utf-8")
        for target in _LINK.findall(text):
            why = _broken_link(page, target)
            if why:
                broken.append(f"{page.relative_to(ROOT)}: ({target}) {why}")
        broken += [
            f"{page.relative_to(ROOT)}: mentions {m.group(0)!r}, which users of the repository "
            "do not have"
            for m in _OUTSIDE_NOTES.finditer(text)
        ]
    assert not broken, "\n".join(broken)


def test_the_entry_page_lists_every_doc() -> None:
    entry = (ROOT / "CLAUDE.md").read_text(encoding="utf-8")
    missing = [p.name for p in sorted(DOCS.glob("*.md")) if not re.search(rf"\b{p.name}\b", entry)]
    assert not missing, f"CLAUDE.md's file map does not list: {_words(missing)}"
