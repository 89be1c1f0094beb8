"""A Hugging Face hub on 127.0.0.1 for the export tests: the download endpoints `huggingface_hub` 2.x uses
(shared/reference/hub-protocol.md), serving model folders from disk, so the real client downloads for real.

Endpoints: model info at a revision, the file tree at a commit, file bytes by revision and path. Anything else is
404. A repository marked private answers 401 unless the request carries `Authorization: Bearer <token>`.
"""
from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit


@dataclass
class Repo:
    repo_id: str
    files: dict[str, bytes]  # POSIX relative path -> content
    sha: str  # the commit every revision resolves to
    token: str | None = None  # private: only this bearer token may read

    @classmethod
    def from_folder(cls, repo_id: str, folder: Path, token: str | None = None) -> Repo:
        files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
        digest = hashlib.sha1(repo_id.encode() + b"".join(hashlib.sha1(v).digest() for v in files.values()))
        return cls(repo_id=repo_id, files=files, sha=digest.hexdigest(), token=token)


@dataclass
class HubServer:
    repos: dict[str, Repo] = field(default_factory=dict)
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)  # method, path, authorization
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def add(self, repo: Repo) -> Repo:
        self.repos[repo.repo_id] = repo
        return repo

    def start(self) -> HubServer:
        hub = self

        class Handler(_Handler):
            server_hub = hub

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="hub-server", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


_REVISION = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)/revision/(?P<rev>.+)$")
_TREE = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?$")
_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")


class _Handler(BaseHTTPRequestHandler):
    server_hub: HubServer
    disable_nagle_algorithm = True
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # keep test output clean
        return

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def do_GET(self) -> None:
        self._serve(body=True)

    def _send(self, status: int, data: bytes, headers: dict[str, str], body: bool) -> None:
        self.send_response(status)
        for name, value in {"Content-Length": str(len(data)), **headers}.items():
            self.send_header(name, value)
        self.end_headers()
        if body:
            self.wfile.write(data)

    def _json(self, status: int, obj: object, body: bool, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(obj).encode(), {"Content-Type": "application/json", **(headers or {})}, body)

    def _serve(self, body: bool) -> None:
        hub = self.server_hub
        path = unquote(urlsplit(self.path).path)
        hub.requests.append((self.command, path, self.headers.get("Authorization")))
        for pattern in (_REVISION, _TREE, _RESOLVE):
            match = pattern.match(path)
            if match:
                break
        else:
            self._json(404, {"error": "Not Found"}, body)
            return
        repo = hub.repos.get(match["repo"])
        if repo is None or (repo.token and self.headers.get("Authorization") != f"Bearer {repo.token}"):
            # The hub answers 401 for private and missing repositories alike: it does not confirm they exist.
            self._json(401, {"error": "Repository Not Found"}, body, {"X-Error-Code": "RepoNotFound"})
            return
        if match["rev"] not in ("main", repo.sha):
            self._json(404, {"error": "Revision Not Found"}, body, {"X-Error-Code": "RevisionNotFound"})
            return
        if pattern is _REVISION:
            self._json(200, {"id": repo.repo_id, "modelId": repo.repo_id, "sha": repo.sha, "private": bool(repo.token),
                             "siblings": [{"rfilename": name} for name in repo.files]}, body)
        elif pattern is _TREE:
            entries = [{"type": "file", "path": name, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}
                       for name, data in repo.files.items()]
            folders = sorted({str(Path(n).parent) for n in repo.files} - {"."})
            entries += [{"type": "directory", "path": f, "size": 0, "oid": "0" * 40} for f in folders]
            self._json(200, entries, body)
        else:
            data = repo.files.get(match["path"])
            if data is None:
                self._json(404, {"error": "Entry not found"}, body, {"X-Error-Code": "EntryNotFound"})
                return
            self._send(200, data, {"X-Repo-Commit": repo.sha, "ETag": f'"{hashlib.sha256(data).hexdigest()}"',
                                   "Content-Type": "application/octet-stream"}, body)
