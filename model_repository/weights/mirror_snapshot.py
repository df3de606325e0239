"""Download one Hugging Face snapshot at a commit into a directory (the weights mirror Job's first step).

Runs in the serving image (which carries huggingface_hub) as the init container of the HfSnapshotMirror
Job (components/serving/builders/weights_mirror.py); the Job's second container uploads the directory
to S3. The token, for gated models, is a file: huggingface_hub reads $HF_TOKEN_PATH when HF_TOKEN is
unset (huggingface_hub constants.py). This script never prints it, nor any header or URL with it.
$HF_ENDPOINT (huggingface_hub's own setting) points the download at another hub, e.g. a local one in tests.

    python3 mirror_snapshot.py --repo-id ORG/NAME --revision <40-hex commit> --local-dir DIR \
        --allow '*.json' --allow '*.safetensors' ... --ignore 'original/*' ...
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

COMMIT_SHA = re.compile(r"^[0-9a-f]{40}$")
HINTS = {
    401: "the model is gated or private: set the hfToken secret with a token that accepted the model's license",
    403: "the hfToken has no access to this model: accept its license on huggingface.co",
    404: "no such model or commit",
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repo-id", required=True)
    p.add_argument("--revision", required=True, help="a 40-character commit sha (the program resolved it)")
    p.add_argument("--local-dir", required=True, type=Path)
    p.add_argument("--allow", action="append", default=[], help="allow pattern (repeatable)")
    p.add_argument("--ignore", action="append", default=[], help="ignore pattern (repeatable)")
    p.add_argument("--max-workers", type=int, default=16, help="parallel file downloads")
    args = p.parse_args(argv)
    if not COMMIT_SHA.match(args.revision):
        p.error(f"--revision {args.revision!r} is not a commit sha: the mirror is addressed by commit")
    return args


def log(message: str) -> None:
    print(f"[mirror_snapshot {time.strftime('%H:%M:%S')}] {message}", flush=True)


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and ".cache" not in p.relative_to(root).parts)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from huggingface_hub import snapshot_download
    from huggingface_hub.utils import HfHubHTTPError  # exported there from 0.2x to 1.x

    started = time.monotonic()
    log(f"downloading {args.repo_id}@{args.revision} to {args.local_dir}")
    try:
        snapshot_download(
            repo_id=args.repo_id,
            revision=args.revision,
            local_dir=str(args.local_dir),
            allow_patterns=args.allow or None,
            ignore_patterns=args.ignore or None,
            max_workers=args.max_workers,
        )
    except HfHubHTTPError as exc:
        status = getattr(exc.response, "status_code", None)
        # The status and our hint only: the exception's text may quote request headers.
        print(
            f"{args.repo_id}@{args.revision}: Hugging Face answered HTTP {status}; {HINTS.get(status, '')}",
            file=sys.stderr,
        )
        return 1
    files = files_under(args.local_dir)
    if not (args.local_dir / "config.json").is_file():
        print(f"{args.repo_id}@{args.revision}: no config.json among {len(files)} files", file=sys.stderr)
        return 1
    if not any(f.suffix == ".safetensors" for f in files):
        print(
            f"{args.repo_id}@{args.revision}: no *.safetensors weights (the mirror serves safetensors only)",
            file=sys.stderr,
        )
        return 1
    size = sum(f.stat().st_size for f in files)
    log(
        json.dumps(
            {
                "repo_id": args.repo_id,
                "commit": args.revision,
                "files": len(files),
                "bytes": size,
                "seconds": round(time.monotonic() - started, 1),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
