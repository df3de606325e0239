"""`servingImage`: the serving images the program builds in AWS CodeBuild (components/serving/builders/serving_image.py).

Multi-node models always run a built image (the Triton image plus the EFA stack, OpenSSH and nccl-tests);
`extraAptPackages` adds Ubuntu packages to it and, for single-node models, builds their runtime's Triton
image plus those packages. Each image is tagged by the content key of its inputs and built once.
"""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from components.config.base import ConfigModel

# A Debian package name (Debian Policy 5.6.1: lowercase letters, digits, + - .; at least two characters,
# starting alphanumeric), optionally pinned as `name=version`.
APT_PACKAGE = r"^[a-z0-9][a-z0-9+.-]+(=[A-Za-z0-9.+~:-]+)?$"


class ServingImageConfig(ConfigModel):
    """Serving images built by the program (AWS CodeBuild, pushed to the stack's ECR repository)."""

    extra_apt_packages: list[str] = Field(
        [],
        max_length=50,
        description="Ubuntu packages added to the serving image (`name` or `name=version`); non-empty: "
        "single-node models run their runtime's Triton image plus these, built once per content key",
    )
    build_timeout_minutes: int = Field(
        120,
        ge=20,
        le=480,
        description="CodeBuild timeout of one image build (the multi-node image: an estimated 25-45 minutes)",
    )

    @field_validator("extra_apt_packages")
    @classmethod
    def _package_names(cls, value: list[str]) -> list[str]:
        bad = [p for p in value if not re.match(APT_PACKAGE, p)]
        if bad:
            raise ValueError(
                f"{bad} are not Debian package names; write each as `name` or `name=version` "
                "(lowercase letters, digits, + - .), one package per entry"
            )
        names = [p.split("=", 1)[0] for p in value]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"{duplicates} are listed more than once; keep one entry per package")
        return value
