"""Mutation testing of the modules that carry the product's promise (issue 16).

One mutant at a time: the module is parsed with `ast`, one node is changed (a comparison
flipped, a condition negated, an integer constant off by one, a statement deleted, a value
returned as None, `and`/`or` swapped) and the tests that cover the module run against a copy of
the tree holding it (`pytest -x`, fast unit tests first, a per-test timeout). A mutant the tests
pass is a survivor: a change to the code that no test notices.

Each mutant runs in a child forked from this process after the third-party libraries are
imported, so only edged and the tests are imported anew; the child puts the copy first on
sys.path (the venvs install edged from the main checkout in editable mode). Mutants known to be
equivalent (no test can tell them apart) are listed in tests/mutation-equivalent.txt.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import os
import re
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EQUIVALENT_FILE = ROOT / "tests" / "mutation-equivalent.txt"

# module -> the tests that cover it, the fastest first (-x stops at the first failure).
TESTS: dict[str, list[str]] = {
    "edged/chain.py": ["tests/unit/test_chain.py", "tests/unit/test_sale_round_trip.py"],
    "edged/sale.py": [
        "tests/unit/test_sale.py",
        "tests/unit/test_currency.py",
        "tests/unit/test_sale_round_trip.py",
    ],
    "edged/carddata.py": ["tests/unit/test_carddata.py", "tests/unit/test_sale.py"],
    "edged/journal/store.py": [
        "tests/unit/test_journal.py",
        "tests/unit/test_journal_writer.py",
        "tests/unit/test_journal_sale_ids.py",
        "tests/unit/test_journal_full.py",
        "tests/unit/test_journal_tail_loss.py",
        "tests/unit/test_journal_damage.py",
        "tests/unit/test_journal_adoption.py",
        "tests/unit/test_journal_files.py",
    ],
    "edged/uplink/forwarder.py": [
        "tests/unit/test_forwarder.py",
        "tests/unit/test_signed_acks.py",
        "tests/unit/test_journal_tail_loss.py",
        "tests/unit/test_journal_full.py",
        "tests/unit/test_journal_damage.py",
        "tests/unit/test_journal_adoption.py",
        "tests/unit/test_signed_resends.py",
        "tests/integration/test_uplink.py",
        "tests/integration/test_resend.py",
    ],
    "edged/signing.py": [
        "tests/unit/test_signing.py",
        "tests/unit/test_signed_acks.py",
        "tests/unit/test_signed_resends.py",
    ],
    "edged/uplink/ackgate.py": [
        "tests/unit/test_signed_acks.py",
        "tests/unit/test_signed_resends.py",
    ],
    "edged/collector/store.py": [
        "tests/unit/test_collector_store.py",
        "tests/unit/test_collector_pins.py",
        "tests/unit/test_collector_slots.py",
        "tests/unit/test_collector_resend.py",
        "tests/unit/test_collector_poison.py",
        "tests/unit/test_collector_dbfile.py",
        "tests/unit/test_collector_followup.py",
        "tests/integration/test_collector_store_faults.py",
    ],
    "edged/collector/resend.py": ["tests/unit/test_collector_resend.py"],
    "edged/collector/rebuild.py": [
        "tests/unit/test_collector_rebuild.py",
        "tests/unit/test_collector_resend.py",
    ],
    # Not test_collector_poison.py: its fuzz test on PostgreSQL outlasts the per-test timeout
    # on a loaded machine, and test_collector_problems.py covers quarantine() directly.
    "edged/collector/problems.py": [
        "tests/unit/test_collector_problems.py",
        "tests/unit/test_collector_store.py",
    ],
    "edged/collector/pins.py": [
        "tests/unit/test_collector_pins.py",
        "tests/integration/test_signed_entries.py",
        "tests/integration/test_trust_no_one.py",
    ],
}
# Imported once in the parent, so that each forked child imports only edged and the tests.
PRELOAD = (
    "pytest",
    "pytest_asyncio",
    "pytest_timeout",
    "hypothesis",
    "aiosqlite",
    "msgspec",
    "structlog",
    "nacl.signing",
    "escpos.printer",
    "aiomqtt",
    "serial_asyncio_fast",
)
# Calls whose deletion or change is not a behaviour the tests pin (logging), left unmutated.
_LOG_NAMES = frozenset({"log", "logger", "structlog"})

_FLIP = {
    ast.Lt: ast.GtE,
    ast.GtE: ast.Lt,
    ast.Gt: ast.LtE,
    ast.LtE: ast.Gt,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
}
_SYMBOL = {
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
    ast.Eq: "==",
    ast.NotEq: "!=",
    ast.Is: "is",
    ast.IsNot: "is not",
    ast.In: "in",
    ast.NotIn: "not in",
}


@dataclass(frozen=True)
class Mutant:
    path: str  # relative to the tree, e.g. edged/chain.py
    index: int  # its place in the module's walk order
    line: int
    column: int
    what: str  # e.g. "`a < b`: < -> >="

    def key(self) -> str:
        return f"{self.path}:{self.line}:{self.column}: {self.what}"


def _is_log_call(node: ast.AST) -> bool:
    """`log.info(...)`, `log.warning(...)`, `report(...)` style logging statements."""
    if not isinstance(node, ast.Expr) or not isinstance(node.value, ast.Call):
        return False
    func = node.value.func
    return isinstance(func, ast.Attribute) and (
        isinstance(func.value, ast.Name) and func.value.id in _LOG_NAMES
    )


def _short(node: ast.AST, limit: int = 60) -> str:
    text = ast.unparse(node).replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _Walker:
    """Visits the nodes in a fixed order; `mutate` changes the index-th candidate in place."""

    def __init__(self, target: int | None) -> None:
        self.target = target
        self.found: list[tuple[int, int, str]] = []
        self.done = False

    def _offer(self, line: int, what: str) -> bool:
        """Record a candidate; True if it is the one to apply now."""
        index = len(self.found)
        self.found.append((line, self.column, what))
        return index == self.target

    def walk(self, tree: ast.AST) -> None:
        self._visit(tree, in_log=False)

    in_function = False
    column = 0

    def _skip(self, node: ast.AST) -> bool:
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            return True  # a docstring
        if isinstance(node, ast.JoinedStr):
            return True  # message text
        if isinstance(node, ast.AnnAssign) and node.value is None:
            return True
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            return True
        return isinstance(node, ast.Assert)

    def _visit(self, node: ast.AST, *, in_log: bool) -> None:
        if self._skip(node):
            return
        in_log = in_log or _is_log_call(node)
        if not in_log:
            self._mutations(node)
        outer = self.in_function
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            self.in_function = True
        for name, value in ast.iter_fields(node):
            if name in ("decorator_list", "annotation", "returns", "type_comment"):
                continue
            if isinstance(value, list):
                for item in value:
                    if isinstance(item, ast.AST):
                        self._visit(item, in_log=in_log)
            elif isinstance(value, ast.AST):
                self._visit(value, in_log=in_log)
        self.in_function = outer

    def _mutations(self, node: ast.AST) -> None:
        line = getattr(node, "lineno", 0)
        self.column = getattr(node, "col_offset", 0)
        if isinstance(node, ast.Compare):
            for i, op in enumerate(node.ops):
                flipped = _FLIP.get(type(op))
                which = f" (operator {i + 1})" if len(node.ops) > 1 else ""
                if flipped and self._offer(
                    line, f"`{_short(node)}`: {_SYMBOL[type(op)]} -> {_SYMBOL[flipped]}{which}"
                ):
                    node.ops[i] = flipped()
        elif isinstance(node, ast.BoolOp):
            other = ast.Or if isinstance(node.op, ast.And) else ast.And
            name = "and" if isinstance(node.op, ast.And) else "or"
            if self._offer(line, f"`{_short(node)}`: {name} -> {'or' if name == 'and' else 'and'}"):
                node.op = other()
        elif isinstance(node, ast.If | ast.While | ast.IfExp) and not _flippable(node.test):
            if self._offer(line, f"condition `{_short(node.test)}` negated"):
                node.test = ast.UnaryOp(op=ast.Not(), operand=node.test)
        elif isinstance(node, ast.Constant) and type(node.value) is int:
            if self._offer(line, f"constant {node.value} -> {node.value + 1}"):
                node.value += 1
        elif (
            isinstance(node, ast.Return)
            and node.value is not None
            and not (isinstance(node.value, ast.Constant) and node.value.value is None)
            and self._offer(line, f"`return {_short(node.value)}` -> `return None`")
        ):
            node.value = ast.Constant(None)
        if (
            self.in_function
            and isinstance(
                node,
                ast.Expr
                | ast.Assign
                | ast.AugAssign
                | ast.AnnAssign
                | ast.Return
                | ast.Raise
                | ast.Continue
                | ast.Break,
            )
            and self._offer(line, f"statement `{_short(node)}` deleted")
        ):
            self._delete = node

    _delete: ast.AST | None = None


def _flippable(test: ast.AST) -> bool:
    """A single comparison: its flip is already the negated condition."""
    return isinstance(test, ast.Compare) and len(test.ops) == 1 and type(test.ops[0]) in _FLIP


def _is_type_checking(test: ast.AST) -> bool:
    return isinstance(test, ast.Name) and test.id == "TYPE_CHECKING"


class _Apply(ast.NodeTransformer):
    """Replaces the deleted statement by `pass`."""

    def __init__(self, delete: ast.AST | None) -> None:
        self.delete_node = delete

    def visit(self, node: ast.AST) -> ast.AST:
        if self.delete_node is not None and node is self.delete_node:
            return ast.copy_location(ast.Pass(), node)
        return self.generic_visit(node)


def mutants(path: str) -> list[Mutant]:
    tree = ast.parse((ROOT / path).read_text(), path)
    walker = _Walker(None)
    walker.walk(tree)
    return [Mutant(path, i, *found) for i, found in enumerate(walker.found)]


def mutated_source(source: str, path: str, index: int) -> str:
    tree = ast.parse(source, path)
    walker = _Walker(index)
    walker.walk(tree)
    tree = _Apply(walker._delete).visit(tree)
    ast.fix_missing_locations(tree)
    return ast.unparse(tree)


def load_equivalent() -> dict[str, str]:
    """`path:line: what  # reason` lines -> reason."""
    known: dict[str, str] = {}
    if not EQUIVALENT_FILE.exists():
        return known
    for raw in EQUIVALENT_FILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, _, reason = line.partition("  # ")
        known[key.strip()] = reason.strip()
    return known


def _copy_tree(dest: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", ".hypothesis", "*.pyc", ".mypy_cache")
    for name in ("edged", "tests"):
        shutil.copytree(ROOT / name, dest / name, ignore=ignore)
    shutil.copy2(ROOT / "pyproject.toml", dest / "pyproject.toml")


@dataclass
class Outcome:
    kind: str  # killed | timeout | global-timeout | survived | error
    seconds: float
    detail: str = ""


_TIMEOUT_MARK = re.compile(r"Failed: Timeout >|\+{5,} Timeout \+{5,}")


def run_tests(tree: Path, tests: list[str], per_test_s: float, wall_s: float) -> Outcome:
    """Run the tests in a forked child against `tree`; what became of them."""
    log_path = tree / ".mutation-run.log"
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 3
        try:
            os.setpgid(0, 0)
            os.chdir(tree)
            sys.path[:] = [str(tree), *[p for p in sys.path if Path(p or ".") != ROOT]]
            os.environ["PYTHONPATH"] = os.pathsep.join(
                [
                    str(tree),
                    *[
                        p
                        for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
                        if p and Path(p).resolve() != ROOT
                    ],
                ]
            )
            os.environ["PYTHONDONTWRITEBYTECODE"] = "1"
            sys.dont_write_bytecode = True
            import pytest

            with open(log_path, "w") as out, redirect_stdout(out), redirect_stderr(out):
                os.dup2(out.fileno(), 1)
                os.dup2(out.fileno(), 2)
                code = int(
                    pytest.main(
                        [
                            "-x",
                            "-q",
                            "-p",
                            "no:cacheprovider",
                            f"--timeout={per_test_s:g}",
                            "--hypothesis-seed=0",
                            *tests,
                        ]
                    )
                )
        finally:
            os._exit(code)
    deadline = start + wall_s
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return Outcome("global-timeout", time.monotonic() - start)
        time.sleep(0.05)
    _reap_group(pid)
    seconds = time.monotonic() - start
    code = os.waitstatus_to_exitcode(status)
    text = log_path.read_text(errors="replace") if log_path.exists() else ""
    if code == 0:
        return Outcome("survived", seconds)
    if _TIMEOUT_MARK.search(text):  # pytest may end with an internal error then (exit 3)
        return Outcome("timeout", seconds, _first_failure(text))
    if code in (1, 2) or code < 0:  # failed, interrupted by a collection error, or crashed
        return Outcome("killed", seconds, _first_failure(text))
    return Outcome("error", seconds, text[-2000:])  # pytest's own trouble: usage, no tests


def _reap_group(pid: int) -> None:
    """Kill whatever the tests left in the child's process group (brokers, daemons)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def _first_failure(text: str) -> str:
    for line in text.splitlines():
        if line.startswith("FAILED ") or line.startswith("ERROR "):
            return line[:160]
    return ""


def _selected(all_mutants: list[Mutant], lines: str | None) -> Iterator[Mutant]:
    if not lines:
        yield from all_mutants
        return
    wanted: set[int] = set()
    for part in lines.split(","):
        low, _, high = part.partition("-")
        wanted.update(range(int(low), int(high or low) + 1))
    yield from (m for m in all_mutants if m.line in wanted)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", help=f"default: {' '.join(TESTS)}")
    parser.add_argument("--lines", help="only mutants on these lines, e.g. 40-60,88")
    parser.add_argument("--list", action="store_true", help="list the mutants, run nothing")
    parser.add_argument("--per-test-timeout", type=float, default=20.0, metavar="S")
    parser.add_argument("--tests", nargs="+", help="run these test files instead of the map's")
    args = parser.parse_args()
    modules = args.modules or [m for m in TESTS if m != "edged/collector/store.py"]
    unknown = [m for m in modules if m not in TESTS]
    if unknown:
        parser.error(f"no tests mapped for {', '.join(unknown)}; known: {', '.join(TESTS)}")
    equivalent = load_equivalent()
    if args.list:
        for module in modules:
            for m in _selected(mutants(module), args.lines):
                note = "  (equivalent)" if m.key() in equivalent else ""
                print(f"{m.key()}{note}")
        return 0
    for name in PRELOAD:
        __import__(name)
    rows = []
    with tempfile.TemporaryDirectory(prefix="edged-mutation-") as tmp:
        tree = Path(tmp)
        _copy_tree(tree)
        for module in modules:
            rows.append(_run_module(tree, module, args, equivalent))
    print()
    print(
        f"{'module':28} {'mutants':>7} {'killed':>6} {'timeout':>7} {'survived':>8} "
        f"{'equiv':>5} {'score':>6}"
    )
    for row in rows:
        print(row)
    return 0


def _run_module(
    tree: Path, module: str, args: argparse.Namespace, equivalent: dict[str, str]
) -> str:
    tests = args.tests or [t for t in TESTS[module] if (ROOT / t).exists()]
    source = (ROOT / module).read_text()
    target = tree / module
    print(f"== {module}: baseline against {' '.join(tests)}", flush=True)
    base = run_tests(tree, tests, args.per_test_timeout, 900.0)
    if base.kind != "survived":
        print(f"the tests fail without any mutant ({base.kind}); fix them first:\n{base.detail}")
        return f"{module:28} baseline failed"
    wall = 5 * base.seconds + 60  # a loaded machine: only a hang takes this long
    print(
        f"   baseline {base.seconds:.1f} s; a mutant taking over {wall:.0f} s is a global timeout",
        flush=True,
    )
    counts = {
        "killed": 0,
        "timeout": 0,
        "survived": 0,
        "equivalent": 0,
        "global-timeout": 0,
        "error": 0,
    }
    survivors: list[str] = []
    selected = list(_selected(mutants(module), args.lines))
    try:
        for n, m in enumerate(selected, 1):
            if m.key() in equivalent:
                counts["equivalent"] += 1
                continue
            target.write_text(mutated_source(source, module, m.index))
            outcome = run_tests(tree, tests, args.per_test_timeout, wall)
            counts[outcome.kind] += 1
            mark = {
                "killed": ".",
                "timeout": "T",
                "survived": "S",
                "global-timeout": "G",
                "error": "E",
            }[outcome.kind]
            print(f"   [{n}/{len(selected)}] {mark} {outcome.seconds:5.1f}s {m.key()}", flush=True)
            if outcome.kind in ("survived", "global-timeout", "error"):
                survivors.append(f"{outcome.kind}: {m.key()}")
    finally:
        target.write_text(source)
    total = len(selected)
    judged = total - counts["equivalent"]
    killed = counts["killed"] + counts["timeout"]
    score = 100.0 * killed / judged if judged else 100.0
    if survivors:
        print(f"   survivors of {module}:")
        for line in survivors:
            print(f"     {line}")
    return (
        f"{module:28} {total:7d} {counts['killed']:6d} {counts['timeout']:7d} "
        f"{counts['survived'] + counts['global-timeout'] + counts['error']:8d} "
        f"{counts['equivalent']:5d} {score:5.1f}%"
    )


if __name__ == "__main__":
    sys.exit(main())
