"""The library stays a library: no web UI, no import cycles, and the bottom modules stay light."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import slr_core

MODULES = sorted(p.stem for p in Path(slr_core.__file__).parent.glob("*.py") if p.stem != "__main__")


def test_no_slr_core_module_imports_gradio():
    code = (
        "import importlib, sys\n"
        f"for name in {MODULES!r}:\n"
        "    importlib.import_module('slr_core.' + name)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'gradio'))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == "[]"
    assert len(MODULES) > 20  # the glob found the package


def _top_level_imports(path: Path) -> set[str]:
    """slr_core modules a module imports when it is imported (function-level imports are lazy, left out)."""
    tree = ast.parse(path.read_text())
    found = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            found |= {node.module} if node.module else {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("slr_core"):
            found.add(node.module.removeprefix("slr_core").lstrip(".") or node.names[0].name)
    return {name.split(".")[0] for name in found}


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


def test_module_imports_form_no_cycle():
    folder = Path(slr_core.__file__).parent
    graph = {name: _top_level_imports(folder / f"{name}.py") for name in MODULES}
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))


def test_placement_does_not_depend_on_loading():
    # placement sits below models in the layering: models uses it, never the other way round.
    assert "models" not in _top_level_imports(Path(slr_core.__file__).parent / "placement.py")


@pytest.mark.parametrize(
    "module,allowed",
    [
        ("settings", {"errors"}),
        ("files", set()),
        ("sources", {"errors"}),
    ],
)
def test_bottom_modules_import_only_their_leaves(module, allowed):
    code = (
        "import importlib, sys\n"
        f"importlib.import_module('slr_core.{module}')\n"
        "print(sorted(m.split('.')[1] for m in sys.modules if m.startswith('slr_core.')))\n"
        "print('torch' in sys.modules)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    loaded, torch_loaded = run.stdout.split("\n")[:2]
    assert set(ast.literal_eval(loaded)) == {module, *allowed}
    assert torch_loaded == "False"  # the CLI's parser lists DEVICES and DTYPES without loading torch


def test_readme_layout_table_lists_exactly_the_modules_in_the_tree():
    readme = (Path(slr_core.__file__).parent.parent / "README.md").read_text()
    layout = readme.split("## Layout", 1)[1].split("\n## ", 1)[0]
    listed = {
        line.split("`slr_core/", 1)[1].split(".py`", 1)[0]
        for line in layout.splitlines()
        if "`slr_core/" in line
    }
    on_disk = set(MODULES) - {"__init__"}
    assert listed == on_disk, (
        f"missing from README: {sorted(on_disk - listed)}; gone: {sorted(listed - on_disk)}"
    )


def test_every_module_stays_under_about_400_lines():
    # Data tables (*_data.py) are long by nature; everything else keeps to one concern, one screenful or so.
    root = Path(slr_core.__file__).parent
    lengths = {
        p.name: len(p.read_text().splitlines()) for p in root.glob("*.py") if not p.stem.endswith("_data")
    }
    assert max(lengths.values()) <= 420, sorted(lengths.items(), key=lambda item: -item[1])[:3]
    app = root.parent / "app.py"
    assert len(app.read_text().splitlines()) <= 450
