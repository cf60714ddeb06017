"""The docs make claims the code can check; this test checks them (README, docs/*.md,
BENCHMARKS.md, RELIABILITY.md, simulations/**/README.md).

* every ``--flag`` written after ``fedzoo <subcommand>`` (in a code block, or in one
  inline code span) is an option of that subcommand's parser
  (:func:`fedzoo_cli.main.build_parser`; ``attack prepare`` has its own parser);
* every ``--flag`` written after ``simulations/....py`` (or ``python -m fedzoo_cli.docs``)
  is an option that script declares (``add_argument`` calls read from its source);
* every other ``--flag`` anywhere in the docs is an option of some parser of this
  repository, or of an outside tool named in :data:`OUTSIDE_FLAGS` (with the reason);
* every repository path written in backticks (``fedzoo/methods/base.py``,
  ``docs/attack-grid.png``, ``simulations/benchmarks/peers.py``) and every relative
  Markdown link exists;
* every method named as ``--method X``, ``--methods a,b``, ``method="x"`` or
  ``methods=["a", "b"]`` is registered;
* the generated blocks (the README's method table) equal what ``python -m
  fedzoo_cli.docs`` generates from the registry now.

A failure names the file, the line and the stale claim; fix the doc (or the code).
"""

from __future__ import annotations

import argparse
import ast
import re
from functools import cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

DOCS = sorted({REPO / "README.md", REPO / "BENCHMARKS.md", REPO / "RELIABILITY.md",
               *(REPO / "docs").glob("*.md"), *(REPO / "simulations").rglob("README.md")})

# Flags of outside programs that no Python file here writes (the Flower CLI's flags the
# deployment guide uses are also written by simulations/deploy/run_deployment.py and
# fedzoo_launch, so they are checked against those); each with where and why it appears.
OUTSIDE_FLAGS = {
    "--parent-pid",  # flower-superexec's, found with pkill -f (the deployment guide, RELIABILITY.md)
    "--stream",  # `flwr run . local-sim --stream` (docs/flower.md, the deployment guide)
    "--cacert",  # `curl --cacert` health check of the SuperLink (simulations/deploy/README.md)
    "--now",     # `systemctl enable --now` of the SuperNode unit (simulations/deploy/README.md)
    "--gil",     # `py-spy record --gil`, how the GIL holders were found (BENCHMARKS)
    "--stat",    # `git show --stat cc8f46f`, the files the example method touched (development.md)
}

FEDZOO_SUBCOMMANDS = ("attack prepare", "oracle serve", "run", "compare", "methods", "attack", "metric")
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9]*(?:-[a-z0-9]+)*")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
SPAN = re.compile(r"(?<!`)`([^`]+)`(?!`)")


def _rel(path: Path) -> str:
    return str(path.relative_to(REPO))


@cache
def _registered() -> frozenset[str]:
    from fedzoo.methods import method_names

    return frozenset(method_names())


def _options(parser: argparse.ArgumentParser) -> set[str]:
    return {s for a in parser._actions for s in a.option_strings}


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices[name]
    raise KeyError(name)


@cache
def _fedzoo_options() -> dict[str, frozenset[str]]:
    from fedzoo_cli.attack import build_prepare_parser
    from fedzoo_cli.main import build_parser

    root = build_parser()
    common = _options(root)
    out = {}
    for sub in FEDZOO_SUBCOMMANDS:
        if sub == "attack prepare":
            p = build_prepare_parser()
        elif sub == "oracle serve":
            p = _subparser(_subparser(root, "oracle"), "serve")
        else:
            p = _subparser(root, sub)
        out[sub] = frozenset(_options(p) | common)
    return out


def _declared_flags(source: str) -> set[str]:
    """The ``--options`` a Python file declares (read, not run): the string literals that
    are a whole flag, as ``add_argument("--x", ...)`` or a hand parser's
    ``argv[:1] == ["--plots"]`` write them."""
    return {node.value for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and FLAG.fullmatch(node.value)}


@cache
def _script_options(script: str) -> frozenset[str]:
    source = (REPO / script).read_text()
    flags = _declared_flags(source) | {"--help", "-h"}
    if "add_config_args" in source:  # the run configuration's flags, as `fedzoo run` has them
        flags |= _fedzoo_options()["run"]
    return frozenset(flags)


@cache
def _all_repo_flags() -> frozenset[str]:
    flags: set[str] = set().union(*_fedzoo_options().values())
    for py in REPO.glob("*/**/*.py"):
        if ".venv" not in py.parts and py.parts[len(REPO.parts)] != "tests":
            flags |= _declared_flags(py.read_text())
    return frozenset(flags)


def _lines(text: str, start: int) -> int:
    return text.count("\n", 0, start) + 1


def _commands(text: str):
    """(line, command text) for every logical line of a code block and every inline code
    span outside code blocks (a span may wrap over lines)."""
    for block in FENCE.finditer(text):
        first = _lines(text, block.start())
        lines = block.group(0).split("\n")[1:-1]
        i = 0
        while i < len(lines):
            start, parts = i, [lines[i]]
            while parts[-1].rstrip().endswith("\\") and i + 1 < len(lines):
                i += 1
                parts.append(lines[i])
            cmd = " ".join(p.rstrip().rstrip("\\") for p in parts).split(" #")[0]
            if not cmd.lstrip().startswith("#"):
                yield first + 1 + start, cmd
            i += 1
    prose = FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    for span in SPAN.finditer(prose):
        yield _lines(prose, span.start()), span.group(1).replace("\n", " ")


PROGRAM = re.compile(r"\bfedzoo(?:_cli)?\s+(" + "|".join(FEDZOO_SUBCOMMANDS) + r")\b"
                     r"|\b(simulations/[\w/.-]+\.py)\b|\bfedzoo_cli\.docs\b")


def _flag_claims():
    """(doc, line, program, flag, allowed) for every flag written after a program this
    repository ships."""
    for doc in DOCS:
        text = doc.read_text()
        for line, cmd in _commands(text):
            hits = list(PROGRAM.finditer(cmd))
            for k, hit in enumerate(hits):
                end = hits[k + 1].start() if k + 1 < len(hits) else len(cmd)
                segment = re.split(r"[;|]|&&", cmd[hit.end():end])[0]
                if hit.group(1):
                    program, allowed = f"fedzoo {hit.group(1)}", _fedzoo_options()[hit.group(1)]
                elif hit.group(2):
                    if not (REPO / hit.group(2)).exists():
                        continue  # the path check reports it
                    program, allowed = hit.group(2), _script_options(hit.group(2))
                else:
                    program, allowed = "python -m fedzoo_cli.docs", _script_options("fedzoo_cli/docs.py")
                for flag in FLAG.findall(segment):
                    yield _rel(doc), line, program, flag, allowed


def test_flags_after_a_fedzoo_command_or_script_exist_in_its_parser():
    stale = [f"{doc}:{line}: `{program}` has no option {flag}"
             for doc, line, program, flag, allowed in _flag_claims() if flag not in allowed]
    assert not stale, "stale flags in the docs:\n" + "\n".join(stale)


def test_the_flag_check_sees_the_commands():
    """Guard against a check that passes because it parses nothing."""
    programs = {program for _, _, program, _, _ in _flag_claims()}
    assert {"fedzoo run", "fedzoo compare", "fedzoo attack", "fedzoo attack prepare", "fedzoo metric",
            "fedzoo oracle serve"} <= programs
    assert any(p.startswith("simulations/") for p in programs)
    assert "--budget" in _fedzoo_options()["run"] and "--nonexistent-flag" not in _fedzoo_options()["run"]


def test_every_flag_in_the_docs_exists_somewhere():
    known = _all_repo_flags() | OUTSIDE_FLAGS
    stale = []
    for doc in DOCS:
        text = doc.read_text()
        for m in FLAG.finditer(text):
            if m.group(0) not in known:
                stale.append(f"{_rel(doc)}:{_lines(text, m.start())}: {m.group(0)} is no option of "
                             "any parser here (nor of an outside tool in OUTSIDE_FLAGS)")
    assert not stale, "\n".join(stale)


TOP = {p.name for p in REPO.iterdir() if not p.name.startswith(".")} - {"runs"}
PATH = re.compile(r"^[\w.-]+(?:/[\w.@-]+)*/?$")


def _path_claims():
    """(doc, line, path) for every repository path in backticks and every relative link."""
    for doc in DOCS:
        text = doc.read_text()
        prose = FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)
        for span in SPAN.finditer(prose):
            token = span.group(1).strip()
            token = re.split(r"[:#]", token)[0]  # module.py:function, file.md#anchor
            if PATH.match(token) and "/" in token and token.split("/")[0] in TOP:
                yield _rel(doc), _lines(prose, span.start()), REPO / token, token
        for link in re.finditer(r"\]\(([^)\s]+)\)", prose):
            target = link.group(1).split("#")[0]
            if not re.match(r"^[a-z]+:", target):  # a same-file "#anchor" is doc itself
                yield _rel(doc), _lines(prose, link.start()), doc.parent / target if target else doc, link.group(1)


def _anchors(path: Path) -> set[str]:
    """GitHub's heading anchors of a Markdown file (lower case, punctuation dropped,
    spaces to hyphens, a repeated heading numbered)."""
    seen: dict[str, int] = {}
    out = set()
    text = FENCE.sub("", path.read_text())
    for heading in re.findall(r"^#+\s+(.*?)\s*$", text, re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def _tree_claims():
    """(doc, line, path) for every directory and file a layout tree names: a plain code
    block (no language) whose lines start with ``name/`` or ``name.py`` followed by a
    description; an indented name lies under the last unindented directory."""
    for doc in DOCS:
        text = doc.read_text()
        for block in re.finditer(r"^```\n(.*?)^```", text, re.S | re.M):
            first, top = _lines(text, block.start()), None
            for k, line in enumerate(block.group(1).split("\n")):
                names = []
                for tok in line.split():
                    if not re.fullmatch(r"[\w.-]+(?:/|\.py)", tok):
                        break
                    names.append(tok)
                if not names:
                    continue
                if not line[0].isspace():
                    top = names[0]
                    paths = [REPO / n for n in names]
                elif top and top.endswith("/"):
                    paths = [REPO / top / names[0]]
                else:
                    continue
                for path in paths:
                    yield _rel(doc), first + 1 + k, path


def test_layout_trees_name_existing_paths():
    claims = list(_tree_claims())
    assert len(claims) > 20  # the layout trees of docs/development.md and docs/design.md
    stale = [f"{doc}:{line}: the layout names {path.relative_to(REPO)}, which does not exist"
             for doc, line, path in claims if not path.exists()]
    assert not stale, "\n".join(stale)


def test_paths_in_backticks_and_links_exist():
    claims = list(_path_claims())
    assert len(claims) > 50  # the check reads the docs
    stale = [f"{doc}:{line}: {shown} does not exist" for doc, line, path, shown in claims
             if not path.exists()]
    for doc, line, path, shown in claims:
        anchor = shown.partition("#")[2]
        if anchor and path.suffix == ".md" and path.exists() and anchor not in _anchors(path):
            stale.append(f"{doc}:{line}: {shown}: no heading with the anchor #{anchor}")
    assert not stale, "stale paths in the docs:\n" + "\n".join(stale)


METHOD_CLAIMS = (
    re.compile(r"--methods?[ =]+([a-z][\w.-]*(?:,[a-z][\w.-]*)*)"),
    re.compile(r"\bmethod\s*=\s*[\"']([\w.-]+)[\"']"),
    re.compile(r"\bmethods\s*=\s*\[([^\]]*)\]"),
)


def _method_claims():
    for doc in DOCS:
        text = doc.read_text()
        for pattern in METHOD_CLAIMS:
            for m in pattern.finditer(text):
                for name in re.split(r"[,\s]+", m.group(1)):
                    name = name.strip("\"'")
                    if name:
                        yield _rel(doc), _lines(text, m.start()), name


def test_methods_named_in_the_docs_are_registered():
    claims = list(_method_claims())
    assert len(claims) > 20
    stale = [f"{doc}:{line}: method {name!r} is not registered (registered: {sorted(_registered())})"
             for doc, line, name in claims if name not in _registered()]
    assert not stale, "\n".join(stale)


def test_generated_blocks_match_the_registry():
    from fedzoo_cli import docs

    readme = (REPO / "README.md").read_text()
    assert "<!-- methods:begin -->" in readme and "<!-- methods:end -->" in readme
    stale = [_rel(p) for p in docs.stale(REPO)]
    assert not stale, (f"generated blocks out of date in {stale}; run `python -m fedzoo_cli.docs` "
                       "and commit the result")


def test_generated_method_table_names_every_method(monkeypatch):
    from fedzoo_cli import docs

    table = docs.methods_table()
    for name in _registered():
        assert f"| `{name}` |" in table
    # the check fails on a stale block
    text = "x\n<!-- methods:begin -->\n| old |\n<!-- methods:end -->\n"
    assert docs.render(text) != text and docs.render(docs.render(text)) == docs.render(text)


@pytest.mark.parametrize("hook", [n for n, v in vars(__import__("fedzoo.methods.base", fromlist=["Method"]).Method).items()
                                  if callable(v) and not n.startswith("_")])
def test_the_add_a_method_guide_names_every_hook(hook):
    guide = (REPO / "docs" / "development.md").read_text()
    assert f"`{hook}`" in guide, f"docs/development.md's hook list misses `{hook}` (fedzoo/methods/base.py)"


def test_no_doc_says_the_server_drives_the_protocol_module():
    for doc in DOCS:
        text = re.sub(r"\s+", " ", doc.read_text())
        assert not re.search(r"(ServerApp|server)[^.]{0,40}drives `?fedzoo\.protocol", text), _rel(doc)


DOTTED = re.compile(r"^((?:fedzoo\w*)(?:\.\w+)+)(?::(\w+))?(?:\(.*\))?$")


def _resolve(name: str) -> bool:
    """Whether ``package.module[.attr...]`` names something importable here."""
    import importlib

    parts = name.split(".")
    for k in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:k]))
        except ModuleNotFoundError:
            continue
        try:
            for attr in parts[k:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return False
        return True
    return False


@cache
def _wire_names() -> frozenset[str]:
    """Dotted names that are not Python: the Flower record keys (string constants of
    fedzoo_server/records.py) and the gRPC package of proto/oracle.proto."""
    tree = ast.parse((REPO / "fedzoo_server" / "records.py").read_text())
    names = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    names |= set(re.findall(r"^package\s+([\w.]+);", (REPO / "proto" / "oracle.proto").read_text(), re.M))
    return frozenset(names)


def test_dotted_names_in_backticks_resolve():
    """`fedzoo.budget.rounds_for_budget`, `fedzoo_attack.federation:objective_factory`,
    `fedzoo.minimize(...)`: each names a module or attribute that exists (or a record key
    or gRPC package the code defines)."""
    stale, seen = [], 0
    for doc in DOCS:
        text = doc.read_text()
        prose = FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)
        for span in SPAN.finditer(prose):
            m = DOTTED.match(span.group(1).strip())
            if not m:
                continue
            seen += 1
            name = m.group(1) + (f".{m.group(2)}" if m.group(2) else "")
            if name not in _wire_names() and not _resolve(name):
                stale.append(f"{_rel(doc)}:{_lines(prose, span.start())}: `{span.group(1)}` names "
                             "nothing importable")
    assert seen > 10
    assert not stale, "\n".join(stale)


def _design_rows(header: str) -> list[list[str]]:
    """The body rows of the table in docs/design.md that starts with ``header``."""
    text = (REPO / "docs" / "design.md").read_text()
    start = text.index(header)
    rows = []
    for line in text[start:].split("\n")[2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return rows


def test_design_tables_of_methods_agree_with_the_registry():
    """docs/design.md's per-method tables (queries per round, extra message fields) hold
    formulas and bounds the registry cannot generate; their method names, exchanges per
    round and field names are checked against it."""
    from fedzoo.config import RunConfig
    from fedzoo.methods import get_method

    queries = _design_rows("| method | exchanges / round |")
    assert len(queries) >= 8
    for row in queries:
        m = get_method(row[0].strip("`"))
        assert row[1] == ("2" if m.has_sync else "1"), f"docs/design.md: {m.name} has {row[1]} exchanges per round"
    fields = _design_rows("| method | train → | train ← | sync → | sync ← |")
    assert len(fields) >= 5
    for row in fields:
        for name in re.findall(r"`([\w-]+)`", row[0]):
            m = get_method(name)
            config = RunConfig(method=name)
            specs = [m.train_message_spec(config, 10), m.train_reply_spec(config, 10),
                     m.sync_message_spec(config, 10), m.sync_reply_spec(config, 10)]
            for cell, spec in zip(row[1:], specs):
                if cell == "no sync":
                    assert not m.has_sync, f"docs/design.md: {name} has a sync exchange"
                    continue
                named = set(re.findall(r"`([\w-]+)`", cell))
                assert named == set(spec), (f"docs/design.md's message table: {name} {sorted(named)}, "
                                            f"the method's spec {sorted(spec)}")


def test_the_example_method_in_the_guide_is_the_shipped_code():
    """docs/development.md quotes fedzoo/methods/fedzo_gauss.py: every quoted line is in it."""
    guide = (REPO / "docs" / "development.md").read_text()
    block = re.search(r"^```python\n(.*?)^```", guide, re.S | re.M).group(1)
    source = {line.rstrip() for line in (REPO / "fedzoo" / "methods" / "fedzo_gauss.py").read_text().split("\n")}
    missing = [line for line in block.split("\n") if line.strip() and line.rstrip() not in source]
    assert not missing, f"docs/development.md's example differs from fedzo_gauss.py: {missing}"


def test_the_readme_stays_short_and_points_to_the_rest():
    readme = (REPO / "README.md").read_text()
    lines = readme.count("\n")
    assert lines <= 200, f"README.md has {lines} lines; at most 200 (move the detail under docs/)"
    for needed in ("make demo", "make test", "fedzoo.minimize", "fedzoo run", "docs/cli.md",
                   "BENCHMARKS.md", "RELIABILITY.md"):
        assert needed in readme, f"README.md no longer mentions {needed!r}"


def test_the_cli_reference_covers_every_subcommand():
    from fedzoo_cli.main import build_parser

    cli = re.sub(r"\s+", " ", (REPO / "docs" / "cli.md").read_text())
    subcommands = set(FEDZOO_SUBCOMMANDS)
    root = build_parser()
    for action in root._actions:
        if isinstance(action, argparse._SubParsersAction):
            subcommands |= set(action.choices)
    missing = [s for s in sorted(subcommands) if f"fedzoo {s}" not in cli]
    assert not missing, f"docs/cli.md does not document: {missing}"
