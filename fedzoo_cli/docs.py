"""Tables in the docs that are generated from the code, never typed twice.

A generated block sits between two markers in a Markdown file::

    <!-- methods:begin -->
    ...
    <!-- methods:end -->

``python -m fedzoo_cli.docs`` rewrites every such block in README.md and docs/*.md from
the method registry (:func:`fedzoo.methods.methods`); ``python -m fedzoo_cli.docs --check``
rewrites nothing and exits 1 naming each file whose committed block differs
(``tests/core/test_docs_claims.py`` runs the same check).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def methods_table() -> str:
    """One row per registered method: name, what it does, exchanges per round, module."""
    from fedzoo.methods import methods

    rows = ["| method | what it does | exchanges per round | module |", "|---|---|---|---|"]
    for m in methods():
        summary = m.summary.replace("|", "\\|")
        exchanges = "train + sync" if m.has_sync else "train"
        module = type(m).__module__.replace(".", "/") + ".py"
        rows.append(f"| `{m.name}` | {summary} | {exchanges} | `{module}` |")
    return "\n".join(rows)


def _fields(spec: dict) -> str:
    from fedzoo.payload import ArraySpec

    if not spec:
        return "—"
    out = []
    for key, field in spec.items():
        kind = "array" if isinstance(field, ArraySpec) else field.kind
        out.append(f"`{key}` ({kind}{', optional' if field.optional else ''})")
    return ", ".join(out)


def messages_table() -> str:
    """One row per registered method: the fields its messages and replies carry beyond
    the shared ones (from the method's ``*_spec`` hooks, default configuration)."""
    from fedzoo.config import RunConfig
    from fedzoo.methods import methods

    rows = ["| method | train → | train ← | sync → | sync ← |", "|---|---|---|---|---|"]
    dim = 10
    for m in methods():
        config = RunConfig(method=m.name)
        sync = ([_fields(m.sync_message_spec(config, dim)), _fields(m.sync_reply_spec(config, dim))]
                if m.has_sync else ["no sync", "no sync"])
        rows.append(f"| `{m.name}` | {_fields(m.train_message_spec(config, dim))} | "
                    f"{_fields(m.train_reply_spec(config, dim))} | " + " | ".join(sync) + " |")
    return "\n".join(rows)


GENERATORS: dict[str, Callable[[], str]] = {"methods": methods_table, "messages": messages_table}


def doc_files(root: Path = REPO_ROOT) -> list[Path]:
    """The Markdown files that may hold generated blocks."""
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def render(text: str) -> str:
    """``text`` with every generated block rewritten."""
    for name, make in GENERATORS.items():
        pattern = re.compile(rf"(<!-- {name}:begin -->\n).*?(<!-- {name}:end -->)", re.S)
        text = pattern.sub(lambda m, make=make: m.group(1) + make() + "\n" + m.group(2), text)
    return text


def stale(root: Path = REPO_ROOT) -> list[Path]:
    """The files whose generated blocks differ from what the code generates now."""
    return [p for p in doc_files(root) if p.exists() and render(p.read_text()) != p.read_text()]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fedzoo_cli.docs", description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="change nothing; exit 1 if a generated block is out of date")
    args = parser.parse_args(argv)
    files = stale()
    if args.check:
        for p in files:
            print(f"{p.relative_to(REPO_ROOT)}: generated block out of date; run "
                  "`python -m fedzoo_cli.docs`", file=sys.stderr)
        return 1 if files else 0
    for p in files:
        p.write_text(render(p.read_text()))
        print(f"rewrote {p.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
