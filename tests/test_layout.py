"""The shape of the package: wings whose arrows point down, no import cycle, the training engine
free of studies, app and CLI, imports inside functions only for optional extras or start-up time,
and no function over 80 lines but the training loop (at most 120)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "gankit"
# Imports a function may make: an optional extra's library, or one that takes long to import and is
# needed on one path only. Each such line says which in a comment.
LAZY_OK = ("gradio", "fastapi", "optuna", "sqlalchemy", "torch_fidelity", "huggingface_hub", "matplotlib",
           "torch.utils.tensorboard",
           "torchvision", "scipy.stats")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def imports(name: str) -> list[tuple[str, ast.AST, bool]]:
    """(gankit module imported, node, inside a function) for every import of gankit code in module `name`."""
    path = MODULES[name]
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    inside = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
              for n in ast.walk(f)}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base else []))
            for alias in node.names:
                target = f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base
                if target.startswith("gankit"):
                    out.append((target, node, id(node) in inside))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("gankit"):
                    out.append((alias.name, node, id(node) in inside))
    return out


def graph() -> dict[str, set[str]]:
    """Module -> the gankit modules it imports (a package's __init__ counts as the package)."""
    return {m: {t for t, _, _ in imports(m) if t != m} for m in MODULES}


def strongly_connected(g: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's strongly connected components of the import graph."""
    index, low, stack, on, comps, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            comps.append(comp)

    for v in sorted(g):
        if v not in index:
            visit(v)
    return comps


def test_no_import_cycle():
    """No two modules import each other, directly or through others. A package whose __init__
    re-exports its own modules is no cycle: that is the one loop allowed, within the package."""
    for comp in strongly_connected(graph()):
        if len(comp) > 1 and not any(all(m == p or m.startswith(p + ".") for m in comp) for p in comp):
            pytest.fail(f"import cycle among {sorted(comp)}")


def reach(start: str, g: dict[str, set[str]]) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        m = todo.pop()
        for t in g.get(m, ()):
            if t not in seen:
                seen.add(t)
                todo.append(t)
    return seen


@pytest.mark.parametrize("wing, never", [
    ("gankit.training", ("gankit.latent", "gankit.app", "gankit.tuning", "gankit.cli", "gankit.report")),
    ("gankit.metrics", ("gankit.training", "gankit.latent", "gankit.app", "gankit.tuning", "gankit.cli")),
    ("gankit.nets", ("gankit.config", "gankit.data", "gankit.training", "gankit.metrics", "gankit.sample",
                     "gankit.runs", "gankit.cli")),
    ("gankit.data", ("gankit.config", "gankit.nets", "gankit.training", "gankit.metrics", "gankit.cli")),
    ("gankit.sample", ("gankit.config", "gankit.nets", "gankit.data", "gankit.training", "gankit.metrics")),
    ("gankit.app", ("gankit.cli", "gankit.tuning", "gankit.training")),
    ("gankit.runs", ("gankit.training", "gankit.metrics", "gankit.latent", "gankit.app", "gankit.tuning",
                     "gankit.cli", "gankit.report", "gankit.api")),
    ("gankit.tuning", ("gankit.cli", "gankit.app")),
])
def test_arrows_point_down(wing, never):
    """What a wing reaches through its imports, directly or not, never includes the wings above it."""
    g = graph()
    for m in [m for m in MODULES if m == wing or m.startswith(wing + ".")]:
        bad = sorted(t for t in reach(m, g) if any(t == n or t.startswith(n + ".") for n in never))
        assert not bad, f"{m} reaches {bad}"


def test_no_library_module_imports_a_cli_module():
    for m in MODULES:
        if not m.startswith("gankit.cli") and m != "gankit.__main__":
            assert not [t for t, _, _ in imports(m) if t.startswith("gankit.cli")], m


def test_no_module_below_the_cli_parses_arguments():
    """argparse and its Namespace live in gankit/cli/ alone: the library takes plain arguments, so the
    Python API can call everything the CLI does."""
    for m, path in MODULES.items():
        if m.startswith("gankit.cli"):
            continue
        tree = ast.parse(path.read_text())
        names = {a.name for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))
                 for a in n.names} | {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert "argparse" not in names and "Namespace" not in names, f"{m} imports argparse"
        assert not any(isinstance(n, ast.Attribute) and n.attr == "Namespace" for n in ast.walk(tree)), m


def test_the_latent_commands_go_through_the_api_and_the_latent_studies():
    """`gankit sample`, `explore ...` and `invert` load generators as the Python API does (GANPipeline)
    and save what the API can save (gankit.latent.studies): no loader, class picker or study writer
    of their own."""
    for m in ("gankit.cli.latent", "gankit.cli.control"):
        targets = {t for t, _, _ in imports(m)}
        assert "gankit.api" in targets or "gankit.cli.latent" in targets, m
        assert "gankit.latent.studies" in targets or "gankit.latent" in targets, m
        assert not {"gankit.export", "gankit.runs", "gankit.runs.records"} & targets, f"{m} loads or writes itself"
        assert "def labelled_grid" not in MODULES[m].read_text() and "write_study_record" not in MODULES[m].read_text()


def test_imports_inside_functions_are_for_extras_or_start_up_time():
    """Every import inside a function names an optional extra's or a slow library, with a comment
    on its line saying so; gankit's own modules are imported at the top."""
    for m, path in MODULES.items():
        lines = path.read_text().splitlines()
        tree = ast.parse(path.read_text())
        for f in ast.walk(tree):
            if not isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(f):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    name = node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
                    where = f"{path.relative_to(ROOT.parent)}:{node.lineno}"
                    assert getattr(node, "level", 0) == 0 and name and name.startswith(LAZY_OK), f"{where}: import of {name} in a function"
                    assert "#" in lines[node.lineno - 1], f"{where}: say why {name} is imported here"


def test_functions_are_short():
    """No function over 80 lines; the one that holds the training loop at most 120."""
    long = []
    for m, path in MODULES.items():
        for f in ast.walk(ast.parse(path.read_text())):
            if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = f.end_lineno - f.lineno + 1
                limit = 120 if (m, f.name) == ("gankit.training.loop", "training_loop") else 80
                if n > limit:
                    long.append(f"{m}.{f.name}: {n} lines")
    assert not long, long


def test_every_statistic_is_named_once_and_laid_out_by_its_name():
    """gankit.runs.stats is the one list: the loop adds each group by name (Tally.add), and means()
    lays the device statistics out in DEVICE_STATS' order."""
    import torch
    from gankit.runs.stats import DEVICE_STATS, GROUPS, STATS, named
    from gankit.training.state import Tally
    assert len({s.tag for s in STATS.values()}) == len(STATS)  # one TensorBoard tag each
    tally = Tally.zeros(torch.device("cpu"))
    for over, names in GROUPS.items():
        tally.add(over, **{n: torch.tensor(float(i + 1)) for i, n in enumerate(names)})
    tally.grad_norms += torch.tensor([7.0, 8.0])
    tally.ada[0] = 0.5
    values = named(tally.means())
    assert list(values) == list(DEVICE_STATS)
    assert [values[n] for n in GROUPS["D"]] == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert (values["grad_norm_D"], values["grad_norm_G"], values["ada_p"]) == (7.0, 8.0, 0.5)
    with pytest.raises(TypeError, match="expected loss_G"):
        tally.add("G", loss_G=torch.tensor(1.0))
