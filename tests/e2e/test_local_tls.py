"""`tritonllm serve --tls` end to end: the generated-CA path the EKS gateway takes without a domain.

A real Triton behind real nginx terminating TLS on the HTTP, gRPC and OpenAI ports, with a server
certificate from a CA made by the same plan the Gateway component gives pulumi_tls
(components/gateway/builders/certificates.py). Real clients verify it: `tritonllm client` with
--ca-cert over HTTP, gRPC and the OpenAI API, the `openai` SDK with SSL_CERT_FILE, curl --cacert;
and every one of them refuses the server when given another CA, or none.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import ANY_FREE_PORTS
from tritonllm import auth_front, tls_certs
from tritonllm.client_core import API_KEY_ENV, CA_CERT_ENV

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[2]

CHILD = r"""
import json, os, subprocess, sys
ca, wrong, prompts, out = os.environ["TRITONLLM_CA_CERT"], sys.argv[1], sys.argv[2], sys.argv[3]
env = {k: v for k, v in os.environ.items() if k != "TRITONLLM_CA_CERT"}

def client(args, ca_cert):
    extra = ["--ca-cert", ca_cert] if ca_cert else []
    cmd = [sys.executable, "-m", "tritonllm", "client", "--model-name", "smollm2", "--input-prompts", prompts,
           "--results-file", out, "--max-tokens", "4", "--temperature", "0", "--timeout", "60", *args, *extra]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    return [proc.returncode, (proc.stdout + proc.stderr)[-600:]]

urls = {
    "http": ["--url", os.environ["TRITON_HTTP_URL"]],
    "grpc": ["--url", os.environ["TRITON_GRPC_URL"]],
    "openai": ["--api", "openai", "--url", os.environ["OPENAI_BASE_URL"]],
}
results = {name: {"right": client(a, ca), "wrong": client(a, wrong)} for name, a in urls.items()}
results["grpc-no-ca"] = {"ssl-system-trust": client(urls["grpc"] + ["--ssl"], None)}

sdk = ("from openai import OpenAI; import os; c = OpenAI(base_url=os.environ['OPENAI_BASE_URL'], api_key='unused'); "
       "r = c.chat.completions.create(model='smollm2', messages=[{'role': 'user', 'content': 'Hi'}], max_tokens=4); "
       "print('SDK-OK', r.choices[0].message.content is not None)")
for label, cafile in (("right", ca), ("wrong", wrong)):
    proc = subprocess.run([sys.executable, "-c", sdk], env={**env, "SSL_CERT_FILE": cafile},
                          capture_output=True, text=True, timeout=300)
    results.setdefault("openai-sdk", {})[label] = [proc.returncode, (proc.stdout + proc.stderr)[-600:]]

for label, cafile in (("right", ca), ("wrong", wrong)):
    proc = subprocess.run(["curl", "-sS", "--cacert", cafile, "-o", "/dev/null", "-w", "%{http_code}",
                           os.environ["TRITON_HTTP_URL"] + "/v2/health/ready"], capture_output=True, text=True)
    results.setdefault("curl", {})[label] = [proc.returncode, proc.stdout + proc.stderr[-300:]]
print("RESULT " + json.dumps(results))
"""


@pytest.fixture(scope="module")
def wrong_ca(tmp_path_factory) -> Path:
    """Another CA of the very same shape: only the key differs."""
    return tls_certs.local_certificates(tmp_path_factory.mktemp("wrong-ca")).ca_cert


def test_serve_tls_verified_over_http_grpc_and_openai_and_refused_with_another_ca(tmp_path, wrong_ca):
    if auth_front.nginx_binary() is None:
        pytest.fail("nginx is not installed (apt-get install nginx; .ci/run installs it)", pytrace=False)
    if shutil.which("curl") is None:
        pytest.fail("curl is not installed", pytrace=False)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("What is Triton?\n")
    tls_dir = tmp_path / "tls"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tritonllm",
            "serve",
            "--tls",
            "--tls-dir",
            str(tls_dir),
            *ANY_FREE_PORTS,
            "--quiet",
            "--",
            sys.executable,
            "-c",
            CHILD,
            str(wrong_ca),
            str(prompts),
            str(tmp_path / "out.jsonl"),
        ],
        cwd=REPO_ROOT,
        env={k: v for k, v in os.environ.items() if k not in (API_KEY_ENV, CA_CERT_ENV, "SSL_CERT_FILE")},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    results = json.loads(line[len("RESULT ") :])
    detail = json.dumps(results, indent=1)
    # the URLs serve announced are TLS ones, and the CA it names is the one the clients used
    assert "HTTP:    https://127.0.0.1:" in proc.stdout and "OpenAI:  https://127.0.0.1:" in proc.stdout
    assert f"--ca-cert {tls_dir / 'ca.pem'}" in proc.stdout
    for api in ("http", "grpc", "openai"):
        assert results[api]["right"][0] == 0, detail
        assert "1/1 succeeded" in results[api]["right"][1], detail
        # another CA: the handshake fails, nothing is sent (exit 2: could not reach the model)
        assert results[api]["wrong"][0] != 0, detail
        assert "1/1 succeeded" not in results[api]["wrong"][1], detail
    assert results["grpc-no-ca"]["ssl-system-trust"][0] != 0, detail  # our CA is in no system trust store
    assert results["openai-sdk"]["right"][0] == 0 and "SDK-OK True" in results["openai-sdk"]["right"][1], detail
    assert results["openai-sdk"]["wrong"][0] != 0, detail
    assert results["curl"]["right"] == [0, "200"], detail
    assert results["curl"]["wrong"][0] == 60, detail  # curl: peer certificate cannot be authenticated


def test_local_certificate_follows_the_gateway_plan(tmp_path):
    """The files `serve --tls` writes carry the plan's names, key types and usages."""
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    from components.gateway.builders import certificates

    files = tls_certs.local_certificates(tmp_path)
    ca = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
    leaf = x509.load_pem_x509_certificate(files.server_cert.read_bytes())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert isinstance(ca.public_key(), ec.EllipticCurvePublicKey)  # certificates.CA_KEY
    assert isinstance(leaf.public_key(), rsa.RSAPublicKey) and leaf.public_key().key_size == 2048
    assert leaf.issuer == ca.subject
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert x509.oid.ExtendedKeyUsageOID.SERVER_AUTH in eku
    assert oct(files.server_key.stat().st_mode & 0o777) == "0o600"
    plan = certificates.local_plan()
    hours = (leaf.not_valid_after_utc - leaf.not_valid_before_utc).total_seconds() / 3600
    assert abs(hours - plan.server_validity_hours) < 1


@pytest.fixture(scope="module")
def tls_front(triton_server, tmp_path_factory):
    """The local Triton behind the TLS front (no API keys), as `serve --tls` runs it."""
    files = tls_certs.local_certificates(tmp_path_factory.mktemp("tls"))
    server = triton_server.server
    with auth_front.ApiKeyFront(
        [], triton_http=server.http_port, triton_grpc=server.grpc_port, http_port=0, grpc_port=0, tls=files
    ) as front:
        yield front, files


def test_bench_verifies_the_endpoint_and_aiperf_refuses_another_ca(tls_front, triton_server, wrong_ca, tmp_path):
    """`bench --ca-cert`: the interface probe and AIPerf (a child process, aiohttp) verify against the CA
    through SSL_CERT_FILE; AIPerf given another CA fails every request with a verification error."""
    from tritonllm import kserve_bench
    from tritonllm.bench import PRESETS, aiperf_executable, ensure_local_tokenizer, setup_aiperf

    front, files = tls_front
    aiperf = aiperf_executable() or setup_aiperf(quiet=True)
    common = ["--url", front.http_url, "--preset", "smoke", "--concurrency", "1", "--request-count", "2"]
    bench = [sys.executable, "-m", "tritonllm", "bench", *common, "--aiperf", str(aiperf)]
    env = {k: v for k, v in os.environ.items() if k not in (CA_CERT_ENV, "SSL_CERT_FILE")}
    ok = subprocess.run(
        [*bench, "--ca-cert", str(files.ca_cert), "--output-dir", str(tmp_path / "ok")],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert ok.returncode == 0, ok.stdout[-3000:] + ok.stderr[-3000:]
    summary = json.loads((tmp_path / "ok" / "summary.json").read_text())
    assert summary["runs"][0]["ok"] is True, summary
    refused = subprocess.run(
        [*bench, "--ca-cert", str(wrong_ca), "--output-dir", str(tmp_path / "refused")],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert refused.returncode == 2 and "CERTIFICATE_VERIFY_FAILED" in refused.stderr, refused.stderr[-2000:]
    # AIPerf itself, past the probe: every request fails verification against another CA.
    iface = kserve_bench.fetch_interface(triton_server.http_url, triton_server.model_name)
    template = tmp_path / "template.json"
    template.write_text(kserve_bench.payload_template(iface, stream=True))
    artifacts = tmp_path / "aiperf-wrong-ca"
    artifacts.mkdir()
    cmd = kserve_bench.aiperf_command(
        aiperf,
        front.http_url,
        triton_server.model_name,
        template,
        str(ensure_local_tokenizer(aiperf)),
        PRESETS["smoke"],
        1,
        2,
        artifacts,
        True,
    )
    proc = subprocess.run(
        cmd, cwd=artifacts, env={**env, "SSL_CERT_FILE": str(wrong_ca)}, capture_output=True, text=True, timeout=600
    )
    log = proc.stdout + proc.stderr + "".join(p.read_text(errors="replace") for p in artifacts.rglob("*.log"))
    assert proc.returncode != 0 and "certificate verify failed" in log.lower(), log[-3000:]
