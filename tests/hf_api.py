"""A stand-in for the Hugging Face revision API (no network in tests).

components.providers.engine_build.resolve_hf_revision asks GET /api/models/{id}/revision/{rev} for the commit
a branch names. Tests install FakeHfApi as engine_build.http_get_json: it answers like the API
(`{"id": ..., "sha": <40 hex>}`), with a sha derived from the model id, the revision and `moves`
(bump it to simulate a branch that moved), and records every request (URL and headers).
"""

from __future__ import annotations

import email.message
import hashlib
import io
import urllib.error
import urllib.parse
from typing import Any


class FakeHfApi:
    def __init__(self, gated: set[str] | None = None, token: str | None = None):
        self.calls: list[tuple[str, dict[str, str]]] = []
        self.moves = 0
        self.gated = gated or set()
        self.token = token
        self.fail_with: Exception | None = None

    def sha_for(self, model_id: str, revision: str) -> str:
        return hashlib.sha1(f"{model_id}@{revision}#{self.moves}".encode()).hexdigest()

    def __call__(self, url: str, headers: dict[str, str]) -> dict[str, Any]:
        self.calls.append((url, dict(headers)))
        if self.fail_with is not None:
            raise self.fail_with
        prefix = "https://huggingface.co/api/models/"
        assert url.startswith(prefix), url
        model_id, revision = url[len(prefix) :].split("/revision/")
        revision = urllib.parse.unquote(revision)
        if model_id in self.gated and headers.get("Authorization") != f"Bearer {self.token}":
            raise urllib.error.HTTPError(url, 401, "Unauthorized", email.message.Message(), io.BytesIO(b""))
        if model_id.startswith("missing/"):  # a model id Hugging Face does not know
            raise urllib.error.HTTPError(url, 404, "Not Found", email.message.Message(), io.BytesIO(b""))
        return {"id": model_id, "sha": self.sha_for(model_id, revision)}


def install(module: Any) -> FakeHfApi:
    """Make `module.http_get_json` (components.providers.engine_build) a FakeHfApi and clear its cache."""
    fake = FakeHfApi()
    module.http_get_json = fake
    module._resolve.cache_clear()
    return fake
