"""What every config section shares: the error type, the model base, name patterns."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

NAMESPACE = "tritonllm"
SECRET_KEYS = ("hfToken", "ngcApiKey", "apiKeys", "alertWebhookUrl")

# Organisations whose Hugging Face repositories are gated (a license must be
# accepted and a token sent); `gated` on a model overrides this guess.
GATED_ORGS = ("meta-llama", "mistralai", "google")

CPU_NODE_POOL_NAME = "cpu"  # the CPU NodePool and its EC2NodeClass
DNS_LABEL = r"^[a-z]([-a-z0-9]{0,38}[a-z0-9])?$"
DURATION = r"^([0-9]+(s|m|h))+$"
QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|Ki|Mi|Gi|Ti)?$"


class ConfigError(ValueError):
    """Stack config is invalid; `problems` holds one (key, message) pair per error."""

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        lines = [f"  {NAMESPACE}:{key}: {message}" for key, message in problems]
        super().__init__("invalid stack config:\n" + "\n".join(lines))


class ConfigModel(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True, strict=False
    )


def cidr(value: str) -> str:
    try:
        return str(ipaddress.ip_network(value, strict=True))
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a valid CIDR block ({exc}); write it like 10.0.0.0/16") from exc


@dataclass(frozen=True)
class StackIdentity:
    """What names, places and tags a component's resources: the stack's `name`, `region` and `tags`."""

    name: str
    region: str
    tags: Mapping[str, str] = field(default_factory=dict)
