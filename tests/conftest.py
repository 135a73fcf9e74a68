"""Shared fixtures: tiny random pairs per architecture, loaded through the real loading code."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

from fake_hub import fake_hub  # noqa: E402, F401 (a fixture: a fake Hub on localhost)
from tiny_pairs import make_pair  # noqa: E402

from slr_core.cache import cache_root  # noqa: E402

# The user's cache, read before the autouse fixture isolates each test: the real tests reuse the
# demo's dequantized snapshot there instead of rebuilding it (about 80 s) in every temporary folder.
USER_CACHE = cache_root()

# Every family the exactness tests cover (tests/tiny_pairs.py builds one tiny pair of each);
# gemma3_mm is Gemma3ForConditionalGeneration, the class of every Gemma 3 checkpoint from 4B up.
FAMILIES = [
    "llama",
    "mistral",
    "qwen2",
    "qwen3",
    "gemma2",
    "gemma3",
    "gemma3_mm",
    "phi3",
    "gpt_neox",
    "olmo2",
    "granite",
    "smollm3",
    "cohere",
    "mixtral",
]


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    """Every test gets its own empty cache folder."""
    monkeypatch.setenv("SLR_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="session")
def tiny_paths(tmp_path_factory):
    """A function family -> (pre_folder, post_folder), each pair built once per session."""
    built = {}

    def get(family: str = "llama") -> tuple[Path, Path]:
        if family not in built:
            built[family] = make_pair(tmp_path_factory.mktemp(family), family)
        return built[family]

    return get


@pytest.fixture(scope="session")
def tiny_pair(tiny_paths):
    """A loaded tiny Llama pair on the CPU (shared: do not mutate it)."""
    from slr_core.models.loading import load_pair
    from slr_core.models.settings import Settings

    pre, post = tiny_paths("llama")
    return load_pair(str(pre), str(post), Settings(device="cpu"))


@pytest.fixture(scope="session")
def demo_pair():
    """The real demo pair on the CPU, from the user's cache (building its snapshot there once)."""
    from slr_core.cache import CACHE_ENV
    from slr_core.models.loading import load_pair
    from slr_core.models.settings import Settings

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CACHE_ENV, str(USER_CACHE))
        return load_pair("demo:pre", "demo:post", Settings(device="cpu"))


@pytest.fixture
def one_thread():
    """Tiny models: thread hand-offs cost more than their matmuls, worst on a shared 2-core CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def page():
    """The app's page (components and handlers), built once per module, with the app on the CPU."""
    import app
    from slr_core.models.settings import Settings

    previous, app.SETTINGS = app.SETTINGS, Settings(device="cpu")
    yield app.build_page()
    app.SETTINGS = previous
