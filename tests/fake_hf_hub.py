"""A local stand-in for the Hugging Face Hub's download endpoints, serving a directory of real files as
one repository at one commit (no network in tests; the weights benchmark's "plain download" too).

What huggingface_hub's snapshot_download asks (huggingface_hub 0.36 _snapshot_download.py, file_download.py):
  GET  /api/models/{repo}/revision/{rev}      -> {"id", "sha", "siblings": [{"rfilename"}]}
  HEAD /{repo}/resolve/{rev}/{path}           -> X-Repo-Commit, ETag, Content-Length
  GET  /{repo}/resolve/{rev}/{path}           -> the bytes
A gated repository answers 401 unless `Authorization: Bearer <token>` is sent. Every request is recorded
(method, path, whether it carried the token), never the token itself.
"""

from __future__ import annotations

import hashlib
import json
import threading
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


@dataclass
class FakeHub:
    root: Path  # the repository's files
    repo_id: str
    commit: str
    token: str | None = None  # set: the repository is gated
    requests: list[tuple[str, str, bool]] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        assert isinstance(host, str)  # AF_INET
        return f"http://{host}:{port}"

    def files(self) -> list[str]:
        return sorted(p.relative_to(self.root).as_posix() for p in self.root.rglob("*") if p.is_file())

    def start(self) -> FakeHub:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # quiet
                pass

            def _authorized(self) -> bool:
                sent = self.headers.get("Authorization", "")
                hub.requests.append((self.command, self.path, bool(sent)))
                return hub.token is None or sent == f"Bearer {hub.token}"

            def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _file(self) -> Path | None:
                path = urllib.parse.urlparse(self.path).path
                prefix = f"/{hub.repo_id}/resolve/"
                if not path.startswith(prefix):
                    return None
                rev, _, rel = urllib.parse.unquote(path[len(prefix) :]).partition("/")
                if rev not in (hub.commit, "main"):
                    return None
                target = (hub.root / rel).resolve()
                return target if target.is_file() and hub.root.resolve() in target.parents else None

            def do_HEAD(self) -> None:
                self._serve(head=True)

            def do_GET(self) -> None:
                self._serve(head=False)

            def _serve(self, head: bool) -> None:
                if not self._authorized():
                    self._send(
                        401, b'{"error":"gated"}', {"X-Error-Code": "GatedRepo", "Content-Type": "application/json"}
                    )
                    return
                path = urllib.parse.urlparse(self.path).path
                api = f"/api/models/{hub.repo_id}/revision/"
                if path.startswith(api):
                    body = json.dumps(
                        {"id": hub.repo_id, "sha": hub.commit, "siblings": [{"rfilename": f} for f in hub.files()]}
                    ).encode()
                    self._send(200, body, {"Content-Type": "application/json"})
                    return
                target = self._file()
                if target is None:
                    self._send(404, b'{"error":"not found"}', {"X-Error-Code": "EntryNotFound"})
                    return
                data = target.read_bytes()
                headers = {
                    "X-Repo-Commit": hub.commit,
                    "ETag": f'"{hashlib.sha256(data).hexdigest()}"',
                    "Content-Type": "application/octet-stream",
                }
                self.send_response(200)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if not head:
                    self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


def write_safetensors(path: Path, tensors: dict[str, bytes]) -> None:
    """A real safetensors file (8-byte little-endian header length, JSON header, data) of uint8 tensors."""
    header, offset = {}, 0
    for name, data in tensors.items():
        header[name] = {"dtype": "U8", "shape": [len(data)], "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        f.write(len(text).to_bytes(8, "little"))
        f.write(text)
        for data in tensors.values():
            f.write(data)


def make_snapshot(root: Path, shard_bytes: int = 1 << 20, shards: int = 2, seed: int = 0) -> list[str]:
    """A small Hugging Face checkpoint of real files: config, tokenizer, generation config, safetensors
    shards with their index, plus what the mirror leaves out (a model card, a .bin duplicate, original/)."""
    import random

    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_text(json.dumps({"model_type": "llama", "architectures": ["LlamaForCausalLM"]}))
    (root / "generation_config.json").write_text(json.dumps({"max_new_tokens": 16}))
    (root / "tokenizer.json").write_text(json.dumps({"version": "1.0", "model": {"type": "BPE", "vocab": {"a": 0}}}))
    (root / "tokenizer_config.json").write_text(json.dumps({"chat_template": "{{ messages }}"}))
    weight_map = {}
    for i in range(shards):
        name = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        chunks = [rng.randbytes(min(16 << 20, shard_bytes - at)) for at in range(0, shard_bytes, 16 << 20)]
        write_safetensors(root / name, {f"layers.{i}.weight": b"".join(chunks)})
        weight_map[f"layers.{i}.weight"] = name
    (root / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    (root / "README.md").write_text("# a model card: no runtime reads it, never mirrored\n")
    (root / "pytorch_model.bin").write_bytes(b"duplicate weights, never mirrored")
    (root / "original").mkdir(exist_ok=True)
    (root / "original" / "consolidated.00.pth").write_bytes(b"meta's own checkpoint, never mirrored")
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
