"""The library stays a library: no web UI, packages that import one way, no cycles, light bottom modules."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import slr_core

ROOT = Path(slr_core.__file__).parent
# The documented order (README, Layout): a package may import only packages at its own level or below.
ORDER = ("models", "crc", "slr", "engine", "downstream", "report", "export", "serve")
FOUNDATION = {"errors", "files", "inputs", "cache"}  # loose modules every package may use
ENTRY_POINTS = {"cli", "__main__", "__init__"}  # loose modules on top: nothing in a package imports them
PACKAGES = sorted(p.parent.name for p in ROOT.glob("*/__init__.py"))


def _name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = sorted(_name(p) for p in ROOT.rglob("*.py") if p.stem != "__main__")


def _imports(path: Path, lazy: bool) -> set[str]:
    """slr_core modules a module imports: at import time, or anywhere in it with lazy=True."""
    tree = ast.parse(path.read_text())
    nodes = ast.walk(tree) if lazy else tree.body
    found = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("slr_core"):
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                found.add(candidate if candidate in MODULES else node.module)
    return found - {"slr_core"}


def _level(module: str) -> int:
    """Where a module sits: the foundation at 0, packages in ORDER from 1, entry points on top."""
    part = module.split(".")[1]
    if part in FOUNDATION:
        return 0
    if part in ENTRY_POINTS:
        return len(ORDER) + 1
    return ORDER.index(part) + 1


def test_the_layout_has_packages_and_few_loose_modules():
    loose = sorted(p.stem for p in ROOT.glob("*.py"))
    assert set(PACKAGES) == set(ORDER), PACKAGES
    assert len(loose) <= 8, loose
    assert set(loose) == FOUNDATION | ENTRY_POINTS
    for package in PACKAGES:  # each says what it owns and what it may import
        doc = ast.get_docstring(ast.parse((ROOT / package / "__init__.py").read_text())) or ""
        assert len(doc) > 200 and "import" in doc, package


def test_imports_run_down_the_documented_order():
    wrong = []
    for path in ROOT.rglob("*.py"):
        module = _name(path)
        for imported in _imports(path, lazy=True):
            if _level(imported) > _level(module):
                wrong.append(f"{module} -> {imported}")
    assert not wrong, wrong


def _loaded_after_importing(modules: list[str]) -> list[str]:
    """Output lines of a fresh interpreter that imports `modules`: slr_core modules loaded, gradio's, torch's."""
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "print(sorted(m for m in sys.modules if m.startswith('slr_core.')))\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'gradio'))\n"
        "print('torch' in sys.modules)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    return run.stdout.split("\n")[:3]


def test_no_slr_core_module_imports_gradio():
    assert _loaded_after_importing(MODULES)[1] == "[]"
    assert len(MODULES) > 40  # the walk found the package


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, str] = {}

    def visit(name: str, trail: list[str]) -> list[str] | None:
        state[name] = "open"
        for child in sorted(graph.get(name, ())):
            if state.get(child) == "open":
                return [*trail, name, child]
            if child not in state and (found := visit(child, [*trail, name])):
                return found
        state[name] = "done"
        return None

    return next((found for name in sorted(graph) if name not in state and (found := visit(name, []))), None)


@pytest.mark.parametrize("lazy", [False, True], ids=["import-time", "function-level too"])
def test_module_imports_form_no_cycle(lazy):
    graph = {_name(p): _imports(p, lazy) for p in ROOT.rglob("*.py")}
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))


def test_the_cycle_check_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize(
    "module,allowed",
    [
        ("slr_core.models.settings", {"slr_core.errors"}),
        ("slr_core.files", set()),
        ("slr_core.models.sources", {"slr_core.errors"}),
        ("slr_core.slr.intervals", {"slr_core.errors"}),
    ],
)
def test_bottom_modules_import_only_their_leaves(module, allowed):
    loaded, _, torch_loaded = _loaded_after_importing([module])
    packages = {f"slr_core.{p}" for p in PACKAGES}
    assert set(ast.literal_eval(loaded)) - packages == {module, *allowed}
    assert torch_loaded == "False"  # the CLI's parser lists DEVICES and DTYPES without loading torch


def test_readme_layout_table_lists_exactly_the_modules_in_the_tree():
    readme = (ROOT.parent / "README.md").read_text()
    layout = readme.split("## Layout", 1)[1].split("\n## ", 1)[0]
    listed = {
        line.split("`slr_core/", 1)[1].split(".py`", 1)[0].replace("/", ".")
        for line in layout.splitlines()
        if "`slr_core/" in line and ".py`" in line
    }
    on_disk = {name.removeprefix("slr_core.") for name in MODULES} - {"slr_core"}
    on_disk = {name for name in on_disk if "." in name or name not in PACKAGES}
    on_disk = {name for name in on_disk if name.split(".")[-1] != "__init__"}
    assert listed == on_disk, (
        f"missing from README: {sorted(on_disk - listed)}; gone: {sorted(listed - on_disk)}"
    )
    for package in ORDER:  # the order is written down where a newcomer reads it
        assert f"`{package}`" in layout or f"`slr_core/{package}/`" in layout, package


def test_every_module_stays_under_about_400_lines():
    # Data tables (*_data.py) are long by nature; everything else keeps to one concern, one screenful or so.
    lengths = {
        str(p.relative_to(ROOT)): len(p.read_text().splitlines())
        for p in ROOT.rglob("*.py")
        if not p.stem.endswith("_data")
    }
    assert max(lengths.values()) <= 420, sorted(lengths.items(), key=lambda item: -item[1])[:3]
    app = ROOT.parent / "app.py"
    assert len(app.read_text().splitlines()) <= 450
