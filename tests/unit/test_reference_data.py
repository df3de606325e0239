"""The upstream reference data: reference/manifest.toml pins every file, `make reference` fetches it.

The manifest is checked against the reference folder the tests read (file for file, sha256 for
sha256). The downloader (tools/reference.py, run by `make reference`) is run against a real HTTP
server on loopback that stands in for raw.githubusercontent.com: it serves the reference files
under the manifest URLs' paths (TRITONLLM_REFERENCE_BASE_URL points the downloader at it) and
records every request.
"""

from __future__ import annotations

import hashlib
import http.server
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from components.catalog import versions
from tests import k8s_schema
from tools import reference

REPO = Path(__file__).resolve().parents[2]
ENTRIES = reference.load_manifest()
BY_PATH = {e.path: e for e in ENTRIES}
# Notes an offline copy of the folder keeps beside the data (`make reference` writes the cache's
# own README.md); they are not upstream files.
NOTES = {"README.md", "trtllm-templates/SOURCES.md"}

# The Helm template lines kedacore/charts has around the KEDA CRDs (keda/templates/crds/ at tag
# v2.20.2, http-add-on/templates/crds/ at its 0.15.0 release commit), by line number in the upstream
# file; 0 is after the last line. A reconstruction: put back into the stored, stripped files they
# rebuild the upstream files, and the test checks that against the manifest's upstream_sha256 (the
# sha256 of the real upstream files) before serving them, so the server serves what upstream does.
_KEDA_HELM_LINES = {
    1: b"{{- if .Values.crds.install }}\n",
    7: b"    {{- if (or .Values.crds.additionalAnnotations .Values.additionalAnnotations) }}\n",
    8: b"    {{- toYaml (merge .Values.crds.additionalAnnotations .Values.additionalAnnotations) | nindent 4 }}\n",
    9: b"    {{- end }}\n",
    11: b"    app.kubernetes.io/name: {{ .Values.operator.name }}\n",
    12: b'    {{- include "keda.crd-labels" . | indent 4 }}\n',
    0: b"{{- end -}}\n",
}
_HTTP_ADD_ON_HELM_LINES = {1: b"{{- if .Values.crds.install }}\n", 0: b"{{- end }}\n"}
HELM_LINES = {
    "crds/keda.sh_scaledobjects.yaml": _KEDA_HELM_LINES,
    "crds/keda.sh_triggerauthentications.yaml": _KEDA_HELM_LINES,
    "crds/http.keda.sh_httpscaledobjects.yaml": _HTTP_ADD_ON_HELM_LINES,
    "crds/http.keda.sh_interceptorroutes.yaml": _HTTP_ADD_ON_HELM_LINES,
}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def with_helm_lines(stored: bytes, lines: dict[int, bytes]) -> bytes:
    out: list[bytes] = []
    for line in stored.splitlines(keepends=True):
        while len(out) + 1 in lines:
            out.append(lines[len(out) + 1])
        out.append(line)
    return b"".join(out) + lines.get(0, b"")


def upstream_file(entry: reference.Entry) -> bytes:
    """What upstream serves for `entry`: the stored file, or for a transformed one the rebuilt upstream."""
    stored = (k8s_schema.require_reference_dir() / entry.path).read_bytes()
    if entry.transform is None:
        return stored
    assert entry.transform == "strip-helm-template-lines" and entry.path in HELM_LINES, entry
    rebuilt = with_helm_lines(stored, HELM_LINES[entry.path])
    assert sha256(rebuilt) == entry.upstream_sha256, f"the reconstruction of upstream {entry.path} is not exact"
    return rebuilt


def url_path(entry: reference.Entry) -> str:
    return urlsplit(entry.url).path


class Upstream:
    """A real HTTP server on loopback serving bytes by URL path and recording each GET's path."""

    def __init__(self, files: dict[str, bytes]):
        self.files = files
        self.requests: list[str] = []
        upstream = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                upstream.requests.append(self.path)
                body = upstream.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def upstream():
    k8s_schema.require_reference_dir()
    server = Upstream({url_path(e): upstream_file(e) for e in ENTRIES})
    yield server
    server.close()


def run_downloader(dest: Path, base_url: str, *args: str, make: bool = False) -> subprocess.CompletedProcess:
    # Loopback goes direct; anything else goes to a proxy that refuses at once, so a downloader that
    # ignored the base URL fails here quickly instead of waiting on the internet.
    refuse = "http://127.0.0.1:9"
    env = {
        **os.environ,
        reference.BASE_URL_ENV: base_url,
        "NO_PROXY": "127.0.0.1",
        "no_proxy": "127.0.0.1",
        "HTTPS_PROXY": refuse,
        "https_proxy": refuse,
        "HTTP_PROXY": refuse,
        "http_proxy": refuse,
    }
    if make:
        cmd = ["make", "--no-print-directory", "reference", f"REFERENCE_CACHE={dest}", f"PYTHON={sys.executable}"]
    else:
        cmd = [sys.executable, "-m", "tools.reference", "--dest", str(dest), *args]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


def files_under(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


# --- the manifest -------------------------------------------------------------------------------


def test_manifest_pins_every_file_of_the_reference_folder_by_its_sha256():
    folder = k8s_schema.require_reference_dir()
    on_disk = files_under(folder) - NOTES
    pinned = set(BY_PATH)
    assert not pinned - on_disk, f"in the manifest, not in {folder}: {sorted(pinned - on_disk)}"
    assert not on_disk - pinned, f"in {folder}, not in the manifest: {sorted(on_disk - pinned)}"
    wrong = {e.path: (e.sha256, got) for e in ENTRIES if (got := sha256((folder / e.path).read_bytes())) != e.sha256}
    assert not wrong, f"sha256 (manifest, file) differ: {wrong}"


def test_every_url_is_an_upstream_raw_file_at_a_tag_or_commit():
    for entry in ENTRIES:
        parts = urlsplit(entry.url)
        assert (parts.scheme, parts.netloc) == ("https", "raw.githubusercontent.com"), entry.url
        _, owner, repo, ref, *path = parts.path.split("/")
        assert owner and repo and path, entry.url
        # a branch moves; a tag or a full commit does not
        assert ref not in {"main", "master", "HEAD", "develop"}, entry.url
        assert any(c.isdigit() for c in ref), f"{entry.url}: {ref!r} is neither a version tag nor a commit"
        if entry.transform:
            assert entry.upstream_sha256, f"{entry.path}: the upstream file's own sha256 is known, record it"


def test_every_pinned_chart_has_its_default_values_in_the_manifest():
    missing = [c.name for c in versions.ALL_CHARTS if f"helm-values/{c.reference_values_file}" not in BY_PATH]
    assert not missing, f"charts whose default values reference/manifest.toml does not pin: {missing}"


@pytest.mark.parametrize("path", ["../outside.yaml", "/etc/passwd", "crds/../../outside.yaml", "crds//x.yaml"])
def test_the_manifest_loader_refuses_a_path_outside_the_folder(tmp_path, path):
    manifest = tmp_path / "manifest.toml"
    manifest.write_text(
        f'[[file]]\npath = "{path}"\nurl = "https://raw.githubusercontent.com/o/r/v1/x"\nsha256 = "{"0" * 64}"\n'
    )
    with pytest.raises(reference.ManifestError, match="plain relative path"):
        reference.load_manifest(manifest)


# --- the downloader against a loopback server ---------------------------------------------------


def test_make_reference_downloads_every_file_and_verifies_it(tmp_path, upstream):
    dest = tmp_path / "cache"
    result = run_downloader(dest, upstream.base_url, make=True)
    assert result.returncode == 0, result.stdout + result.stderr
    folder = k8s_schema.require_reference_dir()
    for entry in ENTRIES:
        assert (dest / entry.path).read_bytes() == (folder / entry.path).read_bytes(), entry.path
    assert files_under(dest) == set(BY_PATH) | {"README.md"}  # nothing else, no temporary files
    assert sorted(upstream.requests) == sorted(url_path(e) for e in ENTRIES)  # each file once
    assert f"{len(ENTRIES)} downloaded, 0 refused" in result.stdout
    assert reference.is_complete(dest, ENTRIES)


@pytest.mark.parametrize("path", ["helm-values/karpenter-1.14.1.yaml", "crds/keda.sh_scaledobjects.yaml"])
def test_a_tampered_file_is_refused_by_name_and_not_kept(tmp_path, upstream, path):
    entry = BY_PATH[path]
    body = bytearray(upstream.files[url_path(entry)])
    body[len(body) // 2] ^= 0x01  # one bit of one byte
    upstream.files[url_path(entry)] = bytes(body)
    # what the downloader must say it expected: for a transformed file, the upstream file's sha256
    expected = entry.upstream_sha256 or entry.sha256
    dest = tmp_path / "cache"

    result = run_downloader(dest, upstream.base_url)
    assert result.returncode == 1, result.stdout + result.stderr
    refusals = [line for line in result.stderr.splitlines() if "REFUSED" in line]
    assert len(refusals) == 1, result.stderr
    assert path in refusals[0] and f"expected {expected}" in refusals[0] and f"got {sha256(bytes(body))}" in refusals[0]
    assert not (dest / path).exists()
    assert files_under(dest) == set(BY_PATH) - {path}  # the others arrived; no partial file, no README
    assert not reference.is_complete(dest, ENTRIES)

    # a damaged copy already in the cache is not left in place either
    (dest / path).write_bytes(bytes(body))
    result = run_downloader(dest, upstream.base_url)
    assert result.returncode == 1 and path in result.stderr
    assert not (dest / path).exists()


def test_a_rerun_with_every_file_in_place_makes_no_request(tmp_path, upstream):
    dest = tmp_path / "cache"
    assert run_downloader(dest, upstream.base_url).returncode == 0
    upstream.requests.clear()

    result = run_downloader(dest, upstream.base_url)
    assert result.returncode == 0, result.stderr
    assert upstream.requests == []
    assert f"{len(ENTRIES)} already present, 0 downloaded" in result.stdout

    # a file damaged in the cache is fetched again, and only that one
    damaged = dest / "crds/karpenter.sh_nodepools.yaml"
    good = damaged.read_bytes()
    damaged.write_bytes(good + b"\n")
    result = run_downloader(dest, upstream.base_url)
    assert result.returncode == 0, result.stderr
    assert upstream.requests == [url_path(BY_PATH["crds/karpenter.sh_nodepools.yaml"])]
    assert damaged.read_bytes() == good


def test_the_keda_crds_arrive_with_their_helm_template_lines_stripped(tmp_path, upstream):
    transformed = [e for e in ENTRIES if e.transform]
    assert {e.path for e in transformed} == set(HELM_LINES)
    for entry in transformed:  # the server serves the upstream templates, Helm lines and all
        served = upstream.files[url_path(entry)]
        assert b"{{- if .Values.crds.install }}\n" in served and sha256(served) == entry.upstream_sha256
    dest = tmp_path / "cache"
    result = run_downloader(dest, upstream.base_url)
    assert result.returncode == 0, result.stdout + result.stderr
    folder = k8s_schema.require_reference_dir()
    for entry in transformed:
        stored = (dest / entry.path).read_bytes()
        assert b"{{" not in stored and b"\nkind: CustomResourceDefinition\n" in stored, entry.path
        assert stored == (folder / entry.path).read_bytes(), entry.path


def test_a_missing_file_upstream_is_refused_with_its_url(tmp_path, upstream):
    entry = BY_PATH["crds/leaderworkerset.x-k8s.io_leaderworkersets.yaml"]
    del upstream.files[url_path(entry)]
    result = run_downloader(tmp_path / "cache", upstream.base_url)
    assert result.returncode == 1
    assert f"{upstream.base_url}{url_path(entry)}: HTTP 404" in result.stderr


def test_an_unreachable_server_stops_the_run_at_the_first_file(tmp_path, monkeypatch):
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        base_url = f"http://127.0.0.1:{s.getsockname()[1]}"
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    sleeps: list[float] = []
    monkeypatch.setattr(reference.time, "sleep", sleeps.append)
    refused = reference.download(tmp_path / "cache", ENTRIES, base_url, log=lambda _: None)
    first = ENTRIES[0]
    assert len(refused) == 1 and refused[0].startswith(f"{base_url}{url_path(first)}: ")
    assert refused[0].endswith(f"stopped there, {len(ENTRIES) - 1} more files not tried")
    assert len(sleeps) == reference.ATTEMPTS - 1  # retried, then gave up on the whole run
    assert not (tmp_path / "cache").exists()


# --- where the tests find the data --------------------------------------------------------------


def _layout(tmp_path: Path) -> tuple[Path, Path, Path, list[reference.Entry]]:
    repo, shared = tmp_path / "clone", tmp_path / "shared" / "reference"
    cache = repo / ".cache" / "reference"
    entries = [
        reference.Entry("crds/a.yaml", "https://raw.githubusercontent.com/o/r/v1/a.yaml", "0" * 64),
        reference.Entry("helm-values/b.yaml", "https://raw.githubusercontent.com/o/r/v1/b.yaml", "0" * 64),
    ]
    return repo, cache, shared, entries


def test_reference_dir_is_the_variable_then_a_complete_cache_then_the_offline_copy(tmp_path):
    repo, cache, shared, entries = _layout(tmp_path)
    resolve = k8s_schema.resolve_reference_dir
    repo.mkdir()
    assert resolve({}, repo, entries) == (cache, False)  # nothing anywhere: `make reference` fills the cache
    shared.mkdir(parents=True)
    assert resolve({}, repo, entries) == (shared, True)
    (cache / "crds").mkdir(parents=True)
    (cache / "crds/a.yaml").write_text("a")
    assert resolve({}, repo, entries) == (shared, True)  # an incomplete cache is not used
    (cache / "helm-values").mkdir()
    (cache / "helm-values/b.yaml").write_text("b")
    assert resolve({}, repo, entries) == (cache, True)
    other = tmp_path / "elsewhere"
    assert resolve({"TRITONLLM_REFERENCE_DIR": str(other)}, repo, entries) == (other, False)
    other.mkdir()
    assert resolve({"TRITONLLM_REFERENCE_DIR": str(other)}, repo, entries) == (other, True)


def test_missing_reference_data_skips_or_fails_saying_make_reference(monkeypatch, tmp_path):
    monkeypatch.setattr(k8s_schema, "REFERENCE_DIR", tmp_path / "absent")
    monkeypatch.setattr(k8s_schema, "REFERENCE_FOUND", False)
    monkeypatch.delenv("TRITONLLM_REQUIRE_REFERENCE", raising=False)
    # BaseException: pytest's skip and fail outcomes are not Exceptions; which one it is is the point
    with pytest.raises(BaseException) as outcome:
        k8s_schema.require_reference_dir()
    assert outcome.type is pytest.skip.Exception and "make reference" in str(outcome.value)
    monkeypatch.setenv("TRITONLLM_REQUIRE_REFERENCE", "1")
    with pytest.raises(BaseException) as outcome:
        k8s_schema.require_reference_dir()
    assert outcome.type is pytest.fail.Exception and "make reference" in str(outcome.value)
