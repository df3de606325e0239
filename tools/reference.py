"""Download the upstream reference data that reference/manifest.toml pins (`make reference`).

    python -m tools.reference [--dest DIR] [--manifest FILE] [--base-url URL]

Every manifest entry is fetched from its URL into DEST/<path> (default .cache/reference/), its
transform applied, and its sha256 checked against the manifest. A file whose sha256 differs is
refused: nothing is written for it, the command names it with the expected and the received
sha256, goes on with the others and exits 1. A file already in DEST with the right sha256 is not
fetched again, so a second run makes no request at all.

TRITONLLM_REFERENCE_BASE_URL (or --base-url) replaces `https://raw.githubusercontent.com` at the
start of every URL, for a mirror or a loopback server in tests.

Standard library only: it runs before the virtualenv exists (Python 3.11+ for tomllib).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import sys
import tempfile
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

REPO_ROOT = Path(__file__).resolve().parents[1]
MANIFEST = REPO_ROOT / "reference" / "manifest.toml"
DEFAULT_DEST = REPO_ROOT / ".cache" / "reference"
GITHUB_RAW = "https://raw.githubusercontent.com"
BASE_URL_ENV = "TRITONLLM_REFERENCE_BASE_URL"
ATTEMPTS = 3  # network errors only; a sha256 mismatch is never retried
_SHA256 = re.compile(r"[0-9a-f]{64}")


def strip_helm_template_lines(data: bytes) -> bytes:
    """Drop every line that holds a Helm template action (`{{`): the `{{- if .Values.crds.install }}`
    wrapper, templated labels and annotations around a CRD that a chart ships under templates/."""
    return b"".join(line for line in data.splitlines(keepends=True) if b"{{" not in line)


TRANSFORMS: dict[str, Callable[[bytes], bytes]] = {"strip-helm-template-lines": strip_helm_template_lines}


@dataclass(frozen=True)
class Entry:
    path: str  # relative to the reference folder, POSIX separators
    url: str
    sha256: str  # of the stored file (after the transform)
    transform: str | None = None
    upstream_sha256: str | None = None  # of the downloaded file before the transform, when known


class ManifestError(ValueError):
    pass


def load_manifest(manifest: Path = MANIFEST) -> list[Entry]:
    """The manifest's entries, checked: unique relative paths inside the folder, https URLs,
    lowercase hex sha256, known transforms."""
    data = tomllib.loads(manifest.read_text())
    entries, seen = [], set()
    for i, raw in enumerate(data.get("file", [])):
        where = f"{manifest}: file #{i + 1}"
        unknown = set(raw) - {"path", "url", "sha256", "transform", "upstream_sha256", "note"}
        if unknown:
            raise ManifestError(f"{where}: unknown keys {sorted(unknown)}")
        try:
            entry = Entry(raw["path"], raw["url"], raw["sha256"], raw.get("transform"), raw.get("upstream_sha256"))
        except KeyError as exc:
            raise ManifestError(f"{where}: missing {exc.args[0]!r}") from None
        path = PurePosixPath(entry.path)
        if path.is_absolute() or ".." in path.parts or str(path) != entry.path:
            raise ManifestError(f"{where}: path {entry.path!r} must be a plain relative path")
        if entry.path in seen:
            raise ManifestError(f"{where}: path {entry.path!r} listed twice")
        seen.add(entry.path)
        if not entry.url.startswith("https://"):
            raise ManifestError(f"{where}: url {entry.url!r} is not https")
        for key in ("sha256", "upstream_sha256"):
            value = getattr(entry, key)
            if (value is not None or key == "sha256") and not _SHA256.fullmatch(str(value)):
                raise ManifestError(f"{where}: {key} {value!r} is not a lowercase hex sha256")
        if entry.transform is not None and entry.transform not in TRANSFORMS:
            raise ManifestError(f"{where}: unknown transform {entry.transform!r}; known: {sorted(TRANSFORMS)}")
        if entry.upstream_sha256 is not None and entry.transform is None:
            raise ManifestError(f"{where}: upstream_sha256 without a transform (sha256 is the upstream file's)")
        entries.append(entry)
    if not entries:
        raise ManifestError(f"{manifest}: no [[file]] entries")
    return entries


def missing_files(dest: Path, entries: list[Entry] | None = None) -> list[str]:
    """Manifest paths that are not files in `dest` (presence only, no hashing)."""
    return [e.path for e in (entries if entries is not None else load_manifest()) if not (dest / e.path).is_file()]


def is_complete(dest: Path, entries: list[Entry] | None = None) -> bool:
    return dest.is_dir() and not missing_files(dest, entries)


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def source_url(entry: Entry, base_url: str | None) -> str:
    if base_url and entry.url.startswith(GITHUB_RAW + "/"):
        return base_url.rstrip("/") + entry.url[len(GITHUB_RAW) :]
    return entry.url


class Refused(Exception):
    """A file that could not be fetched or did not verify; nothing was kept for it."""


class Unreachable(Refused):
    """The server could not be reached at all: the other files would fail the same way."""


def _get(url: str) -> bytes:
    for attempt in range(1, ATTEMPTS + 1):
        try:
            with urllib.request.urlopen(url, timeout=60) as response:
                return response.read()
        except urllib.error.HTTPError as exc:
            if exc.code < 500 or attempt == ATTEMPTS:
                raise Refused(f"{url}: HTTP {exc.code} {exc.reason}") from None
        except (urllib.error.URLError, OSError) as exc:
            if attempt == ATTEMPTS:
                raise Unreachable(f"{url}: {getattr(exc, 'reason', exc)}") from None
        time.sleep(2 * attempt)
    raise AssertionError("unreachable")


def fetch(entry: Entry, dest: Path, base_url: str | None = None) -> bool:
    """Make dest/<entry.path> the verified file. False when it was already there (no request)."""
    target = dest / entry.path
    if target.is_file():
        if sha256_of(target.read_bytes()) == entry.sha256:
            return False
        target.unlink()  # stale or damaged: never left in place to be mistaken for the real file
    url = source_url(entry, base_url)
    data = _get(url)
    if entry.upstream_sha256 is not None:
        got = sha256_of(data)
        if got != entry.upstream_sha256:
            raise Refused(
                f"{entry.path}: upstream sha256 mismatch from {url}: expected {entry.upstream_sha256}, "
                f"got {got}; not kept"
            )
    if entry.transform is not None:
        data = TRANSFORMS[entry.transform](data)
    got = sha256_of(data)
    if got != entry.sha256:
        raise Refused(
            f"{entry.path}: sha256 mismatch from {url}"
            f"{f' after {entry.transform}' if entry.transform else ''}: expected {entry.sha256}, "
            f"got {got}; not kept"
        )
    # Written under a temporary name beside the target and renamed: an interrupted run leaves no
    # partial file under the real name.
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return True


def readme_text(entries: list[Entry], manifest: Path) -> str:
    try:
        shown = manifest.resolve().relative_to(REPO_ROOT)
    except ValueError:
        shown = manifest
    rows = "\n".join(f"| {e.path} | {e.url} |{f' {e.transform}' if e.transform else ''} |" for e in entries)
    return (
        f"# Upstream reference data\n\nDownloaded by `make reference` (python -m tools.reference) from the URLs "
        f"pinned in {shown}, each verified against its sha256 there. Do not edit: a file that no longer "
        f"matches is fetched again.\n\n| file | upstream | transform |\n| --- | --- | --- |\n{rows}\n"
    )


def download(
    dest: Path,
    entries: list[Entry],
    base_url: str | None = None,
    manifest: Path = MANIFEST,
    log: Callable[[str], None] = print,
) -> list[str]:
    """Fetch every entry into dest; returns the refusals (empty when everything verified)."""
    refused: list[str] = []
    fetched = present = 0
    for i, entry in enumerate(entries):
        try:
            if fetch(entry, dest, base_url):
                fetched += 1
                log(f"reference: {entry.path} downloaded, sha256 ok")
            else:
                present += 1
        except Unreachable as exc:
            refused.append(f"{exc}; stopped there, {len(entries) - i - 1} more files not tried")
            break
        except Refused as exc:
            refused.append(str(exc))
    if not refused:
        readme = dest / "README.md"
        text = readme_text(entries, manifest)
        if not readme.is_file() or readme.read_text() != text:
            readme.write_text(text)
    log(f"reference: {present} already present, {fetched} downloaded, {len(refused)} refused, in {dest}")
    return refused


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.reference", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dest", type=Path, default=DEFAULT_DEST, help="reference folder (default %(default)s)")
    parser.add_argument("--manifest", type=Path, default=MANIFEST, help="default %(default)s")
    parser.add_argument(
        "--base-url",
        default=os.environ.get(BASE_URL_ENV) or None,
        help=f"replaces {GITHUB_RAW} in every URL (default ${BASE_URL_ENV})",
    )
    args = parser.parse_args(argv)
    try:
        entries = load_manifest(args.manifest)
    except (OSError, tomllib.TOMLDecodeError, ManifestError) as exc:
        print(f"reference: bad manifest: {exc}", file=sys.stderr)
        return 2
    refused = download(args.dest, entries, args.base_url, args.manifest)
    for message in refused:
        print(f"reference: REFUSED {message}", file=sys.stderr)
    return 1 if refused else 0


if __name__ == "__main__":
    sys.exit(main())
