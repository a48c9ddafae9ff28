"""Which environment variables a run may be given: the one list the gateway and the executor agree on.

bash and the dynamic loader read some variables before the first line of a script runs, so whoever sets
them decides what code runs, not the script's author. A saved command is an admin's script that `run`
tokens may start with their own `env`, so these names are refused for everyone, everywhere an `env`
enters (runs, commands, workflow steps), and again by the executor for a request that did not come
through the gateway:

- bash: `BASH_ENV`, `ENV` (files sourced at start), `SHELLOPTS`, `BASHOPTS`, `POSIXLY_CORRECT`,
  `BASH_COMPAT` (options: `xtrace`, `posix`, …), `PS4` (expanded, so it runs `$(…)`, under `xtrace`),
  `PROMPT_COMMAND`, `IFS`, `GLOBIGNORE`, `CDPATH`, `EXECIGNORE` (how words, globs, `cd` and lookups
  resolve), `BASH_XTRACEFD`, `BASH_LOADABLES_PATH` (`enable -f`), exported functions `BASH_FUNC_*`
  (and any name with `%%` or `()`, their encodings);
- the loader and glibc: every `LD_*` (`LD_PRELOAD`, `LD_LIBRARY_PATH`, `LD_AUDIT`, …), `GCONV_PATH`
  (iconv loads modules from it), `GLIBC_TUNABLES`.

`PATH`, and the variables that tell common interpreters where to find code or which code to load first
(`PYTHONPATH`, `PERL5OPT`, `NODE_OPTIONS`, …), decide which program a name in the script means: only
an admin may set them, i.e. a saved command's own `env`, a workflow step's (definitions are an admin's),
or a run requested by an admin. `PYTHONSTARTUP` is left alone: Python reads it only when interactive.
The executor cannot tell who asked for a run, so it lets these through (NATS permissions decide who may
publish requests at all).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# What a shell can export: a letter or `_`, then letters, digits and `_`.
NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
_NAME = re.compile(NAME_PATTERN)

REFUSED_NAMES = frozenset(
    {
        "BASH_ENV",
        "ENV",
        "SHELLOPTS",
        "BASHOPTS",
        "POSIXLY_CORRECT",
        "BASH_COMPAT",
        "PS4",
        "PROMPT_COMMAND",
        "IFS",
        "GLOBIGNORE",
        "CDPATH",
        "EXECIGNORE",
        "BASH_XTRACEFD",
        "BASH_LOADABLES_PATH",
        "GCONV_PATH",
        "GLIBC_TUNABLES",
    }
)
REFUSED_PREFIXES = ("LD_", "BASH_FUNC_")
# How bash encodes an exported function in a name (`BASH_FUNC_f%%`, older `f()`).
REFUSED_PARTS = ("%%", "()")

ADMIN_ONLY_NAMES = frozenset(
    {
        "PATH",
        "PYTHONPATH",
        "PYTHONHOME",
        "PERL5LIB",
        "PERLLIB",
        "PERL5OPT",
        "RUBYLIB",
        "RUBYOPT",
        "NODE_PATH",
        "NODE_OPTIONS",
        "JAVA_TOOL_OPTIONS",
        "_JAVA_OPTIONS",
    }
)


def valid_name(name: str) -> bool:
    return _NAME.match(name) is not None


def is_refused(name: str) -> bool:
    """True for a name nobody may set (see the module doc)."""
    return name in REFUSED_NAMES or name.startswith(REFUSED_PREFIXES) or any(part in name for part in REFUSED_PARTS)


def refused_names(names: Iterable[str]) -> list[str]:
    """The names in `names` nobody may set, sorted."""
    return sorted(n for n in names if is_refused(n))


def admin_only_names(names: Iterable[str]) -> list[str]:
    """The names in `names` only an admin may set, sorted."""
    return sorted(n for n in names if n in ADMIN_ONLY_NAMES)


def refusal(names: Iterable[str]) -> str | None:
    """Why an `env` with these names must not reach a script, or None when it may."""
    refused = refused_names(names)
    if not refused:
        return None
    return (
        f"may not set {', '.join(refused)}: bash or the program loader read these as they start, so they "
        "would run code the script does not contain; remove them (a script that needs one can set it itself)"
    )


def admin_only_refusal(names: Iterable[str]) -> str | None:
    """Why a caller who is not an admin must not set these names, or None when they may."""
    only = admin_only_names(names)
    if not only:
        return None
    return (
        f"only an admin may set {', '.join(only)}: they decide which program a name in the script runs; "
        "put them in a saved command's env (admins manage those) or ask an admin to start the run"
    )
