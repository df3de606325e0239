"""The endpoint's own CA and server certificate, when the user brings no domain (pure).

One plan, two makers: the Gateway component turns it into pulumi_tls resources (PrivateKey,
SelfSignedCert for the CA, CertRequest + LocallySignedCert for the server, keys as Pulumi
secrets) imported into ACM for the NLB; `tritonllm serve --tls` turns the same plan into files
with the `cryptography` package (tritonllm/tls_certs.py), because pulumi_tls only runs inside
Pulumi. Both follow `CertificatePlan` field by field, so what the tests check locally is the
certificate shape the cluster gets.

The name: a Route 53 private hosted zone the program creates in the stack's VPC, holding an
alias record `<privateDomain>` -> the NLB (default llm.<name>.internal; `.internal` is reserved
for private use by ICANN, 2024). The certificate covers exactly that name. Rejected: the NLB's
own DNS name. It is `<name>-<random>.elb.<region>.amazonaws.com`, known only after the NLB
exists, i.e. after the listener that needs the certificate; a certificate for it would have to
be the wildcard `*.elb.<region>.amazonaws.com`, which a client trusting our CA would then
accept for every NLB in the region, and which changes meaning when the NLB is replaced.

Key types: the server key is RSA 2048, the type every NLB TLS listener and ACM import take; the
CA key ECDSA P-256. Validity: CA 10 years; server `gateway.tls.certificateValidityDays`
(default 365), renewed by `pulumi up` in its last 30 days (LocallySignedCert early_renewal_hours;
ACM re-imports under the same ARN, so the NLB listener keeps its certificate reference).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field

CA_VALIDITY_HOURS = 10 * 365 * 24
EARLY_RENEWAL_HOURS = 30 * 24
ORGANIZATION = "tritonllm"

# pulumi_tls allowed_uses names (terraform-provider-tls); tritonllm/tls_certs.py maps them to X.509.
CA_USES = ("cert_signing", "crl_signing", "digital_signature")
SERVER_USES = ("digital_signature", "key_encipherment", "server_auth")


@dataclass(frozen=True)
class KeySpec:
    algorithm: str  # "RSA" or "ECDSA" (pulumi_tls PrivateKey.algorithm)
    rsa_bits: int | None = None
    ecdsa_curve: str | None = None  # "P256", "P384"


CA_KEY = KeySpec("ECDSA", ecdsa_curve="P256")
SERVER_KEY = KeySpec("RSA", rsa_bits=2048)


@dataclass(frozen=True)
class CertificatePlan:
    ca_common_name: str
    server_common_name: str
    dns_names: tuple[str, ...]
    ip_addresses: tuple[str, ...] = ()
    organization: str = ORGANIZATION
    ca_validity_hours: int = CA_VALIDITY_HOURS
    server_validity_hours: int = 365 * 24
    early_renewal_hours: int = EARLY_RENEWAL_HOURS
    ca_key: KeySpec = CA_KEY
    server_key: KeySpec = SERVER_KEY
    ca_uses: tuple[str, ...] = field(default=CA_USES)
    server_uses: tuple[str, ...] = field(default=SERVER_USES)

    def __post_init__(self) -> None:
        if not self.dns_names and not self.ip_addresses:
            raise ValueError("a server certificate needs at least one DNS name or IP address")
        if self.server_validity_hours <= self.early_renewal_hours:
            raise ValueError("the server certificate must be valid longer than its renewal window")
        for ip in self.ip_addresses:
            ipaddress.ip_address(ip)

    def ca_subject(self) -> dict[str, str]:
        """pulumi_tls `subject` (snake_case keys as the Python SDK takes them)."""
        return {"common_name": self.ca_common_name, "organization": self.organization}

    def server_subject(self) -> dict[str, str]:
        return {"common_name": self.server_common_name, "organization": self.organization}


def default_private_domain(stack_name: str) -> str:
    return f"llm.{stack_name}.internal"


def gateway_plan(domain: str, *, stack_name: str, validity_days: int = 365) -> CertificatePlan:
    """The EKS endpoint's: one DNS name (the private hosted zone record)."""
    return CertificatePlan(
        ca_common_name=f"tritonllm {stack_name} endpoint CA",
        server_common_name=domain,
        dns_names=(domain,),
        server_validity_hours=validity_days * 24,
    )


def local_plan(hosts: Sequence[str] = ("localhost", "127.0.0.1")) -> CertificatePlan:
    """`tritonllm serve --tls`: the names and addresses a local client dials."""
    names, ips = [], []
    for host in hosts:
        try:
            ips.append(str(ipaddress.ip_address(host)))
        except ValueError:
            names.append(host)
    return CertificatePlan(
        ca_common_name="tritonllm serve local CA",
        server_common_name=(names or ips)[0],
        dns_names=tuple(dict.fromkeys(names)),
        ip_addresses=tuple(dict.fromkeys(ips)),
        server_validity_hours=30 * 24,
        early_renewal_hours=24,
    )


CA_OUTPUT = "caCertificate"
CA_FILE = "tritonllm-ca.pem"  # where the printed commands expect the CA certificate


def ca_file_command(path: str = CA_FILE) -> str:
    """How a user gets the CA certificate the clients verify against."""
    return f"pulumi stack output {CA_OUTPUT} > {path}"
