"""`tritonllm serve --tls`: a CA and a server certificate made the way the EKS gateway's are.

The plan (names, key types, validity, key usages) is components/gateway/builders/certificates.py,
the one the Gateway component hands to pulumi_tls; here the `cryptography` package carries it
out, since pulumi_tls runs only inside Pulumi. The CA's key is thrown away once the server
certificate is signed (nothing else will ever be signed with it); clients get the CA
certificate (`ca.pem`) to verify against, as on EKS they get the stack output caCertificate.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from components.gateway.builders.certificates import CertificatePlan, KeySpec, local_plan


@dataclass(frozen=True)
class TlsFiles:
    ca_cert: Path
    server_cert: Path  # leaf, then the CA (the chain nginx sends)
    server_key: Path


def _key(spec: KeySpec):
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    if spec.algorithm == "RSA":
        return rsa.generate_private_key(public_exponent=65537, key_size=spec.rsa_bits or 2048)
    if spec.algorithm == "ECDSA":
        curve = {"P256": ec.SECP256R1(), "P384": ec.SECP384R1()}[spec.ecdsa_curve or "P256"]
        return ec.generate_private_key(curve)
    raise ValueError(f"unknown key algorithm {spec.algorithm!r}")


def _name(common_name: str, organization: str):
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
        ]
    )


def _key_usage(uses: tuple[str, ...]):
    """pulumi_tls allowed_uses -> X.509 KeyUsage (and ExtendedKeyUsage for server_auth)."""
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID

    flags = {
        "digital_signature": "digital_signature",
        "key_encipherment": "key_encipherment",
        "cert_signing": "key_cert_sign",
        "crl_signing": "crl_sign",
    }
    usage = x509.KeyUsage(
        **{
            name: any(flags.get(u) == name for u in uses)
            for name in (
                "digital_signature",
                "content_commitment",
                "key_encipherment",
                "data_encipherment",
                "key_agreement",
                "key_cert_sign",
                "crl_sign",
                "encipher_only",
                "decipher_only",
            )
        }
    )
    extended = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]) if "server_auth" in uses else None
    return usage, extended


def make_certificates(plan: CertificatePlan, directory: Path) -> TlsFiles:
    """Write ca.pem, server.pem (leaf + CA) and server.key (mode 600) for `plan` into `directory`."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization

    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
    ca_key = _key(plan.ca_key)
    ca_name = _name(plan.ca_common_name, plan.organization)
    ca_usage, _ = _key_usage(plan.ca_uses)
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(hours=plan.ca_validity_hours))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(ca_usage, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = _key(plan.server_key)
    usage, extended = _key_usage(plan.server_uses)
    alt_names: list[x509.GeneralName] = [x509.DNSName(n) for n in plan.dns_names]
    alt_names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in plan.ip_addresses]
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(plan.server_common_name, plan.organization))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(hours=plan.server_validity_hours))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    if extended is not None:
        builder = builder.add_extension(extended, critical=False)
    server = builder.sign(ca_key, hashes.SHA256())
    pem = serialization.Encoding.PEM
    files = TlsFiles(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    files.ca_cert.write_bytes(ca.public_bytes(pem))
    files.server_cert.write_bytes(server.public_bytes(pem) + ca.public_bytes(pem))
    fd = os.open(files.server_key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(server_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return files


def local_certificates(directory: Path, hosts: tuple[str, ...] = ("localhost", "127.0.0.1")) -> TlsFiles:
    return make_certificates(local_plan(hosts), directory)
