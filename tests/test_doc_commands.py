"""Every command the docs quote names a real module and flags that module defines.

The project's rule is that numbers in the README and ``benchmarks/`` come from commands anyone
can run. This test finds every command quoted in README.md, benchmarks/README.md,
benchmarks/RESULTS.md, docs/math.md, the examples' docstrings and the module docstrings of
``benchmarks/``, ``tools/`` and ``flowrestore/`` (inline code spans, fenced blocks, indented
usage lines): ``python -m benchmarks...``, ``python -m flowrestore...``, ``python examples/...``,
``python tools/...`` and ``flowrestore SUB``, after ``VAR=value`` assignments or ``nice -n N``.
Without importing or running anything (the modules are read with :mod:`ast`) it checks that

1. the module or script exists and runs as a script (``__main__.py`` or a ``__main__`` guard);
2. every ``--flag`` is defined by the module's argparse parser (``add_argument``, also through
   helpers it calls, e.g. ``benchmarks.common.split_parser``); a module with no parser takes none;
3. a flag or positional whose ``choices=`` are literal in the source (or a module constant) gets
   one of them, and a flag whose value the code tests letter by letter (``"a" in which``, in the
   module or a local module it imports) gets only those letters;
4. ``python -m benchmarks NAME`` and ``flowrestore SUB`` name a real entry / subcommand, and a
   usage line's ``[all|accuracy|...]`` lists every entry.

Placeholders (``DIR``, ``OUT``, ``N``, ``...``, ``<...>``) pass; ``[--opt X]`` and ``val|test``
(usage-line syntax) are read as the options they stand for. A span that starts with ``--`` right
after a command in the same sentence (or table row), with no other code span between — "``--split
val``" in "run ``python -m benchmarks.x --split test`` (and ``--split val``)" — is checked against
that command's module too. Not checked: choices computed at run time (``flowrestore restore
--solver``/``--task``), and whether a command's defaults are the ones that gave a quoted number.
"""

from __future__ import annotations

import ast
import re
import shlex
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MARKDOWN = ["README.md", "benchmarks/README.md", "benchmarks/RESULTS.md", "docs/math.md"]
LOCAL_PACKAGES = ("benchmarks", "flowrestore", "examples", "tools")
NO_VALUE_ACTIONS = {"store_true", "store_false", "store_const", "count", "help", "version"}
ALWAYS = {"-h", "--help"}


# ----------------------------------------------------------------------------- finding commands
@dataclass
class Quote:
    where: str  # file:line
    text: str  # the command, or a "--flag ..." fragment of the previous command
    continues: Quote | None = None  # for a fragment: the command it continues


def _line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


_SPAN = re.compile(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)", re.S)


def _spans(text: str, base: int):
    """Inline code spans of ``text`` (one paragraph or table row): (offset, content)."""
    for m in _SPAN.finditer(text):
        yield base + m.start(2), " ".join(m.group(2).split())


def _blocks(text: str):
    """Split a markdown text into fenced blocks and prose contexts: (kind, offset, text)."""
    out, pos = [], 0
    for m in re.finditer(r"^ *(```|~~~)[^\n]*\n(.*?)^ *\1 *$", text, re.S | re.M):
        out.append(("prose", pos, text[pos : m.start()]))
        out.append(("fence", m.start(2), m.group(2)))
        pos = m.end()
    out.append(("prose", pos, text[pos:]))
    return out


def _contexts(prose: str, base: int):
    """Paragraphs, with each table row its own context."""
    for m in re.finditer(r"(?:[^\n]+\n?)+", prose):
        para, start = m.group(0), m.start()
        if para.lstrip().startswith("|"):
            for row in re.finditer(r"[^\n]+", para):
                yield base + start + row.start(), row.group(0)
        else:
            yield base + start, para


def _fence_lines(block: str, base: int):
    """Logical lines of a fenced block (``\\`` continuations joined, ``# comments`` cut)."""
    lines = block.split("\n")
    i, offset = 0, base
    while i < len(lines):
        start, text = offset, lines[i]
        offset += len(lines[i]) + 1
        while text.rstrip().endswith("\\") and i + 1 < len(lines):
            i += 1
            text = text.rstrip()[:-1] + " " + lines[i]
            offset += len(lines[i]) + 1
        i += 1
        text = re.split(r"(?:^|\s)#", text, maxsplit=1)[0]
        for part in re.split(r"&&|\s\|\|\s|;|\s\|\s", text):
            yield start, part.strip()


def _quotes_in(rel: str, text: str, fenced_prose: bool = False) -> list[Quote]:
    quotes: list[Quote] = []
    for kind, base, chunk in _blocks(text):
        if kind == "fence":
            for off, line in _fence_lines(chunk, base):
                if _command(line):
                    quotes.append(Quote(f"{rel}:{_line_of(text, off)}", line))
            continue
        for cbase, ctx in _contexts(chunk, base):
            last, end = None, 0
            for off, span in _spans(ctx, cbase):
                where = f"{rel}:{_line_of(text, off)}"
                gap = text[end:off]
                if last is not None and (re.search(r"[.;:]\s", gap) or len(gap) > 200):
                    last = None  # a new sentence: a "--flag" span is no longer that command's
                if _command(span):
                    last = Quote(where, span)
                    quotes.append(last)
                elif last is not None and re.match(r"--[a-z]", span):
                    quotes.append(Quote(where, span, continues=last))
                else:
                    last = None  # another code span between: the chain is broken
                end = off + len(span)
            if fenced_prose:  # docstrings: indented command lines outside any span
                for m in re.finditer(r"^[ \t]+(\S[^\n]*)$", ctx, re.M):
                    line = m.group(1)
                    if _command(line) and "``" not in line:
                        quotes.append(Quote(f"{rel}:{_line_of(text, cbase + m.start())}", line))
    return quotes


def _docstring_quotes(path: Path) -> list[Quote]:
    body = path.read_text()
    doc = ast.get_docstring(_tree(path), clean=False) or ""
    rel = path.relative_to(ROOT).as_posix()
    first = body.find(doc[:40]) if doc else 0
    shift = body.count("\n", 0, max(first, 0))  # docstring line -> file line
    quotes = _quotes_in(rel, doc, fenced_prose=True)
    for q in quotes:
        f, n = q.where.rsplit(":", 1)
        q.where = f"{f}:{int(n) + shift}"
    return quotes


@cache
def all_quotes() -> dict[str, tuple[Quote, ...]]:
    """The quoted commands, per group of docs."""
    groups = {rel: _quotes_in(rel, (ROOT / rel).read_text()) for rel in MARKDOWN}
    groups["examples"] = [
        q for p in sorted(ROOT.glob("examples/*.py")) for q in _docstring_quotes(p)
    ]
    modules = [
        *ROOT.glob("benchmarks/*.py"),
        *ROOT.glob("tools/*.py"),
        *ROOT.glob("flowrestore/**/*.py"),
    ]
    groups["module docstrings"] = [
        q
        for p in sorted(modules)
        if re.search(r"python|flowrestore [a-z]", p.read_text())
        for q in _docstring_quotes(p)
    ]
    return {k: tuple(v) for k, v in groups.items()}


# ----------------------------------------------------------------------------- parsing a command
@dataclass
class Command:
    target: str  # "module:benchmarks.fewnfe", "script:examples/x.py", "console:flowrestore"
    args: list[str]


def _tokens(text: str) -> list[str]:
    try:
        toks = shlex.split(text)
    except ValueError:
        toks = text.split()
    out = []
    for t in toks:
        if t in {">", ">>", "2>&1", "|"} or t.startswith(("#", ">", "2>")):
            break
        t = t.strip("[]")  # optional syntax of usage lines: [--out ./out]
        if t and t not in {"...", "…", "\\"}:
            out.append(t)
    return out


def _command(text: str) -> Command | None:
    toks = _tokens(text)
    while toks and re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", toks[0]):
        toks = toks[1:]  # OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1
    if toks[:2] == ["nice", "-n"]:
        toks = toks[3:]
    if len(toks) >= 3 and toks[0] in {"python", "python3"} and toks[1] == "-m":
        if toks[2].split(".")[0] in ("benchmarks", "flowrestore"):
            return Command(f"module:{toks[2]}", toks[3:])
    if len(toks) >= 2 and toks[0] in {"python", "python3"}:
        if toks[1].startswith(("examples/", "tools/")):
            return Command(f"script:{toks[1]}", toks[2:])
    if (
        len(toks) >= 2
        and toks[0] == "flowrestore"
        and re.fullmatch(r"[a-z][a-z-]*|--?\w+", toks[1])
    ):
        return Command("console:flowrestore", toks[1:])
    return None


def _placeholder(tok: str) -> bool:
    return bool(re.fullmatch(r"[A-Z][A-Z0-9_]*", tok) or "<" in tok or "..." in tok or "…" in tok)


# ----------------------------------------------------------------------------- reading parsers
@dataclass
class Arg:
    names: list[str]
    dest: str
    nargs: object = None  # None, "?", "*", "+", int
    takes_value: bool = True
    choices: set[str] | None = None  # None: not literal (or none)


@dataclass
class Parser:
    options: dict[str, Arg] = field(default_factory=dict)
    positionals: list[Arg] = field(default_factory=list)
    letters: dict[str, set[str]] = field(default_factory=dict)  # dest -> letters the code tests
    subcommands: dict[str, Parser] = field(default_factory=dict)

    def add(self, arg: Arg) -> None:
        if arg.names[0].startswith("-"):
            for n in arg.names:
                self.options[n] = arg
        elif all(a.names != arg.names for a in self.positionals):
            self.positionals.append(arg)


@cache
def _file_of_module(name: str) -> Path | None:
    parts = name.split(".")
    for cand in (ROOT.joinpath(*parts).with_suffix(".py"), ROOT.joinpath(*parts, "__init__.py")):
        if cand.is_file():
            return cand
    return None


@cache
def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve_from(path: Path, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    pkg = _module_name(path).split(".")
    if path.name != "__init__.py":
        pkg = pkg[:-1]
    pkg = pkg[: len(pkg) - (node.level - 1)]
    return ".".join(pkg + ([node.module] if node.module else []))


@cache
def _imports(path: Path) -> dict[str, tuple[str, str | None]]:
    """Local name -> (module, attribute or None for a module) for local-package imports."""
    out: dict[str, tuple[str, str | None]] = {}
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.ImportFrom):
            mod = _resolve_from(path, node)
            if mod.split(".")[0] not in LOCAL_PACKAGES:
                continue
            for a in node.names:
                sub = f"{mod}.{a.name}"
                if _file_of_module(sub) is not None:
                    out[a.asname or a.name] = (sub, None)
                else:
                    out[a.asname or a.name] = (mod, a.name)
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] in LOCAL_PACKAGES and a.asname:
                    out[a.asname] = (a.name, None)
    return out


def _literal(node: ast.AST, consts: dict[str, ast.AST]):
    if isinstance(node, ast.Name) and node.id in consts:
        node = consts[node.id]
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.args:
        if node.func.id in {"tuple", "list", "set", "sorted", "frozenset"} and len(node.args) == 1:
            return _literal(node.args[0], consts)
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError):
        return None


def _consts(tree: ast.Module) -> dict[str, ast.AST]:
    out = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            if isinstance(node.targets[0], ast.Name):
                out[node.targets[0].id] = node.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value:
            out[node.target.id] = node.value
    return out


@cache
def _module_consts(path: Path) -> dict[str, ast.AST]:
    return _consts(_tree(path))


def _arg(call: ast.Call, consts) -> Arg | None:
    names = [a.value for a in call.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
    if not names:
        return None
    kw = {k.arg: k.value for k in call.keywords if k.arg}
    action = _literal(kw["action"], consts) if "action" in kw else None
    nargs = _literal(kw["nargs"], consts) if "nargs" in kw else None
    dest = _literal(kw["dest"], consts) if "dest" in kw else None
    if dest is None:
        longs = [n for n in names if n.startswith("--")]
        dest = (longs or names)[0].lstrip("-").replace("-", "_")
    choices = None
    if "choices" in kw:
        lit = _literal(kw["choices"], consts)
        if isinstance(lit, (list, tuple, set, frozenset, dict)):
            choices = {str(c) for c in lit}
    return Arg(names, dest, nargs, action not in NO_VALUE_ACTIONS or nargs is not None, choices)


def _calls(body) -> list[ast.Call]:
    return [n for stmt in body for n in ast.walk(stmt) if isinstance(n, ast.Call)]


def _is(call: ast.Call, attr: str) -> bool:
    return isinstance(call.func, ast.Attribute) and call.func.attr == attr


def _function(path: Path, name: str) -> ast.FunctionDef | None:
    for node in _tree(path).body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return node
    return None


def _closure_args(path: Path, body, seen: set, depth: int = 0) -> list[Arg]:
    """add_argument calls in ``body`` and in the local functions it calls (also imported ones)."""
    consts = _module_consts(path)
    out = [a for c in _calls(body) if _is(c, "add_argument") and (a := _arg(c, consts))]
    if depth > 4:
        return out
    imports = _imports(path)
    for c in _calls(body):
        if not isinstance(c.func, ast.Name):
            continue
        target = None
        if _function(path, c.func.id) is not None:
            target = (path, c.func.id)
        elif c.func.id in imports and imports[c.func.id][1] is not None:
            mod, attr = imports[c.func.id]
            f = _file_of_module(mod)
            if f is not None and _function(f, attr) is not None:
                target = (f, attr)
        if target is not None and target not in seen:
            seen.add(target)
            out += _closure_args(target[0], _function(*target).body, seen, depth + 1)
    return out


@cache
def _own_letters(path: Path) -> dict[str, frozenset[str]]:
    out: dict[str, set[str]] = {}
    for node in ast.walk(_tree(path)):
        if (
            isinstance(node, ast.Compare)
            and len(node.ops) == 1
            and isinstance(node.ops[0], ast.In)
            and isinstance(node.left, ast.Constant)
            and isinstance(node.left.value, str)
            and len(node.left.value) == 1
            and isinstance(node.comparators[0], ast.Name)
        ):
            out.setdefault(node.comparators[0].id, set()).add(node.left.value)
    return {k: frozenset(v) for k, v in out.items()}


def _letters(path: Path) -> dict[str, set[str]]:
    """``"a" in which`` tests in the module and the local modules it imports: name -> letters."""
    out: dict[str, set[str]] = {k: set(v) for k, v in _own_letters(path).items()}
    for mod, _ in set(_imports(path).values()):
        f = _file_of_module(mod)
        if f is not None and f != path:
            for k, v in _own_letters(f).items():
                out.setdefault(k, set()).update(v)
    return out


@cache
def parser_of(path: Path) -> Parser:
    tree = _tree(path)
    consts = _consts(tree)
    p = Parser()
    scopes = [tree.body] + [n.body for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]
    subvars: list[tuple[list, str, str]] = []  # (scope body, variable, subcommand)
    for body in scopes:
        for stmt in ast.walk(ast.Module(body=body, type_ignores=[])):
            if (
                isinstance(stmt, ast.Assign)
                and isinstance(stmt.value, ast.Call)
                and _is(stmt.value, "add_parser")
                and isinstance(stmt.targets[0], ast.Name)
                and stmt.value.args
                and isinstance(stmt.value.args[0], ast.Constant)
            ):
                subvars.append((body, stmt.targets[0].id, stmt.value.args[0].value))
    if not subvars:
        for arg in _closure_args(path, tree.body, set()):
            p.add(arg)
        p.letters = _letters(path)
        return p
    # a parser with subcommands: the top parser's own arguments, then each subcommand's
    for body in scopes:
        tops = {
            s.targets[0].id
            for s in ast.walk(ast.Module(body=body, type_ignores=[]))
            if isinstance(s, ast.Assign)
            and isinstance(s.value, ast.Call)
            and _is(s.value, "ArgumentParser")
            and isinstance(s.targets[0], ast.Name)
        }
        for c in _calls(body):
            if _is(c, "add_argument") and getattr(c.func.value, "id", None) in tops:
                if (a := _arg(c, consts)) is not None:
                    p.add(a)
    for body, var, name in subvars:
        sp = p.subcommands.setdefault(name, Parser())
        for c in _calls(body):
            receiver = c.func.value if isinstance(c.func, ast.Attribute) else None
            if _is(c, "add_argument") and getattr(receiver, "id", None) == var:
                if (a := _arg(c, consts)) is not None:
                    sp.add(a)
            elif (
                isinstance(c.func, ast.Name)
                and any(getattr(a, "id", None) == var for a in c.args)
                and (helper := _function(path, c.func.id)) is not None
            ):
                for a in _closure_args(path, helper.body, set()):
                    sp.add(a)
    p.letters = _letters(path)
    return p


def _runnable(path: Path) -> bool:
    if path.name == "__main__.py":
        return True
    for node in _tree(path).body:
        if isinstance(node, ast.If) and "__main__" in ast.unparse(node.test):
            return True
    return False


def _console_module(name: str) -> str | None:
    """The module of a ``[project.scripts]`` entry of pyproject.toml (no tomllib on 3.10)."""
    text = (ROOT / "pyproject.toml").read_text()
    section = re.search(r"^\[project\.scripts\]\n(.*?)(?=^\[|\Z)", text, re.M | re.S)
    if section is None:
        return None
    m = re.search(rf'^{re.escape(name)}\s*=\s*"([\w.]+):', section.group(1), re.M)
    return m.group(1) if m else None


def _target_file(cmd: Command) -> Path | None:
    kind, name = cmd.target.split(":", 1)
    if kind == "script":
        path = ROOT / name
        return path if path.is_file() else None
    if kind == "console":
        name = _console_module(name) or ""
        return _file_of_module(name) if name else None
    parts = name.split(".")
    for cand in (ROOT.joinpath(*parts, "__main__.py"), ROOT.joinpath(*parts).with_suffix(".py")):
        if cand.is_file():
            alias = _runs_module(cand)
            return cand if alias is None else _target_file(Command(f"module:{alias}", []))
    return None


def _runs_module(path: Path) -> str | None:
    """The module a script's ``__main__`` guard hands over to with ``runpy.run_module("...")``
    (``python -m flowrestore.training.trainer`` is ``-m flowrestore.training``), else None."""
    for node in _tree(path).body:
        if isinstance(node, ast.If) and "__main__" in ast.unparse(node.test):
            for call in ast.walk(node):
                if (
                    isinstance(call, ast.Call)
                    and ast.unparse(call.func).endswith("run_module")
                    and call.args
                    and isinstance(call.args[0], ast.Constant)
                ):
                    return call.args[0].value
    return None


# ----------------------------------------------------------------------------- checking
def _subcommand(p: Parser, name: str) -> Parser:
    """The parser of subcommand ``name``, with the top parser's options."""
    sub = p.subcommands[name]
    return Parser({**p.options, **sub.options}, sub.positionals, p.letters)


def _check_args(args: list[str], p: Parser, where: str, fragment: bool = False) -> list[str]:
    errors = []
    if p.subcommands and not fragment:
        if not args or args[0].startswith("-"):
            if not (args and args[0] in ALWAYS | set(p.options)):
                errors.append(f"{where}: no subcommand (one of {sorted(p.subcommands)})")
            return errors
        if args[0] not in p.subcommands:
            errors.append(f"{where}: unknown subcommand {args[0]!r} (of {sorted(p.subcommands)})")
            return errors
        return _check_args(args[1:], _subcommand(p, args[0]), where)
    positionals = list(p.positionals)
    i = 0
    while i < len(args):
        tok = args[i]
        i += 1
        if tok.startswith("-") and not re.fullmatch(r"-\d[\d.e-]*", tok):
            flag, _, inline = tok.partition("=")
            if flag in ALWAYS:
                continue
            arg = p.options.get(flag)
            if arg is None:
                errors.append(f"{where}: {flag} is not an option of this command")
                while i < len(args) and not args[i].startswith("-"):
                    i += 1  # its values: not positionals
                continue
            values = [inline] if inline else []
            if arg.takes_value and not inline:
                n = arg.nargs
                limit = n if isinstance(n, int) else (1 if n in (None, "?") else 10**6)
                while i < len(args) and len(values) < limit:
                    if args[i].startswith("-") and not re.fullmatch(r"-\d[\d.e-]*", args[i]):
                        break
                    values.append(args[i])
                    i += 1
            errors += _check_values(arg, values, p, where)
        elif fragment:
            continue  # a fragment's bare words are prose-level values: nothing to check
        elif positionals:
            arg = positionals[0]
            if arg.nargs not in ("*", "+"):
                positionals.pop(0)
            errors += _check_values(arg, [tok], p, where)
        elif not _placeholder(tok):
            errors.append(f"{where}: unexpected argument {tok!r}")
    return errors


def _check_values(arg: Arg, values: list[str], p: Parser, where: str) -> list[str]:
    errors = []
    if not arg.names[0].startswith("-") and arg.choices is not None:
        for value in values:  # "[all|accuracy|...]": a usage line lists every entry
            if "|" in value and set(value.split("|")) != arg.choices:
                errors.append(
                    f"{where}: {value!r} should list every {arg.names[0]}: {sorted(arg.choices)}"
                )
    # "val|test" in a usage line: each alternative must be valid
    for v in [alt for value in values for alt in value.split("|")]:
        if _placeholder(v):
            continue
        if arg.choices is not None and v not in arg.choices:
            errors.append(f"{where}: {arg.names[0]} {v!r} is not one of {sorted(arg.choices)}")
        elif arg.choices is None and arg.dest in p.letters and arg.nargs is None:
            bad = set(v) - p.letters[arg.dest]
            if bad:
                errors.append(
                    f"{where}: {arg.names[0]} {v!r}: the code knows the letters "
                    f"{''.join(sorted(p.letters[arg.dest]))}, not {''.join(sorted(bad))}"
                )
    return errors


def check(quote: Quote) -> list[str]:
    head = quote.continues or quote
    cmd = _command(head.text)
    assert cmd is not None
    path = _target_file(cmd)
    where = f"{quote.where} `{quote.text}`"
    if path is None:
        return [f"{where}: {cmd.target.split(':', 1)[1]} does not exist"]
    if cmd.target.startswith(("module:", "script:")) and not _runnable(path):
        return [f"{where}: {path.relative_to(ROOT)} has no __main__ entry"]
    p = parser_of(path)
    if quote.continues is None:
        return _check_args(cmd.args, p, where)
    if p.subcommands:  # "flowrestore restore ... (and `--steps 6`)": that subcommand's options
        if not (cmd.args and cmd.args[0] in p.subcommands):
            return [f"{where}: a fragment of `{head.text}`, which names no subcommand"]
        p = _subcommand(p, cmd.args[0])
    return _check_args(_tokens(quote.text), p, where + f" (after `{head.text}`)", fragment=True)


# ----------------------------------------------------------------------------- the tests
def test_the_docs_quote_commands():
    groups = all_quotes()
    assert sum(map(len, groups.values())) > 200, {k: len(v) for k, v in groups.items()}
    assert all(groups.values()), {k: len(v) for k, v in groups.items()}
    texts = [q.text for quotes in groups.values() for q in quotes]
    assert any(t.startswith("flowrestore restore") for t in texts)
    assert any("OMP_NUM_THREADS=1 python -m benchmarks." in t for t in texts)
    assert any(q.continues for q in groups["benchmarks/RESULTS.md"])


@pytest.mark.parametrize("group", [*MARKDOWN, "examples", "module docstrings"])
def test_every_quoted_command_is_runnable_as_written(group):
    errors = [e for q in all_quotes()[group] for e in check(q)]
    assert not errors, "\n".join(errors)


def test_the_checker_fails_on_broken_commands():
    """The checks can fail: a renamed flag, a wrong choice, a bad letter, a missing module."""
    bad = [
        "python -m benchmarks.fewnfe --split test --groups abcd",  # no --groups
        "python -m benchmarks.fewnfe --split train",  # not a choice
        "python -m benchmarks.fewnfe --which abz",  # z is no group
        "python -m benchmarks.nonesuch --out DIR",  # no module
        "python -m benchmarks fewnfes",  # no such entry
        "flowrestore restor photo.jpg -o out/",  # no such subcommand
        "flowrestore restore photo.jpg --task deblur --stepz 3 -o out/",  # no --stepz
        "python -m benchmarks.fit_limit --quick",  # takes no flags
        "python examples/dirac_mixture.py --outdir ./out",  # no --outdir
        "python -m benchmarks.common",  # no __main__ entry
        "python -m benchmarks [all|accuracy|fit] [--out DIR]",  # a usage line missing entries
        "python examples/solver_comparison.py [--out ./out] [--quick] [--fast]",  # no --fast
    ]
    for text in bad:
        assert check(Quote("t:1", text)), text
    good = [
        "OMP_NUM_THREADS=1 python -m benchmarks.fewnfe --split test --which abcd --out DIR",
        "python -m benchmarks fewnfe --out OUT",
        "flowrestore restore photo.jpg --solver ipndm --steps 6 -o ipndm/",
        "python -m benchmarks.landing_guard --split both",
    ]
    for text in good:
        assert not check(Quote("t:1", text)), (text, check(Quote("t:1", text)))
    unseen = Quote("t:1", "python -m benchmarks.unseen")
    assert check(Quote("t:2", "--split val --nope", continues=unseen))
    fewnfe = Quote("t:1", "python -m benchmarks.fewnfe --split test --which ab")
    assert check(Quote("t:2", "--which ex", continues=fewnfe))
    assert not check(Quote("t:2", "--which e", continues=fewnfe))
    restore = Quote("t:1", "flowrestore restore in/ -o out/")
    assert check(Quote("t:2", "--crop 64", continues=restore))  # demo's, not restore's
    assert not check(Quote("t:2", "--steps 6", continues=restore))
