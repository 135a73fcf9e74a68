"""A fake Hugging Face Hub on localhost: serves model folders as Hub repos and records every request's
headers, so a test can see exactly which requests carried a token. huggingface_hub talks to it through
its real HTTP code; only the endpoint (and the Hub cache folder) is pointed here.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest


@dataclass
class Request:
    """One request the fake Hub answered."""

    method: str
    path: str
    authorization: str | None


@dataclass
class FakeHub:
    """Repos (id -> folder) served at `url`; `requests` records what came in, in order."""

    url: str = ""
    repos: dict[str, Path] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)

    def add(self, repo: str, folder: Path) -> str:
        """Serve `folder` as Hub repo `repo`; its commit (a hash of the repo's files)."""
        self.repos[repo] = Path(folder)
        return self.commit(repo)

    def commit(self, repo: str) -> str:
        """The repo's one commit: 40 hex digits from its files' names and contents."""
        digest = hashlib.sha1(repo.encode())
        for path in sorted(self.repos[repo].rglob("*")):
            if path.is_file():
                digest.update(path.name.encode() + path.read_bytes())
        return digest.hexdigest()

    def authorized(self) -> list[Request]:
        """The requests that carried an Authorization header."""
        return [request for request in self.requests if request.authorization]

    def files(self, repo: str) -> list[str]:
        """The repo's file names, relative to its folder."""
        folder = self.repos[repo]
        return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


class _Handler(BaseHTTPRequestHandler):
    hub: FakeHub

    def log_message(self, *args) -> None:  # quiet
        pass

    def _record(self) -> None:
        self.hub.requests.append(Request(self.command, self.path, self.headers.get("Authorization")))

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _missing(self, code: str) -> None:
        self._send(404, json.dumps({"error": code}).encode(), {"X-Error-Code": code})

    def _repo(self, path: str) -> tuple[str | None, str]:
        for repo in self.hub.repos:
            if path == repo or path.startswith(repo + "/"):
                return repo, path[len(repo) + 1 :]
        return None, path

    def do_HEAD(self) -> None:  # noqa: N802 (http.server's name)
        self._record()
        self._answer()

    def do_GET(self) -> None:  # noqa: N802
        self._record()
        self._answer()

    def _answer(self) -> None:
        path = self.path.split("?", 1)[0]
        if path.startswith("/api/models/"):
            repo, rest = self._repo(path[len("/api/models/") :])
            if repo is None:
                return self._send(401, b'{"error": "Repository not found"}', {"X-Error-Code": "RepoNotFound"})
            if match := re.fullmatch(r"((revision|tree)/([^/]+)(/.*)?)?", rest):
                kind = match.group(2) or "revision"
                commit = self.hub.commit(repo)
                if kind == "revision":
                    siblings = [{"rfilename": name} for name in self.hub.files(repo)]
                    body = {
                        "id": repo,
                        "modelId": repo,
                        "sha": commit,
                        "siblings": siblings,
                        "private": False,
                    }
                else:
                    body = [
                        {"type": "file", "path": name, "size": 1, "oid": "0"} for name in self.hub.files(repo)
                    ]
                return self._send(200, json.dumps(body).encode(), {"Content-Type": "application/json"})
            return self._missing("EntryNotFound")
        repo, rest = self._repo(path.lstrip("/"))
        match = re.fullmatch(r"resolve/([^/]+)/(.+)", rest) if repo else None
        if match is None:
            return self._send(401, b"", {"X-Error-Code": "RepoNotFound"})
        file = self.hub.repos[repo] / match.group(2)
        if not file.is_file():
            return self._missing("EntryNotFound")
        data = file.read_bytes()
        headers = {
            "X-Repo-Commit": self.hub.commit(repo),
            "ETag": f'"{hashlib.sha256(data).hexdigest()}"',
            "Content-Type": "application/octet-stream",
        }
        if ranged := re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", "")):
            start = int(ranged.group(1))
            end = int(ranged.group(2)) if ranged.group(2) else len(data) - 1
            part = data[start : end + 1]
            headers["Content-Range"] = f"bytes {start}-{start + len(part) - 1}/{len(data)}"
            return self._send(206, part, headers)
        return self._send(200, data, headers)


@pytest.fixture
def fake_hub(tmp_path, monkeypatch):
    """A FakeHub serving on localhost, with huggingface_hub's endpoint and cache pointed at it."""
    import huggingface_hub
    from huggingface_hub import constants

    hub = FakeHub()
    handler = type("Handler", (_Handler,), {"hub": hub})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    hub.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setattr(constants, "ENDPOINT", hub.url)
    monkeypatch.setattr(
        constants, "HUGGINGFACE_CO_URL_TEMPLATE", hub.url + "/{repo_id}/resolve/{revision}/{filename}"
    )
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.hf_api.api, "endpoint", hub.url)  # the module-level functions' HfApi
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    yield hub
    server.shutdown()
    server.server_close()
