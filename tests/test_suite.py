"""The suite's own rule: `make test` runs in its pytest processes; a test that starts a process of
its own (a `gankit` script, torchrun's ranks, Chromium, a server) is marked `e2e`, and `make
test-e2e` runs those (CI runs both). The check reads the source: a test starts a process when its
body, a fixture it takes or a function of its module it calls (at any depth) makes one of the calls
in STARTS."""
from __future__ import annotations

import ast
import re
from pathlib import Path

TESTS = Path(__file__).parent
STARTS = ("subprocess", "Popen", "gankit(", "torchrun(", "sync_playwright")  # what starts a process here


def functions(path: Path) -> dict[str, ast.FunctionDef]:
    return {n.name: n for n in ast.parse(path.read_text()).body if isinstance(n, ast.FunctionDef)}


def read_suite():
    """(file::test, whether it starts a process, whether it is marked e2e) for every test function."""
    shared = {**functions(TESTS / "conftest.py"), **functions(TESTS / "shared.py")}
    for path in sorted(TESTS.glob("test_*.py")):
        source = {name: ast.unparse(node.body) for name, node in {**shared, **functions(path)}.items()}
        nodes = {**shared, **functions(path)}
        starting = {name for name, text in source.items() if any(k in text for k in STARTS)}
        while True:  # what calls (or takes as a fixture) a function that starts a process starts one too
            more = {name for name, text in source.items() if name not in starting
                    and (any(re.search(rf"\b{f}\(", text) for f in starting)
                         or starting & {a.arg for a in nodes[name].args.args})}
            if not more:
                break
            starting |= more
        for name, node in functions(path).items():
            if name.startswith("test_"):
                marks = " ".join(ast.unparse(d) for d in node.decorator_list)
                yield f"{path.name}::{name}", name in starting, "mark.e2e" in marks


def test_a_test_that_starts_a_process_is_marked_e2e_and_no_other():
    found = list(read_suite())
    assert len(found) > 250  # (the reader found the suite: ~280 test functions)
    unmarked = [name for name, starts, e2e in found if starts and not e2e]
    assert not unmarked, f"these start a process: mark them @pytest.mark.e2e: {unmarked}"
    idle = [name for name, starts, e2e in found if e2e and not starts]
    assert not idle, f"marked e2e but start no process (make test would run them in-process): {idle}"
