"""docs/inputs.md, row by row: every bad input fails fast and clearly, and nothing computed is lost.

Each test names its row. A CLI mistake must exit 2 with the row's message; one refused before loading must
never reach the loader, one refused after loading must never reach the sweep. An earlier run's output file
and cache entry must come through every refusal unchanged.
"""

from __future__ import annotations

import json
import shutil
import time

import gradio as gr
import pytest
import torch

import app
from slr_core.cache import get_result, put_result
from slr_core.cli import main
from slr_core.engine import benchmark, cached_sweep
from slr_core.models import loading as models
from slr_core.models.settings import Settings
from slr_core.serve.session import SessionView

EARLIER_CSV = "kind,start,end\npost,,\n"
EARLIER_RESULT = {"quality": 0.5, "diversity": 1.0, "stop": 0.5, "strict_quality": 0.25}
CRC_PROMPT = "Generate a random integer in the range [2, 6]. Do not include anything else in your reply."

pytestmark = pytest.mark.usefixtures("page")  # conftest: the page, with the app on the CPU


class Earlier:
    """An earlier run's output file and cache entry, which no refused command may touch."""

    def __init__(self, folder) -> None:
        self.csv = folder / "earlier.csv"
        self.csv.write_text(EARLIER_CSV)
        put_result("earlier/interval/0-0", EARLIER_RESULT)

    def untouched(self) -> bool:
        """The file and the cache entry are exactly as they were."""
        stored = get_result("earlier/interval/0-0")
        return (
            self.csv.read_text() == EARLIER_CSV and {k: stored[k] for k in EARLIER_RESULT} == EARLIER_RESULT
        )


@pytest.fixture
def earlier(tmp_path) -> Earlier:
    return Earlier(tmp_path)


def _refuse(what: str):
    def refuse(*args, **kwargs):
        raise AssertionError(f"{what} started before the bad input was refused")

    return refuse


@pytest.fixture
def no_loading(monkeypatch):
    """Loading a model fails the test: the input under test must be refused before."""
    monkeypatch.setattr(models, "load_pair", _refuse("loading a pair"))
    monkeypatch.setattr(models, "load_tokenizer", _refuse("loading a tokenizer"))


@pytest.fixture
def no_sweep(monkeypatch):
    """Sweeping fails the test: the input under test must be refused after loading, before any sweep."""
    monkeypatch.setattr(cached_sweep, "survey", _refuse("a sweep"))
    monkeypatch.setattr(benchmark, "run_benchmark", _refuse("a benchmark"))


@pytest.fixture
def pair_args(tiny_paths) -> list[str]:
    pre, post = tiny_paths("llama")  # 4 layers
    return ["--pre", str(pre), "--post", str(post), "--device", "cpu"]


def refused(capsys, *argv: str) -> str:
    """Run the CLI, check it exits 2 (argparse's exit or main's), and return what it printed on stderr."""
    try:
        code = main([str(arg) for arg in argv])
    except SystemExit as stop:  # argparse refuses at parsing
        code = stop.code
    captured = capsys.readouterr()
    assert code == 2, captured
    assert "Traceback" not in captured.err
    return captured.err


# ---------------------------------------------------------------- command line


def test_row_01_sources_that_do_not_parse(capsys, tmp_path, earlier, no_loading):
    err = refused(capsys, "sweep", "--pre", tmp_path / "missing", "--post", "x/y", "--out", earlier.csv)
    assert "Model folder not found" in err
    assert "neither an existing path nor a valid hub id" in refused(capsys, "best", "--post", "not a hub id!")
    assert "Unknown demo model" in refused(capsys, "best", "--pre", "demo:other")
    assert earlier.untouched()


def _damaged(tiny_paths, tmp_path, damage: str):
    pre, post = tiny_paths("llama")
    broken = shutil.copytree(post, tmp_path / f"post-{damage}")
    if damage == "truncated weights":
        weights = broken / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    elif damage == "no tokenizer":  # the weights and config were copied, the tokenizer forgotten
        for file in broken.iterdir():
            if file.name not in ("config.json", "generation_config.json", "model.safetensors"):
                file.unlink()
    elif damage == "bad config":
        (broken / "config.json").write_text("{not json")
    return pre, broken


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("truncated weights", "The weights of '{post}' are damaged or incomplete"),
        ("no tokenizer", "Cannot read the tokenizer of '{post}'"),
        ("bad config", "Cannot read the config of '{post}'"),
        ("out of memory", "Not enough memory to load '{post}' on cpu in float32"),
    ],
)
def test_row_02_sources_that_cannot_be_read(
    capsys, tiny_paths, tmp_path, monkeypatch, earlier, no_sweep, damage, message
):
    pre, post = _damaged(tiny_paths, tmp_path, damage)
    if damage == "out of memory":
        from transformers import AutoModelForCausalLM

        def out_of_memory(*args, **kwargs):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

        monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", out_of_memory)
    err = refused(capsys, "sweep", "--pre", pre, "--post", post, "--device", "cpu", "--out", earlier.csv)
    assert message.format(post=post) in err
    assert earlier.untouched()


class _Hub:
    """A stand-in Hugging Face Hub that answers every request with one status and error code."""

    answer = (404, "RepoNotFound")


@pytest.fixture(scope="module")
def refusing_hub():
    """One local server for the module: the Hub client remembers the first endpoint it talked to."""
    import http.server
    import threading

    class Refuse(http.server.BaseHTTPRequestHandler):
        def _answer(self):
            status, code = _Hub.answer
            self.send_response(status)
            self.send_header("X-Error-Code", code)
            self.send_header("X-Error-Message", "refused")
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_HEAD = _answer

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Refuse)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    ("status", "code", "message"),
    [
        (404, "RepoNotFound", "is not a model on the Hugging Face Hub"),
        (403, "GatedRepo", "is a gated Hub repo"),
    ],
)
def test_row_02_hub_answers_name_the_source(monkeypatch, refusing_hub, earlier, status, code, message):
    from huggingface_hub import constants

    from slr_core.errors import SourceError
    from slr_core.models.sources import parse_source

    monkeypatch.setattr(_Hub, "answer", (status, code))
    monkeypatch.setattr(constants, "ENDPOINT", refusing_hub)
    template = refusing_hub + "/{repo_id}/resolve/{revision}/{filename}"
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", template)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    with pytest.raises(SourceError, match=message) as raised:
        models.load_model(parse_source("nobody-here/no-such-model"), Settings(device="cpu"))
    assert "'nobody-here/no-such-model'" in str(raised.value)
    assert earlier.untouched()


def test_row_03_preset(capsys, earlier, no_loading):
    assert "Unknown preset 'Nope'. Known presets:" in refused(capsys, "sweep", "--preset", "Nope")
    assert earlier.untouched()


@pytest.mark.parametrize(
    "argv",
    [
        ["sweep", "--device", "tpu"],
        ["sweep", "--dtype", "int8"],
        ["sweep", "--weights-dtype", "int8"],
        ["best", "--rule", "first-token"],
        ["evaluate", "--task", "math"],
        ["sweep", "--restore", "norms"],
    ],
)
def test_row_04_choices(capsys, earlier, no_loading, argv):
    assert "invalid choice" in refused(capsys, *argv)
    assert earlier.untouched()


def test_row_05_a_device_this_machine_lacks(capsys, pair_args, earlier, no_loading):
    err = refused(capsys, "best", *pair_args[:4], "--device", "mps")  # never on Linux
    assert "device 'mps' was asked for, but PyTorch sees no Apple GPU here" in err
    assert earlier.untouched()


@pytest.mark.parametrize(
    ("prompts", "message"),
    [
        ("{not json", "Cannot read prompt set"),
        ([], "expected a non-empty JSON list"),
        ([{"instruction": "  ", "valid": "01"}], "the 'instruction' is empty"),
        ([{"instruction": "Pick", "valid": ["10", ""]}], "every valid answer must be non-empty text"),
        ([{"instruction": "Pick", "valid": ["10", " 11"]}], "the answer ' 11' has whitespace around it"),
        ([{"instruction": "Pick", "valid": ["Red", "Red"]}], "'valid' lists ['Red'] more than once"),
        (
            [{"instruction": "Pick", "valid": "01"}, {"instruction": "Pick", "valid": "23"}],
            "prompt 1: repeats the instruction of prompt 0",
        ),
    ],
)
def test_row_06_prompt_set_form(capsys, tmp_path, pair_args, earlier, no_loading, prompts, message):
    path = tmp_path / "prompts.json"
    path.write_text(prompts if isinstance(prompts, str) else json.dumps(prompts))
    assert message in refused(capsys, "sweep", *pair_args, "--prompts", path, "--out", earlier.csv)
    assert message in refused(capsys, "prompts", "--prompts", path, "--out", earlier.csv)
    assert earlier.untouched()


def test_row_06_prompt_set_names(capsys, pair_args, earlier, no_loading):
    err = refused(capsys, "sweep", *pair_args, "--prompts", "opne", "--out", earlier.csv)
    assert "--prompts 'opne' is neither a shipped prompt set (paper, open) nor a file" in err
    assert earlier.untouched()


def test_row_07_prompt_answers_must_be_single_tokens(capsys, tmp_path, pair_args, earlier, no_sweep):
    path = tmp_path / "prompts.json"
    path.write_text(json.dumps([{"instruction": "Pick a symbol.", "valid": ["€", "¥"]}]))
    err = refused(capsys, "sweep", *pair_args, "--prompts", path, "--out", earlier.csv)
    assert "No token sequence of this tokenizer says the answer(s) ['€', '¥']" in err
    assert "remove or reword them" in err
    assert earlier.untouched()


@pytest.mark.parametrize("value", ["0", "-5", "1.5", "lots"])
def test_row_08_batch_tokens(capsys, pair_args, earlier, no_loading, value):
    err = refused(capsys, "sweep", *pair_args, "--batch-tokens", value)
    assert "argument --batch-tokens:" in err
    assert "whole number" in err or "needs a number" in err
    assert earlier.untouched()


def test_row_09_output_files(capsys, tmp_path, pair_args, earlier, no_loading):
    folder = tmp_path / "results"
    folder.mkdir()
    assert "is a folder: name a file to write" in refused(capsys, "sweep", *pair_args, "--out", folder)
    blocked = tmp_path / "earlier.csv" / "landscape.csv"  # under a file
    assert "is a file, not a folder" in refused(capsys, "evaluate", "--task", "qa", "--out", blocked)
    assert "needs a file name" in refused(capsys, "prompts", "--out", " ")
    assert list(folder.iterdir()) == []
    assert earlier.untouched()


@pytest.mark.parametrize("text", ["3-1", "a-b", "1-2-3", ",", "-1"])
def test_row_10_interval_list_form(capsys, pair_args, earlier, no_loading, text):
    err = refused(capsys, "sweep", *pair_args, "--intervals", text, "--out", earlier.csv)
    assert "argument --intervals:" in err and ("Cannot read interval" in err or "No interval given" in err)
    assert earlier.untouched()


def test_row_11_interval_list_bounds(capsys, pair_args, earlier, no_sweep):
    err = refused(capsys, "sweep", *pair_args, "--intervals", "0-1,2-9", "--out", earlier.csv)
    assert "Interval [2, 9] is invalid for a 4-layer model: need 0 <= i <= j <= 3" in err
    assert earlier.untouched()


@pytest.mark.parametrize("value", ["1.5", "-0.1", "nan", "90", "7", "0"])
def test_row_12_q_fraction(capsys, pair_args, earlier, no_loading, value):
    err = refused(capsys, "best", *pair_args, "--q-fraction", value)
    assert "argument --q-fraction:" in err and ("must lie in (0, 1]" in err or "finite" in err)
    assert earlier.untouched()


def test_row_13_q_min(capsys, pair_args, earlier, no_loading):
    assert "must lie in [0, 1], got 2" in refused(capsys, "best", *pair_args, "--q-min", "2")
    err = refused(capsys, "best", *pair_args, "--q-min", "0.5", "--q-fraction", "0.9")
    assert "not allowed with argument" in err
    assert earlier.untouched()


def test_row_14_num_prompts(capsys, pair_args, earlier, no_loading):
    assert "must be a whole number of at least 1" in refused(
        capsys, "bench", *pair_args, "--num-prompts", "0"
    )
    err = refused(capsys, "bench", *pair_args, "--num-prompts", "41")
    assert "--num-prompts must be a whole number from 1 to 40, got 41" in err
    assert earlier.untouched()


def test_row_15_export_interval_form(capsys, tmp_path, pair_args, earlier, no_loading):
    out = tmp_path / "hybrid"
    err = refused(capsys, "export", *pair_args, "--interval", "-1", "2", "--out", out)
    assert "must be a whole number of at least 0" in err
    err = refused(capsys, "export", *pair_args, "--interval", "3", "1", "--out", out)
    assert "--interval 3 1 ends before it starts" in err
    assert not out.exists() and earlier.untouched()


def test_row_16_export_bounds(capsys, tmp_path, pair_args, earlier, no_sweep):
    out = tmp_path / "hybrid"
    err = refused(capsys, "export", *pair_args, "--interval", "0", "9", "--out", out)
    assert "Interval [0, 9] is invalid for a 4-layer model" in err
    err = refused(capsys, "export", *pair_args, "--layers", "1,9", "--out", out)
    assert "invalid for a 4-layer model" in err
    assert not out.exists() and earlier.untouched()


@pytest.mark.parametrize("value", ["0", "1.5", "-1"])
def test_row_17_export_fraction(capsys, tmp_path, pair_args, earlier, no_loading, value):
    err = refused(
        capsys, "export", *pair_args, "--interval", "0", "1", "--fraction", value, "--out", tmp_path / "h"
    )
    assert "argument --fraction: must lie in (0, 1]" in err
    assert earlier.untouched()


def test_row_18_export_target(capsys, tmp_path, pair_args, earlier, no_loading):
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    interval = ["--interval", "0", "1"]
    err = refused(capsys, "export", *pair_args, *interval, "--out", taken)
    assert "already exists and is not empty: choose a new folder, or pass overwrite" in err
    err = refused(capsys, "export", *pair_args, *interval, "--out", taken, "--overwrite")
    assert "it is not a model folder (no config.json)" in err
    post = pair_args[3]
    err = refused(capsys, "export", *pair_args, *interval, "--out", post, "--overwrite")
    assert "it is one of the pair's own source models" in err
    assert "is a file, not a folder" in refused(capsys, "export", *pair_args, *interval, "--out", earlier.csv)
    assert (taken / "notes.txt").read_text() == "mine" and earlier.untouched()


def test_row_19_push_to_hub(capsys, tmp_path, pair_args, monkeypatch, earlier, no_loading):
    from huggingface_hub import constants

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    export = ["export", *pair_args, "--interval", "0", "1", "--out", tmp_path / "h"]
    assert "is not a Hub repo id" in refused(capsys, *export, "--push-to-hub", "no-owner")
    assert "not logged in to the Hugging Face Hub" in refused(capsys, *export, "--push-to-hub", "me/model")
    assert earlier.untouched()


@pytest.mark.parametrize("value", ["0", "-1", "6", "inf", "warm"])
def test_row_20_temperatures(capsys, pair_args, earlier, no_loading, value):
    err = refused(capsys, "evaluate", *pair_args, "--task", "qa", "--temperatures", "1.0", value)
    assert "argument --temperatures:" in err
    assert "must lie in (0, 5]" in err or "finite" in err or "needs a number" in err
    assert earlier.untouched()


@pytest.mark.parametrize("value", ["-1", "4294967296", "0.5"])
def test_row_21_seed(capsys, pair_args, earlier, no_loading, value):
    err = refused(capsys, "evaluate", *pair_args, "--task", "qa", "--seed", value)
    assert "argument --seed: must be a whole number" in err
    assert earlier.untouched()


# ---------------------------------------------------------------- the page


@pytest.fixture
def shown(tiny_paths) -> SessionView:
    """A session showing the tiny pair (loaded through the app's registry) with interval [0, 1] selected."""
    pre, post = tiny_paths("llama")
    view = SessionView(key=(str(pre), str(post), app.SETTINGS), selected=(0, 1))
    app.REGISTRY.get(view.key)
    return view


def state(view: SessionView) -> tuple:
    return view.key, view.landscape, view.selected, view.q_fraction, view.generation


def test_row_22_source_boxes(page, shown, tmp_path, earlier):
    before = state(shown)
    with pytest.raises(gr.Error, match="Give both"):
        page.show_pair(shown, "  ", shown.key[1])
    with pytest.raises(gr.Error, match="Model folder not found"):
        page.show_pair(shown, str(tmp_path / "missing"), shown.key[1])
    assert state(shown) == before and earlier.untouched()


def test_row_23_any_failure_while_loading(page, shown, monkeypatch, earlier):
    from slr_core.serve import registry

    def broken(*args, **kwargs):
        raise RuntimeError("something nobody foresaw")

    monkeypatch.setattr(registry, "load_entry", broken)
    before = state(shown)
    with pytest.raises(
        gr.Error, match=r"Could not load some/pre / some/post \(RuntimeError: something nobody"
    ):
        page.show_pair(shown, "some/pre", "some/post")
    assert state(shown) == before and earlier.untouched()


def test_row_24_choices(page):
    with pytest.raises(gr.Error, match="not in the list of choices"):
        page.rule.preprocess("first-token")
    with pytest.raises(gr.Error, match="not in the list of choices"):
        page.quality_map.preprocess("entropy")
    with pytest.raises(gr.Error, match="not in the list of choices"):
        page.restore.preprocess("norms")
    with pytest.raises(gr.Error, match="not in the list of choices"):
        page.evaluation[0].preprocess("math")


@pytest.mark.parametrize("fraction", [1.5, -0.2, 0.0, None])
def test_row_25_q_min_fraction(page, shown, fraction):
    before = state(shown)
    with pytest.raises(gr.Error, match="q_min fraction"):
        page.change_view(shown, fraction, "paper", "quality")
    assert state(shown) == before and shown.rule != "paper"


def test_row_26_intervals_in_the_page(page, shown, tmp_path, monkeypatch):
    monkeypatch.setenv("SLR_EXPORT_DIR", str(tmp_path / "exports"))
    from strict_landscapes import two_rule_landscape

    shown.landscape = two_rule_landscape()  # 4 layers, like the tiny pair
    before = state(shown)
    with pytest.raises(gr.Error, match="type start i and end j"):
        page.select_typed(shown, None, 2)
    with pytest.raises(gr.Error, match=r"Interval \[2, 9\] is invalid for a 4-layer model"):
        page.select_typed(shown, 2, 9)
    with pytest.raises(gr.Error, match=r"Interval \[3, 1\] is invalid"):
        page.export_selected(shown, 3, 1)
    assert state(shown) == before and not (tmp_path / "exports").exists()


def test_row_27_layers_box(page, shown):
    from strict_landscapes import two_rule_landscape

    shown.landscape = two_rule_landscape()
    assert "Cannot read layers" in compare_refusal(page, shown, layers="3-1")
    assert "invalid for a 4-layer model" in compare_refusal(page, shown, layers="1,9")


def test_row_28_fraction_slider(page, shown):
    from strict_landscapes import two_rule_landscape

    shown.landscape = two_rule_landscape()
    assert "(0, 1]" in compare_refusal(page, shown, lam=0.0)


def compare_refusal(page, view, **changes) -> str:
    values = dict(prompt=CRC_PROMPT, num_samples=4, min_p=0.1, temperature=1.0, max_new_tokens=8, seed=0)
    values.update(include_pre=False, layers="", lam=1.0)
    values.update(changes)
    before = state(view)
    with pytest.raises(gr.Error) as raised:
        next(page.compare(view, *values.values()))
    assert state(view) == before
    return raised.value.message


def test_row_29_prompt(page, shown):
    assert "Write a prompt first" in compare_refusal(page, shown, prompt="   ")


@pytest.mark.parametrize("value", [0, 300, 2.5, None])
def test_row_30_samples_per_model(page, shown, value):
    message = compare_refusal(page, shown, num_samples=value)
    assert message.startswith("Sampling settings: num_samples")


@pytest.mark.parametrize("value", [-0.1, 1.0, float("nan")])
def test_row_31_min_p(page, shown, value):
    assert compare_refusal(page, shown, min_p=value).startswith("Sampling settings: min_p")


@pytest.mark.parametrize("value", [0.0, 7.5, float("inf")])
def test_row_32_temperature(page, shown, value):
    assert compare_refusal(page, shown, temperature=value).startswith("Sampling settings: temperature")


@pytest.mark.parametrize("value", [0, 4096])
def test_row_33_max_new_tokens(page, shown, value):
    message = compare_refusal(page, shown, max_new_tokens=value)
    assert "max_new_tokens must be a whole number from 1 to 2048" in message


@pytest.mark.parametrize("value", [-1, 2**32, 1e30])
def test_row_34_compare_seed(page, shown, value):
    message = compare_refusal(page, shown, seed=value)
    assert "seed must be a whole number from 0 to 4294967295" in message


def test_row_35_evaluate_temperatures(page, shown):
    with pytest.raises(gr.Error, match="at least one temperature"):
        next(page.evaluate(shown, "qa", True, [], 0))
    with pytest.raises(gr.Error, match=r"temperature must lie in \(0, 5\]"):
        next(page.evaluate(shown, "qa", True, [1.0, 9.0], 0))


@pytest.mark.parametrize("value", [None, -3, 2**40])
def test_row_36_evaluate_seed(page, shown, value):
    with pytest.raises(gr.Error, match="seed"):
        next(page.evaluate(shown, "qa", True, [1.0], value))


@pytest.mark.parametrize("port", ["0", "70000", "http"])
def test_row_37_app_port(monkeypatch, capsys, port):
    monkeypatch.setattr(app.REGISTRY, "get", _refuse("loading the default pair"))
    began = time.monotonic()
    with pytest.raises(SystemExit) as stop:
        app.main(["--port", port])
    assert stop.value.code == 2 and time.monotonic() - began < 5
    assert "argument --port:" in capsys.readouterr().err


def test_row_38_app_pair_flags(monkeypatch, capsys):
    monkeypatch.setattr(app.REGISTRY, "get", _refuse("loading the default pair"))
    with pytest.raises(SystemExit) as stop:
        app.main(["--pre", "demo:pre"])
    assert stop.value.code == 2
    assert "give both --pre and --post, or neither" in capsys.readouterr().err


def test_row_39_weights_wider_than_compute(capsys, pair_args, earlier, no_loading):
    err = refused(capsys, "best", *pair_args[:4], "--dtype", "bfloat16", "--weights-dtype", "float32")
    assert "--weights-dtype float32 is wider than --dtype bfloat16" in err
    assert earlier.untouched()


# ---------------------------------------------------------------- the page's prompt sets


def prompt_file(tmp_path, items, name: str = "mine.json") -> str:
    path = tmp_path / name
    path.write_text(items if isinstance(items, str) else json.dumps(items), encoding="utf-8")
    return str(path)


def test_row_40_prompt_set_picker(page, shown):
    with pytest.raises(gr.Error, match="not in the list of choices"):
        page.prompt_set.preprocess("everything")
    before = state(shown)
    assert page.change_prompts(shown, "upload", None) == {}  # upload picked, no file yet: nothing happens
    with pytest.raises(gr.Error, match="Unknown prompt set 'everything'"):  # the API skips the dropdown
        page.change_prompts(shown, "everything", None)
    assert state(shown) == before


@pytest.mark.parametrize(
    ("items", "message"),
    [
        ("{not json", "Cannot read prompt set mine.json"),
        (
            [{"instruction": "Pick", "valid": ["Red", "Red"]}],
            "mine.json, prompt 0: 'valid' lists ['Red'] more than once",
        ),
        ([{"instruction": "Pick", "valid": ["Red", ""]}], "every valid answer must be non-empty text"),
        ([{"instruction": "Pick", "valid": ["Red "]}], "has whitespace around it"),
    ],
)
def test_row_41_prompt_set_upload_form(page, shown, tmp_path, earlier, items, message):
    before = state(shown)
    with pytest.raises(gr.Error) as refused:
        page.change_prompts(shown, "upload", prompt_file(tmp_path, items))
    assert message in str(refused.value)
    assert state(shown) == before and shown.prompts is None and earlier.untouched()


def test_row_42_prompt_set_upload_answers(page, shown, tmp_path, earlier):
    before = state(shown)
    unsayable = [{"instruction": "Pick a symbol.", "valid": ["€", "¥"]}]
    with pytest.raises(gr.Error, match="€"):
        page.change_prompts(shown, "upload", prompt_file(tmp_path, unsayable))
    assert state(shown) == before and shown.prompts is None and earlier.untouched()


def test_row_43_prompt_set_size_in_hosted_mode(page, shown, tmp_path, earlier, monkeypatch):
    from slr_core.inputs import PROMPT_SET_CAPS
    from slr_core.models.hosting import HostedPolicy

    count = PROMPT_SET_CAPS["prompts"] + 1
    many = [{"instruction": f"Pick a digit, take {k}.", "valid": "0123"} for k in range(count)]
    path = prompt_file(tmp_path, many)
    monkeypatch.setattr(app, "POLICY", HostedPolicy(hosted=True))
    before = state(shown)
    with pytest.raises(gr.Error, match=rf"larger than this server takes: {count} prompts \(at most"):
        page.change_prompts(shown, "upload", path)
    assert state(shown) == before and earlier.untouched()
    monkeypatch.setattr(app, "POLICY", HostedPolicy())  # locally the same set is taken
    page.change_prompts(shown, "upload", path)
    assert len(shown.prompts) == count


def test_row_44_a_trie_too_large(page, shown, capsys, tmp_path, pair_args, earlier, no_sweep):
    from slr_core.crc.trie import MAX_TRIE_NODES

    # The numbers 0 to 1999 share prefixes, yet even their own tokenisations need more nodes than one
    # prompt may lay out (0-999 now fit: a pruned layout keeps one spelling per answer beyond single tokens).
    numbers = [{"instruction": "Give a number below 2000.", "valid": [str(n) for n in range(2000)]}]
    path = prompt_file(tmp_path, numbers, "numbers.json")
    err = refused(capsys, "sweep", *pair_args, "--prompts", path, "--out", earlier.csv)
    assert (
        "trie nodes even when only their spellings" in err
        and f"the cap is {MAX_TRIE_NODES} per prompt" in err
    )
    before = state(shown)
    with pytest.raises(gr.Error, match=f"the cap is {MAX_TRIE_NODES} per prompt"):
        page.change_prompts(shown, "upload", path)
    assert state(shown) == before and shown.prompts is None and earlier.untouched()
