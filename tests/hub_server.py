"""A Hugging Face Hub-compatible HTTP server for tests: the real `huggingface_hub` client and
`transformers.from_pretrained` talk to it exactly as they would to huggingface.co.

It covers the calls Parc makes (see /work/shared/notes/hub-protocol.md): create_repo, create_branch,
list_repo_refs, upload_folder/upload_file (preupload answers "regular": content travels base64-inline
in the NDJSON commit), repo_info, list_repo_tree, get_paths_info, snapshot_download/hf_hub_download
(resolve), and the metadata check the client runs before committing a README.md (validate-yaml,
`card_metadata_problems`). Files that the commit's `.gitattributes` sends to LFS (`filter=lfs`) are stored as
the Hub stores an LFS object: the pointer (sha256 and size) is what repo_info (blobs), the tree and paths-info
report (`lfs`), and resolve answers with X-Linked-Etag/X-Linked-Size; the content still travels inline in the
commit (preupload answers "regular"), a shortcut of the transport only. What the listings say of a file (size,
git blob id, LFS pointer) is taken when the commit is made, as git records it in the tree: a test that replaces
a stored file's bytes after the commit models an object store serving other bytes than the commit names.
Repos, branches and commits live in memory in a `HubState` that outlives `stop()`/`restart()` on the
same port, so a test can take the Hub down mid-push and bring it back. `Faults` answers a seeded
fraction of requests with 500/503/429 or a dropped connection (before or after the request took
effect). `CommitLimit` enforces a commit rate per repo as the Hub does (429 + Retry-After), and each
commit's parent and title are kept, so `list_repo_commits` shows a branch's history. Every request is recorded in `state.requests` for assertions.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import random
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from fnmatch import fnmatch
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, List, Optional
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

API = re.compile(
    r"^/api/(?P<type>models|datasets|spaces)/(?P<repo>[^/]+/[^/]+)"
    r"(?:/(?P<action>branch|refs|preupload|commits|commit|revision|tree|paths-info)(?:/(?P<rest>.*))?)?$"
)
RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")


def git_blob_oid(data: bytes) -> str:
    """The id git (and the Hub) gives a regular file: lets the client skip files that did not change."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_paths(snapshot: Dict[str, bytes]) -> List[str]:
    """The paths of a snapshot that its `.gitattributes` stores in LFS (`<pattern> filter=lfs ...` lines)."""
    patterns = [
        line.split()[0]
        for line in snapshot.get(".gitattributes", b"").decode().splitlines()
        if line.strip() and not line.startswith("#") and "filter=lfs" in line.split()[1:]
    ]
    return [
        path
        for path in snapshot
        if path != ".gitattributes"
        and any(fnmatch(path if "/" in pattern else path.rsplit("/", 1)[-1], pattern) for pattern in patterns)
    ]


def listing(snapshot: Dict[str, bytes]) -> Dict[str, dict]:
    """path -> {"size", "oid" (git blob id), "lfs" (None or the pointer)}: what a commit records of each file."""
    stored_in_lfs = set(lfs_paths(snapshot))
    found = {}
    for path, data in snapshot.items():
        if path not in stored_in_lfs:
            found[path] = {"size": len(data), "oid": git_blob_oid(data), "lfs": None}
            continue
        sha256 = hashlib.sha256(data).hexdigest()
        text = lfs_pointer_text(sha256, len(data))
        found[path] = {
            "size": len(data),
            "oid": git_blob_oid(text),
            "lfs": {"sha256": sha256, "size": len(data), "pointerSize": len(text)},
        }
    return found


def lfs_pointer_text(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


@dataclass
class Repo:
    private: bool
    branches: Dict[str, str] = field(default_factory=dict)  # name -> commit oid
    commits: Dict[str, Dict[str, bytes]] = field(default_factory=dict)  # oid -> full snapshot path -> bytes
    history: List[tuple] = field(default_factory=list)  # (branch, paths added or changed, paths deleted)
    parents: Dict[str, Optional[str]] = field(default_factory=dict)  # commit oid -> parent oid (None: the first)
    titles: Dict[str, str] = field(default_factory=dict)  # commit oid -> commit message
    listings: Dict[str, Dict[str, dict]] = field(default_factory=dict)  # commit oid -> what it records of each file

    def describe(self, oid: str, path: str) -> dict:
        """size, git blob id and (LFS files) the pointer of one file of commit `oid`, as recorded when it was
        made; a commit a test planted directly (not through HubState.commit) is described from its bytes."""
        if oid not in self.listings:
            self.listings[oid] = listing(self.commits[oid])
        return self.listings[oid][path]


@dataclass
class CommitLimit:
    """At most `commits` commits per repo in any `window_s` seconds, as the Hub's 128 per hour: a commit over
    the limit is answered 429 with Retry-After (and the RateLimit headers) saying when the next one fits."""

    commits: int
    window_s: float
    times: Dict[str, List[float]] = field(default_factory=dict)  # repo -> monotonic times of accepted commits

    def wait_s(self, repo_id: str, now: float) -> float:
        recent = [t for t in self.times.get(repo_id, []) if now - t < self.window_s]
        self.times[repo_id] = recent
        return 0.0 if len(recent) < self.commits else recent[0] + self.window_s - now


@dataclass
class Faults:
    """A seeded fraction `rate` of requests matching `only` fail in one of `kinds`:
    "500", "503", "429" (with Retry-After), "drop" (connection closed, request ignored) or
    "drop-after" (the request takes effect, then the connection closes: the client never learns it)."""

    rate: float
    kinds: tuple = ("500", "503", "429", "drop", "drop-after")
    seed: int = 0
    retry_after: str = "0"
    only: str = ""  # regex on "METHOD path"; empty = every request
    limit: Optional[int] = None  # at most this many faults

    def __post_init__(self):
        self._rng = random.Random(self.seed)
        self._lock = threading.Lock()

    def draw(self, method: str, path: str) -> Optional[str]:
        if self.only and not re.search(self.only, f"{method} {path}"):
            return None
        with self._lock:
            if self.limit == 0 or self._rng.random() >= self.rate:
                return None
            self.limit = None if self.limit is None else self.limit - 1
            return self._rng.choice(self.kinds)


class HubState:
    """Everything the Hub knows; shared by successive server instances on the same port."""

    def __init__(self):
        self.lock = threading.Lock()
        self.repos: Dict[str, Repo] = {}
        self.requests: List[tuple] = []  # (monotonic time, method, path, status or "drop")
        self.faults: Optional[Faults] = None
        self.commit_limit: Optional[CommitLimit] = None
        self.token: Optional[str] = None  # when set, every request must carry it
        self.hold = None  # (method, path, body) -> bool: such a request waits for `release`, then drops
        self.held, self.release = threading.Event(), threading.Event()

    def branch_commits(self, repo_id: str, branch: str) -> List[str]:
        """The titles of a branch's commits, newest first, down to the repo's first commit (excluded)."""
        repo, titles = self.repos[repo_id], []
        oid = repo.branches[branch]
        while repo.parents.get(oid) is not None:
            titles.append(repo.titles[oid])
            oid = repo.parents[oid]
        return titles

    def files(self, repo_id: str, revision: str) -> Dict[str, bytes]:
        repo = self.repos[repo_id]
        return repo.commits[repo.branches.get(revision, revision)]

    def commit(self, repo_id: str, branch: str, snapshot: Dict[str, bytes], title: str = "initial commit") -> str:
        repo = self.repos[repo_id]
        before = repo.commits.get(repo.branches.get(branch), {})
        repo.history.append(
            (
                branch,
                sorted(p for p in snapshot if snapshot[p] != before.get(p)),
                sorted(p for p in before if p not in snapshot),
            )
        )
        oid = hashlib.sha1(f"{repo_id}{branch}{len(repo.commits)}{time.time_ns()}".encode()).hexdigest()
        repo.commits[oid] = snapshot
        repo.listings[oid] = listing(snapshot)  # taken now: later changes to the bytes do not move it
        repo.parents[oid], repo.titles[oid] = repo.branches.get(branch), title
        if self.commit_limit is not None:
            self.commit_limit.times.setdefault(repo_id, []).append(time.monotonic())
        repo.branches[branch] = oid
        return oid


def card_metadata_problems(content: str) -> tuple:
    """(errors, warnings) of a README.md's YAML metadata, by the Hub's model card rules (huggingface.co/docs/hub/
    model-cards): a mapping; license, library_name strings; language, tags, datasets, base_model a string or a
    list of them; model-index a list of {name, results: [{task: {type}, dataset: {type, name}, metrics: [{type,
    value}]}]} with numeric values."""
    import yaml

    match = re.match(r"^---\n(.*?)\n---\n", content, flags=re.DOTALL)
    if not match:
        return [], ["empty or missing yaml metadata in repo card"]
    try:
        meta = yaml.safe_load(match.group(1))
    except yaml.YAMLError as exc:
        return [f"invalid YAML: {exc}"], []
    if not isinstance(meta, dict):
        return ["metadata must be a mapping"], []
    errors = [
        f'"{key}" must be a string'
        for key in ("license", "library_name", "pipeline_tag")
        if key in meta and not isinstance(meta[key], str)
    ]
    errors += [
        f'"{key}" must be a string or a list of strings'
        for key in ("language", "tags", "datasets", "base_model")
        if key in meta
        and not (
            isinstance(meta[key], str) or (isinstance(meta[key], list) and all(isinstance(v, str) for v in meta[key]))
        )
    ]
    for entry in meta.get("model-index", []) if isinstance(meta.get("model-index", []), list) else [None]:
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("name"), str)
            or not isinstance(entry.get("results"), list)
        ):
            errors.append('"model-index" entries need a name and a list of results')
            continue
        for result in entry["results"]:
            task, dataset, metrics = result.get("task", {}), result.get("dataset", {}), result.get("metrics")
            if not (
                isinstance(task, dict)
                and task.get("type")
                and isinstance(dataset, dict)
                and dataset.get("type")
                and dataset.get("name")
                and isinstance(metrics, list)
                and metrics
            ):
                errors.append('"model-index" results need task.type, dataset.type, dataset.name and metrics')
            elif not all(
                isinstance(m, dict) and m.get("type") and isinstance(m.get("value"), (int, float, str)) for m in metrics
            ):
                errors.append('"model-index" metrics need a type and a value')
    return errors, []


class HubError(Exception):
    def __init__(self, status: int, message: str, code: str = "", commit: str = "", headers=None):
        super().__init__(message)
        self.status, self.code, self.commit, self.headers = status, code, commit, headers or {}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the Hub: dropped connections then hit pooled sockets
    disable_nagle_algorithm = True  # headers and body go out as separate writes: no 40 ms delayed-ACK stalls

    def log_message(self, *args):  # quiet: the request log lives in state.requests
        pass

    @property
    def state(self) -> HubState:
        return self.server.state

    def do_GET(self):
        self._dispatch()

    def do_HEAD(self):
        self._dispatch()

    def do_POST(self):
        self._dispatch()

    def _dispatch(self):
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        fault = self.state.faults.draw(self.command, url.path) if self.state.faults else None
        if self.state.hold and self.state.hold(self.command, url.path, body):
            self.state.held.set()  # the test kills the client now; the request never completes
            self.state.release.wait(timeout=60)
            return self._drop()
        if fault == "drop":
            return self._drop()
        if fault in ("500", "503", "429"):
            extra = {"Retry-After": self.state.faults.retry_after} if fault == "429" else {}
            return self._send(int(fault), {"error": f"injected {fault}"}, extra)
        try:
            if self.state.token and self.headers.get("Authorization") != f"Bearer {self.state.token}":
                raise HubError(401, "Invalid credentials in Authorization header")
            status, payload, headers = self._route(url.path, parse_qs(url.query), body)
        except HubError as exc:
            headers = {**({"X-Error-Code": exc.code} if exc.code else {}), **exc.headers}
            if exc.commit:
                headers["X-Repo-Commit"] = exc.commit
            status, payload = exc.status, {"error": str(exc)}
        if fault == "drop-after":
            return self._drop()
        self._send(status, payload, headers)

    def _drop(self):
        self.state.requests.append((time.monotonic(), self.command, self.path, "drop"))
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)

    def _send(self, status: int, payload, headers: Dict[str, str]):
        self.state.requests.append((time.monotonic(), self.command, self.path, status))
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        if not isinstance(payload, bytes):
            self.send_header("Content-Type", "application/json")
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", headers.get("Content-Length", str(len(data))))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    # --- routes ---------------------------------------------------------------------------------------

    def _route(self, path: str, query: dict, body: bytes):
        with self.state.lock:  # one request at a time mutates or reads the store
            if path == "/api/repos/create" and self.command == "POST":
                return self._create_repo(json.loads(body))
            if path == "/api/validate-yaml" and self.command == "POST":  # the client sends every README.md it commits
                errors, warnings = card_metadata_problems(json.loads(body)["content"])
                return (
                    (400 if errors else 200),
                    {"errors": [{"message": m} for m in errors], "warnings": [{"message": m} for m in warnings]},
                    {},
                )
            match = API.match(path)
            if match:
                repo_id, action = match["repo"], match["action"]
                rest = unquote(match["rest"] or "")
                repo = self._repo(repo_id)
                if action is None or action == "revision":
                    blobs = query.get("blobs", ["false"])[0].lower() in ("1", "true")
                    return self._info(repo_id, repo, rest or "main", blobs)
                handler = {
                    "branch": self._create_branch,
                    "refs": self._refs,
                    "preupload": self._preupload,
                    "commit": self._commit,
                    "tree": self._tree,
                    "commits": self._commits,
                    "paths-info": self._paths_info,
                }[action]
                return handler(repo_id, repo, rest, query, body)
            match = RESOLVE.match(path)
            if match and self.command in ("GET", "HEAD"):
                return self._resolve(match["repo"], unquote(match["rev"]), unquote(match["path"]))
        raise HubError(404, f"no route for {self.command} {path}")

    def _repo(self, repo_id: str) -> Repo:
        if repo_id not in self.state.repos:
            raise HubError(404, f"Repository {repo_id} not found", "RepoNotFound")
        return self.state.repos[repo_id]

    def _oid(self, repo: Repo, revision: str) -> str:
        revision = revision.removeprefix("refs/heads/")
        if revision in repo.branches:
            return repo.branches[revision]
        if revision in repo.commits:
            return revision
        raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")

    def _create_repo(self, body: dict):
        repo_id = f"{body.get('organization') or 'user'}/{body['name']}"
        url = {"url": f"{self.server.url}/{repo_id}"}
        if repo_id in self.state.repos:
            return 409, {**url, "error": "You already created this model repo"}, {}
        private = body.get("private", body.get("visibility", "private") != "public")
        self.state.repos[repo_id] = Repo(private=bool(private))
        self.state.commit(repo_id, "main", {".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"})
        return 200, url, {}

    def _create_branch(self, repo_id, repo, branch, query, body):
        if branch in repo.branches:
            return 409, {"error": f"Reference refs/heads/{branch} already exists"}, {}
        start = (json.loads(body) if body else {}).get("startingPoint") or "main"
        repo.branches[branch] = self._oid(repo, start)
        return 200, {}, {}

    def _refs(self, repo_id, repo, rest, query, body):
        branches = [{"name": n, "ref": f"refs/heads/{n}", "targetCommit": oid} for n, oid in repo.branches.items()]
        return 200, {"branches": branches, "tags": [], "converts": [], "pullRequests": []}, {}

    def _preupload(self, repo_id, repo, revision, query, body):
        files = self.state.files(repo_id, self._oid(repo, revision))
        answers = [
            {
                "path": f["path"],
                "uploadMode": "regular",
                "shouldIgnore": False,
                "oid": git_blob_oid(files[f["path"]]) if f["path"] in files else None,
            }
            for f in json.loads(body)["files"]
        ]
        return 200, {"files": answers}, {}

    def _commits(self, repo_id, repo, revision, query, body):
        """GET .../commits/<rev> (HfApi.list_repo_commits): the history, newest first, in one page."""
        oid, found = self._oid(repo, revision), []
        while oid is not None:
            found.append(
                {
                    "id": oid,
                    "authors": [{"user": "parc-test"}],
                    "date": "2026-01-01T00:00:00.000Z",
                    "title": repo.titles.get(oid, ""),
                    "message": "",
                }
            )
            oid = repo.parents.get(oid)
        return 200, found, {}

    def _commit(self, repo_id, repo, branch, query, body):
        if branch not in repo.branches:
            raise HubError(404, f"Invalid rev id: {branch}", "RevisionNotFound")
        limit = self.state.commit_limit
        wait = limit.wait_s(repo_id, time.monotonic()) if limit is not None else 0.0
        if wait > 0:  # the Hub's wording, with the headers huggingface_hub parses
            seconds = max(1, math.ceil(wait))
            raise HubError(
                429,
                f"You have exceeded the rate limit for repository commits ({limit.commits} per "
                f"{limit.window_s:g} s). You can retry this action in {seconds} seconds.",
                headers={
                    "Retry-After": str(seconds),
                    "RateLimit": f'"commits";r=0;t={seconds}',
                    "RateLimit-Policy": f'"fixed window";"commits";q={limit.commits};w={limit.window_s:g}',
                },
            )
        snapshot = dict(repo.commits[repo.branches[branch]])
        title = ""
        for line in body.splitlines():
            item = json.loads(line)
            key, value = item["key"], item["value"]
            if key == "header":
                title = value.get("summary", "")
            if key == "header" and value.get("parentCommit") not in (None, repo.branches[branch]):
                raise HubError(412, "A commit has happened since: parentCommit is not the branch head")
            elif key == "file":
                snapshot[value["path"]] = base64.b64decode(value["content"])
            elif key == "deletedFile":
                snapshot.pop(value["path"], None)
            elif key == "deletedFolder":
                prefix = value["path"].rstrip("/") + "/"
                snapshot = {p: d for p, d in snapshot.items() if not p.startswith(prefix)}
            elif key != "header":
                raise HubError(400, f"this test Hub only takes regular files, not {key}")
        oid = self.state.commit(repo_id, branch, snapshot, title)
        return (
            200,
            {"commitUrl": f"{self.server.url}/{repo_id}/commit/{oid}", "commitOid": oid, "pullRequestUrl": None},
            {},
        )

    def _info(self, repo_id: str, repo: Repo, revision: str, blobs: bool):
        oid = self._oid(repo, revision)
        files = repo.commits[oid]
        siblings = [{"rfilename": p, **(self._sibling(repo, oid, p) if blobs else {})} for p in sorted(files)]
        return (
            200,
            {
                "id": repo_id,
                "modelId": repo_id,
                "sha": oid,
                "siblings": siblings,
                "private": repo.private,
                "lastModified": "2026-01-01T00:00:00.000Z",
                "tags": [],
                "downloads": 0,
                "likes": 0,
            },
            {},
        )

    @staticmethod
    def _sibling(repo: Repo, oid: str, path: str) -> dict:
        meta = repo.describe(oid, path)
        return {"size": meta["size"], "blobId": meta["oid"], **({"lfs": meta["lfs"]} if meta["lfs"] else {})}

    @staticmethod
    def _entry(repo: Repo, oid: str, path: str) -> dict:
        """One file as the tree and paths-info list it (the lfs pointer's sha256 is its `oid` there)."""
        meta = repo.describe(oid, path)
        pointer = meta["lfs"]
        lfs = pointer and {"oid": pointer["sha256"], "size": pointer["size"], "pointerSize": pointer["pointerSize"]}
        return {"type": "file", "path": path, "size": meta["size"], "oid": meta["oid"], **({"lfs": lfs} if lfs else {})}

    def _paths_info(self, repo_id, repo, revision, query, body):
        """POST .../paths-info/<rev> (HfApi.get_paths_info): the named files and folders, those that exist."""
        oid = self._oid(repo, revision)
        files = repo.commits[oid]
        fields = parse_qs(body.decode()) if body and not body.lstrip().startswith(b"{") else {}
        paths = fields.get("paths") or (json.loads(body).get("paths", []) if body else [])
        found = []
        for path in paths:
            path = path.strip("/")
            if path in files:
                found.append(self._entry(repo, oid, path))
            elif any(p.startswith(path + "/") for p in files):
                found.append({"type": "directory", "path": path, "oid": "0" * 40, "size": 0})
        return 200, found, {}

    def _tree(self, repo_id, repo, rest, query, body):
        revision, _, folder = rest.partition("/")
        oid = self._oid(repo, revision)
        files = repo.commits[oid]
        prefix = folder.strip("/") + "/" if folder.strip("/") else ""
        recursive = query.get("recursive", ["false"])[0].lower() == "true"
        entries, folders = [], set()
        for path in sorted(p for p in files if p.startswith(prefix)):
            parts = path[len(prefix) :].split("/")
            for depth in range(1, len(parts)):  # every folder on the way, once
                folders.add(prefix + "/".join(parts[:depth]))
            if recursive or len(parts) == 1:
                entries.append(self._entry(repo, oid, path))
        if prefix and not folders and not entries:
            raise HubError(404, f"{folder} does not exist", "EntryNotFound")
        shown = sorted(f for f in folders if recursive or "/" not in f[len(prefix) :])
        return 200, [{"type": "directory", "path": f, "oid": "0" * 40, "size": 0} for f in shown] + entries, {}

    def _resolve(self, repo_id: str, revision: str, path: str):
        oid = self._oid(self._repo(repo_id), revision)
        files = self.state.files(repo_id, oid)
        if path not in files:
            raise HubError(404, f"Entry {path} not found", "EntryNotFound", commit=oid)
        meta = self.state.repos[repo_id].describe(oid, path)
        data, headers = files[path], {"X-Repo-Commit": oid, "ETag": f'"{meta["oid"]}"'}
        if meta["lfs"]:  # an LFS file: the Hub names it by the pointer's sha256 and size
            headers.update({"X-Linked-Etag": f'"{meta["lfs"]["sha256"]}"', "X-Linked-Size": str(meta["lfs"]["size"])})
        first = re.match(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if first:  # a resumed download
            start = int(first.group(1))
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
            return 206, data[start:], headers
        return 200, data, headers


class HubServer:
    """Start/stop/restart a Hub on one port; `state` survives restarts."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.state = HubState()
        self.host, self.port = host, port
        self.httpd: Optional[ThreadingHTTPServer] = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> "HubServer":
        httpd = ThreadingHTTPServer((self.host, self.port), Handler)
        httpd.daemon_threads = True
        httpd.state, httpd.url = self.state, None
        self.port = httpd.server_address[1]
        httpd.url = self.url
        httpd.connections = set()
        original = httpd.process_request

        def track(request, client_address):  # so that stop() can cut keep-alive connections too
            httpd.connections.add(request)
            original(request, client_address)

        httpd.process_request = track
        threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.httpd = httpd
        return self

    def stop(self) -> None:
        """The Hub goes away: the listener closes and every open connection is cut."""
        if self.httpd is None:
            return
        self.httpd.shutdown()
        self.httpd.server_close()
        for conn in list(self.httpd.connections):
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.httpd = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def env(self, token: Optional[str] = None) -> Dict[str, str]:
        """Environment for a client process: this endpoint, online, caches of its own."""
        env = {
            "HF_ENDPOINT": self.url,
            "HF_HUB_OFFLINE": "0",
            "TRANSFORMERS_OFFLINE": "0",
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        }
        if token:
            env["HF_TOKEN"] = token
        return env

    def count(self, method: str, pattern: str, status=200) -> int:
        return sum(1 for _, m, p, s in self.state.requests if m == method and re.search(pattern, p) and s == status)


@pytest.fixture
def hub_server():
    server = HubServer().start()
    yield server
    server.stop()
