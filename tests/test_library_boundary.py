"""The library stays a library: importing every slr_core module pulls in no web UI."""

import subprocess
import sys
from pathlib import Path

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
