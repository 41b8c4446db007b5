"""Shell completion for `hive-core`: `--show-completion` prints a script, `--install-completion`
installs it, for bash, zsh or fish.

The scripts are static, written from the argparse parsers: commands, each
command's options, and the values of options with choices. A tab press runs no
Python. After an option that takes a value (a path, a number) bash and zsh fall
back to file names.
"""

from __future__ import annotations

import argparse
import os
import shlex
from pathlib import Path

SHELLS = ("bash", "zsh", "fish")


class CompletionError(Exception):
    """The shell cannot be told or is not supported."""


class _Option:
    # A plain class, not a dataclass: dataclasses imports inspect, ~8 ms on every command.
    def __init__(
        self, flags: tuple[str, ...], takes_value: bool, choices: tuple[str, ...], help: str
    ) -> None:
        self.flags = flags
        self.takes_value = takes_value
        self.choices = choices
        self.help = help


class _Command:
    def __init__(self, name: str, help: str, options: tuple[_Option, ...]) -> None:
        self.name = name
        self.help = help
        self.options = options


def run(args: argparse.Namespace, prog: str, commands: dict[str, argparse.ArgumentParser]) -> str:
    """The script, or where it was installed (`args` has the two options, `None` if absent).

    Raises:
        CompletionError: the shell named, or else `$SHELL`, is not one of SHELLS.
    """
    install = args.install_completion is not None
    shell = (args.install_completion if install else args.show_completion) or _shell_of_user()
    if shell not in SHELLS:
        raise CompletionError(f"no completion for {shell!r}; name one of {', '.join(SHELLS)}")
    text = script(shell, prog, commands)
    if not install:
        return text.rstrip("\n")
    path = _install(shell, prog, text, Path.home())
    return f"{shell} completion installed in {path}; it takes effect in a new shell"


def _shell_of_user() -> str:
    shell = Path(os.environ.get("SHELL", "")).name
    if shell not in SHELLS:
        told, known = shell or "(unset)", ", ".join(SHELLS)
        raise CompletionError(f"cannot tell the shell from SHELL={told}; name one of {known}")
    return shell


def _spec(commands: dict[str, argparse.ArgumentParser]) -> list[_Command]:
    found = []
    for name, sub in commands.items():
        options = tuple(
            _Option(
                flags=tuple(a.option_strings),
                takes_value=a.nargs != 0,
                choices=tuple(map(str, a.choices or ())),
                help=a.help or "",
            )
            for a in sub._actions
            if a.option_strings
        )
        found.append(_Command(name, (sub.description or "").split("\n")[0], options))
    return found


def _top_options() -> tuple[_Option, ...]:
    shells = _Option(("--show-completion", "--install-completion"), True, SHELLS, "completion")
    return (
        _Option(("--help", "-h"), False, (), "Show help"),
        _Option(("--version",), False, (), "Print the version"),
        shells,
    )


def script(shell: str, prog: str, commands: dict[str, argparse.ArgumentParser]) -> str:
    spec = _spec(commands)
    if shell == "fish":
        return _fish(prog, spec)
    bash = _bash(prog, spec)
    if shell == "bash":
        return bash
    return (
        f"#compdef {prog}\n"
        "(( $+functions[compdef] )) || { autoload -U +X compinit && compinit; }\n"
        "autoload -U +X bashcompinit && bashcompinit\n" + bash
    )


def _function(prog: str) -> str:
    return "_" + "".join(c if c.isalnum() else "_" for c in prog) + "_complete"


def _bash(prog: str, spec: list[_Command]) -> str:
    cases: list[str] = []
    for cmd_name, options in [("", _top_options())] + [(c.name, c.options) for c in spec]:
        for option in options:
            if not option.takes_value:
                continue
            pattern = "|".join(f"{cmd_name}:{flag}" for flag in option.flags)
            if option.choices:
                cases.append(f'        {pattern}) words="{" ".join(option.choices)}" ;;')
            else:
                cases.append(f"        {pattern}) return ;;")
    top = [f for o in _top_options() for f in o.flags] + [c.name for c in spec]
    cases.append(f'        :*) words="{" ".join(top)}" ;;')
    for c in spec:
        flags = [f for o in c.options for f in o.flags]
        cases.append(f'        {c.name}:*) words="{" ".join(flags)}" ;;')
    func = _function(prog)
    return (
        f"# {prog} completion for bash ({prog} --show-completion bash)\n"
        f"{func}() {{\n"
        "    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]} cmd= words= i\n"
        "    for ((i = 1; i < COMP_CWORD; i++)); do\n"
        "        case ${COMP_WORDS[i]} in -*) ;; *) cmd=${COMP_WORDS[i]}; break ;; esac\n"
        "    done\n"
        '    case "$cmd:$prev" in\n' + "\n".join(cases) + "\n"
        "    esac\n"
        '    COMPREPLY=($(compgen -W "$words" -- "$cur"))\n'
        "}\n"
        f"complete -o default -F {func} {prog}\n"
    )


def _fish(prog: str, spec: list[_Command]) -> str:
    q = shlex.quote
    lines = [
        f"# {prog} completion for fish ({prog} --show-completion fish)",
        f"complete -c {prog} -f",
    ]
    top = "__fish_use_subcommand"
    for c in spec:
        lines.append(f"complete -c {prog} -n {top} -a {q(c.name)} -d {q(c.help)}")
    for cond, options in [(top, _top_options())] + [
        (q(f"__fish_seen_subcommand_from {c.name}"), c.options) for c in spec
    ]:
        for o in options:
            parts = [f"complete -c {prog} -n {cond}"]
            for flag in o.flags:
                parts.append(f"-l {flag[2:]}" if flag.startswith("--") else f"-s {flag[1:]}")
            if o.choices:
                parts.append(f"-x -a {q(' '.join(o.choices))}")
            elif o.takes_value:
                parts.append("-r -F")
            parts.append(f"-d {q(o.help.split('(')[0].strip() or o.help)}")
            lines.append(" ".join(parts))
    return "\n".join(lines) + "\n"


def _install(shell: str, prog: str, text: str, home: Path) -> Path:
    """Write the script where the shell finds it; bash and zsh also get a `source` line in
    their rc file (once)."""
    if shell == "fish":
        path = home / ".config" / "fish" / "completions" / f"{prog}.fish"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path
    folder, rc = (".bash_completions", ".bashrc") if shell == "bash" else (".zfunc", ".zshrc")
    path = home / folder / f"{prog}.{shell if shell == 'zsh' else 'sh'}"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    line = f"source {shlex.quote(str(path))}"
    rc_path = home / rc
    existing = rc_path.read_text(encoding="utf-8") if rc_path.exists() else ""
    if line not in existing.splitlines():
        with rc_path.open("a", encoding="utf-8") as f:
            f.write(("" if not existing or existing.endswith("\n") else "\n") + line + "\n")
    return path
