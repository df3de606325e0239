"""`gateway` and the secret `apiKeys`: how the endpoint is exposed, TLS, API keys."""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from components.config.addresses import internet_problem
from components.config.base import (
    ConfigModel,
    cidr,
)
from components.config.network import NetworkConfig

ACM_ARN = r"^arn:aws[a-z-]*:acm:(?P<region>[a-z]{2}(-gov)?-[a-z]+-[0-9]):[0-9]{12}:certificate/[-0-9a-f]+$"
# The NLB's TLS listeners keep idle connections for 350 s and that cannot be changed
# (Elastic Load Balancing, Network Load Balancers, "Update the TCP idle timeout":
# "The connection idle timeout for TLS listeners is 350 seconds and can't be modified").
NLB_TLS_IDLE_TIMEOUT_SECONDS = 350
NLB_TCP_IDLE_TIMEOUT_MAX_SECONDS = 6000  # tcp.idle_timeout.seconds: 60-6000
IDLE_TIMEOUT_MARGIN_SECONDS = 10  # NGINX times out (and answers 504) before the NLB drops the flow


class GatewayTlsConfig(ConfigModel):
    """TLS on the endpoint, terminated at the NLB with an ACM certificate."""

    certificate_arn: str | None = Field(
        None, description="ACM certificate ARN (same region) for the NLB's TLS listener; or set domain + hostedZoneId"
    )
    domain: str | None = Field(
        None,
        pattern=r"^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$",
        description="DNS name of the endpoint, e.g. llm.example.com; with hostedZoneId and no certificateArn "
        "the program creates and DNS-validates the certificate",
    )
    hosted_zone_id: str | None = Field(
        None,
        pattern=r"^Z[A-Z0-9]{4,32}$",
        description="Route 53 hosted zone of domain: certificate validation records and the alias record",
    )
    ssl_policy: str = Field(
        "ELBSecurityPolicy-TLS13-1-2-2021-06",
        pattern=r"^ELBSecurityPolicy-[-A-Za-z0-9]+$",
        description="NLB TLS security policy (TLS 1.3/1.2)",
    )
    plaintext_inside_vpc: bool = Field(
        False,
        description="Opt out of TLS (HTTP/h2c on 8000/8001); only allowed for an internal gateway. Without "
        "certificateArn or domain the program serves TLS with a certificate from its own CA (privateDomain)",
    )
    private_domain: str | None = Field(
        None,
        pattern=r"^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$",
        description="Without certificateArn or domain: the endpoint's name, a Route 53 private hosted zone in the "
        "VPC pointing at the NLB, with a certificate from a CA the program generates (stack output "
        "caCertificate). Default llm.<name>.internal",
    )
    certificate_validity_days: int = Field(
        365,
        ge=60,
        le=3650,
        description="Validity of the generated server certificate (privateDomain); `pulumi up` replaces it in "
        "its last 30 days (the CA is valid 10 years)",
    )

    @property
    def enabled(self) -> bool:
        return not self.plaintext_inside_vpc

    @property
    def generated(self) -> bool:
        """TLS with the program's own CA: no certificate or domain of the user's, and no opt-out."""
        return self.enabled and not self.certificate_arn and not self.domain

    def endpoint_domain(self, stack_name: str) -> str | None:
        """The name clients use: domain, or for a generated certificate privateDomain (default llm.<name>.internal)."""
        if self.domain:
            return self.domain
        if self.generated:
            return self.private_domain or f"llm.{stack_name}.internal"
        return None

    @model_validator(mode="after")
    def _choice(self) -> GatewayTlsConfig:
        if self.plaintext_inside_vpc and (self.certificate_arn or self.domain or self.private_domain):
            raise ValueError(
                "@plaintextInsideVpc: true while a certificate or domain is set; drop plaintextInsideVpc to serve TLS"
            )
        if self.hosted_zone_id and not self.domain:
            raise ValueError("@domain: hostedZoneId is set without domain; set domain (e.g. llm.example.com)")
        if self.private_domain and (self.certificate_arn or self.domain):
            raise ValueError(
                "@privateDomain: set together with certificateArn or domain; privateDomain names the endpoint only "
                "when the program generates the certificate: drop privateDomain (or certificateArn/domain)"
            )
        if "certificate_validity_days" in self.model_fields_set and not self.generated:
            raise ValueError(
                "@certificateValidityDays: only applies to the certificate the program generates; drop it "
                "(your certificateArn or domain's ACM certificate has its own validity)"
            )
        return self


class GatewayAuthConfig(ConfigModel):
    """API keys checked at the gateway (HTTP Basic authentication, NGINX Gateway Fabric AuthenticationFilter)."""

    enabled: bool = Field(
        True, description="Require an API key (secret apiKeys) on every inference route; 401 without one"
    )
    realm: str = Field("tritonllm", pattern=r"^[A-Za-z0-9 ._-]{1,64}$", description="Basic auth realm")


class GatewayConfig(ConfigModel):
    """The NLB + NGINX Gateway Fabric entry point."""

    scheme: Literal["internal", "internet-facing"] = Field("internal", description="NLB scheme")
    allowed_cidrs: list[str] = Field(
        [],
        description="Client CIDRs allowed through the NLB; required when internet-facing; "
        "internal default: the VPC's CIDRs (network.vpcCidr, network.podCidr)",
    )
    dangerously_allow_any_source: bool = Field(
        False,
        description="Accept allowedCidrs that admit the internet (0.0.0.0/0, ::/0, or ranges that together cover "
        "more public addresses than one /8): anyone who reaches the NLB may connect",
    )
    tls: GatewayTlsConfig = Field(default_factory=GatewayTlsConfig, description="See gateway.tls.*")
    auth: GatewayAuthConfig = Field(default_factory=GatewayAuthConfig, description="See gateway.auth.*")
    request_timeout_seconds: int = Field(
        300,
        ge=10,
        le=NLB_TCP_IDLE_TIMEOUT_MAX_SECONDS - IDLE_TIMEOUT_MARGIN_SECONDS,
        description="Longest silence NGINX waits for Triton (HTTP and gRPC read/send timeouts); the NLB's idle "
        "timeout follows it. At most 340 with TLS (the NLB's TLS idle timeout is fixed at 350 s)",
    )

    @field_validator("allowed_cidrs")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        return [cidr(v) for v in value]

    @model_validator(mode="after")
    def _exposure(self) -> GatewayConfig:
        problems = []
        if self.scheme == "internet-facing" and not self.allowed_cidrs:
            problems.append(
                "@allowedCidrs: empty while scheme is internet-facing; list the client CIDRs "
                "(e.g. [203.0.113.0/24]) or use scheme internal"
            )
        too_wide = internet_problem(self.allowed_cidrs)
        if too_wide and not self.dangerously_allow_any_source:
            problems.append(
                f"@allowedCidrs: {too_wide}; list the client CIDRs instead "
                "(or set gateway.dangerouslyAllowAnySource: true if the endpoint really is for anyone)"
            )
        if self.scheme == "internet-facing" and not self.tls.enabled:
            problems.append(
                "@tls.plaintextInsideVpc: an internet-facing gateway must serve TLS; set gateway.tls.certificateArn "
                "or gateway.tls.domain + gateway.tls.hostedZoneId, and drop plaintextInsideVpc"
            )
        elif self.scheme == "internet-facing" and self.tls.generated:
            problems.append(
                "@tls.certificateArn: an internet-facing gateway needs a certificate of your own domain: the "
                "generated CA's name (gateway.tls.privateDomain) resolves only inside the VPC and no client trusts "
                "the CA by default; set gateway.tls.certificateArn or gateway.tls.domain + gateway.tls.hostedZoneId"
            )
        limit = NLB_TLS_IDLE_TIMEOUT_SECONDS - IDLE_TIMEOUT_MARGIN_SECONDS
        if self.tls.enabled and self.request_timeout_seconds > limit:
            problems.append(
                f"@requestTimeoutSeconds: {self.request_timeout_seconds} exceeds {limit}: the NLB closes TLS "
                f"connections idle for {NLB_TLS_IDLE_TIMEOUT_SECONDS} s (fixed by AWS); lower it to {limit} or "
                "less and stream long generations (streamed tokens keep the connection busy)"
            )
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def source_cidrs(self, network: NetworkConfig) -> list[str]:
        """What the NLB admits: allowedCidrs, or for an internal gateway the VPC's CIDRs."""
        if self.allowed_cidrs:
            return list(self.allowed_cidrs)
        if self.scheme == "internal":
            return [network.vpc_cidr, network.pod_cidr]
        raise ValueError("an internet-facing gateway needs gateway.allowedCidrs")

    @property
    def nlb_idle_timeout_seconds(self) -> int:
        """The NLB's idle timeout: above NGINX's, so NGINX answers first (TLS listeners: fixed by AWS)."""
        if self.tls.enabled:
            return NLB_TLS_IDLE_TIMEOUT_SECONDS
        return max(
            60, min(NLB_TCP_IDLE_TIMEOUT_MAX_SECONDS, self.request_timeout_seconds + IDLE_TIMEOUT_MARGIN_SECONDS)
        )


API_KEY_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
API_KEY_MIN_SECRET = 20


def parse_api_keys(value: Any) -> list[tuple[str, str]]:
    """The secret `apiKeys` as (name, secret) pairs; ValueError messages never contain a secret.

    Each entry is `name:secret`, exactly what a client sends as HTTP Basic credentials
    (`curl -u "$TRITONLLM_API_KEY"`). Names tell keys apart for rotation: add a new key,
    move clients over, remove the old one.
    """
    if value in (None, ""):
        return []
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise ValueError('is not a JSON list of "name:secret" strings') from None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError('must be a JSON list of "name:secret" strings')
    pairs, names = [], set()
    for i, entry in enumerate(value):
        name, sep, secret = entry.partition(":")
        if not sep or not re.match(API_KEY_NAME, name):
            raise ValueError(
                f"entry {i} must look like name:secret with a name of letters, digits, '.', '_' or '-' "
                "(e.g. ci:<48 random hex characters>)"
            )
        if len(secret) < API_KEY_MIN_SECRET or any(c.isspace() for c in secret):
            raise ValueError(
                f"entry {i} ({name}): the secret part needs at least {API_KEY_MIN_SECRET} characters and no "
                "spaces; generate one with `openssl rand -hex 24`"
            )
        if name in names:
            raise ValueError(f"entry {i}: the name {name!r} is used twice; give every key its own name")
        names.add(name)
        pairs.append((name, secret))
    return pairs


def check_api_keys(value: Any) -> tuple[int, list[tuple[str, str]]]:
    try:
        return len(parse_api_keys(value)), []
    except ValueError as exc:
        return 0, [("apiKeys", str(exc))]
