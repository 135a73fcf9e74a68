"""Pushing an export to the Hub: arguments checked first, and every failure a clear ExportError."""

from __future__ import annotations

import http.server
import json
import threading

import pytest

from slr_core.errors import ExportError
from slr_core.export.hub import hub_error, push_to_hub
from slr_core.export.writer import export_hybrid


@pytest.fixture
def exported(tiny_pair, tmp_path):
    return export_hybrid(tiny_pair, 1, 2, tmp_path / "out")


def test_push_checks_its_arguments_first(exported, tmp_path):
    with pytest.raises(ExportError, match="not an exported model folder"):
        push_to_hub(tmp_path / "nothing", "me/model", token="hf_x")
    with pytest.raises(ExportError, match="owner/name"):
        push_to_hub(exported, "not a repo", token="hf_x")


def test_push_offline_is_a_clear_error(exported, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ExportError, match="offline mode"):
        push_to_hub(exported, "me/model", token="hf_x")


def test_push_without_a_token_says_how_to_log_in(exported, monkeypatch, tmp_path):
    from huggingface_hub import constants

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    with pytest.raises(ExportError, match="not logged in"):
        push_to_hub(exported, "me/model")


def test_push_to_an_unreachable_hub_is_a_clear_error(exported, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # the discard port: nothing listens
    with pytest.raises(ExportError, match="unreachable"):
        push_to_hub(exported, "me/model", token="hf_x")


class _Refuse(http.server.BaseHTTPRequestHandler):
    status = 401  # what every request gets; a subclass per test case sets its own

    def _refuse(self):
        body = json.dumps({"error": "Invalid credentials in Authorization header"}).encode()
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_HEAD = _refuse

    def log_message(self, *args):
        pass


@pytest.mark.parametrize(
    ("status", "message"), [(401, "refused the token"), (403, "may not write to me/model")]
)
def test_push_refused_by_the_hub_is_a_clear_error(exported, monkeypatch, status, message):
    from huggingface_hub import constants

    handler = type("Refuse", (_Refuse,), {"status": status})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{server.server_port}")
    try:
        with pytest.raises(ExportError, match=message):
            push_to_hub(exported, "me/model", token="hf_invalid")
    finally:
        server.shutdown()


def test_errors_that_are_neither_the_hubs_nor_the_networks_are_left_alone():
    assert hub_error(ValueError("a bug"), "me/model") is None
    assert "unreachable" in str(hub_error(ConnectionError("down"), "me/model"))
