"""`tritonllm serve --api-key`: the gateway's API-key check in front of a local Triton.

On EKS, NGINX Gateway Fabric checks API keys with NGINX's `auth_basic` (an AuthenticationFilter
of type Basic over an htpasswd Secret) and maps a 401 on gRPC routes to `grpc-status 16`
(UNAUTHENTICATED, NGF's grpc-error-pages.conf). Locally the same NGINX module does the same
thing: this module runs an `nginx` process (Debian package `nginx`) with a config of the same
shape in front of Triton's HTTP and gRPC ports, with the htpasswd file built by the very
function that builds the cluster's Secret (`components.gateway_manifests.htpasswd`). So the
client's key handling is tested against the real mechanism:

    HTTP:  no/wrong key -> 401 (WWW-Authenticate: Basic),  key -> Triton's answer
    gRPC:  no/wrong key -> UNAUTHENTICATED,                 key -> Triton's answer

API keys are `name:secret`; clients send them as Basic credentials (`curl -u "$KEY"`,
`tritonllm client --api-key "$KEY"`, gRPC metadata `authorization: Basic base64(key)`).
Triton itself listens on loopback ports only the front knows.

`serve --tls` puts TLS on the same front, as the NLB does on EKS: HTTPS on the HTTP port, gRPC over
TLS (ALPN h2) on the gRPC port, and HTTPS on the OpenAI port (nginx proxying to the OpenAI frontend
on a loopback port), with a server certificate from a CA generated the way the gateway's is
(tritonllm/tls_certs.py). Keys and TLS are independent: either one starts the front.
"""

from __future__ import annotations

import os
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from tritonllm.ports import LoopbackUrls, find_free_port, listening
from tritonllm.tls_certs import TlsFiles

API_KEYS_ENV = "TRITONLLM_API_KEYS"  # serve: comma-separated name:secret keys
REALM = "tritonllm"
READINESS_PATH = "/readyz"  # open, like NGINX's :8081/readyz that the NLB checks


class FrontError(RuntimeError):
    pass


def api_keys_from(values: Sequence[str] | None, env: dict[str, str] | None = None) -> list[tuple[str, str]]:
    """(name, secret) pairs from `--api-key` values, else from $TRITONLLM_API_KEYS (comma-separated)."""
    raw = list(values or [])
    if not raw:
        raw = [v for v in (env if env is not None else os.environ).get(API_KEYS_ENV, "").split(",") if v.strip()]
    pairs = []
    for value in raw:
        name, sep, secret = value.strip().partition(":")
        if not sep or not name or not secret:
            raise FrontError("an API key looks like name:secret, e.g. local:$(openssl rand -hex 24)")
        pairs.append((name, secret))
    return pairs


def htpasswd_text(keys: Sequence[tuple[str, str]]) -> str:
    from components.gateway.builders.manifests import htpasswd  # the same file the cluster's Secret holds

    return htpasswd(keys)


def nginx_config(
    *,
    workdir: Path,
    host: str,
    http_port: int,
    grpc_port: int,
    triton_http: int,
    triton_grpc: int,
    timeout_seconds: int = 300,
    run_as_root: bool = False,
    draining: bool = False,
    keys: bool = True,
    tls: TlsFiles | None = None,
    openai: tuple[int, int] | None = None,
) -> str:
    """An nginx.conf equivalent (for these ports) to what NGF renders for our routes.

    keys: check API keys (htpasswd in workdir); tls: terminate TLS with these files on every port;
    openai: (public port, frontend's loopback port) for the OpenAI API, which checks keys itself.

    `draining`: what NGF renders once the model's last endpoint has left the EndpointSlice (a replica
    being removed): the upstream becomes its 503 server (nginx-gateway-fabric v2.6.7
    internal/controller/nginx/config/upstreams.go, types.Nginx503Server), so after the API-key check
    HTTP gets 503 (here with Retry-After) and gRPC gets grpc-status 14 UNAVAILABLE (its
    grpc-error-pages.conf maps 502/503/504 to @grpc_unavailable). A reload (SIGHUP) applies it: the old
    worker finishes the requests in flight, streams included, as NGINX does on every NGF reload.
    """
    t = f"{timeout_seconds}s"
    user = "user root;\n" if run_as_root else ""
    auth = f'auth_basic "{REALM}";\n            auth_basic_user_file {workdir}/htpasswd;' if keys else ""
    unavailable = f"unix:{workdir}/unavailable-503.sock"
    http_upstream = f"http://{unavailable}" if draining else f"http://127.0.0.1:{triton_http}"
    grpc_upstream = f"grpc://{unavailable}" if draining else f"grpc://127.0.0.1:{triton_grpc}"
    retry_after = "\n            add_header Retry-After 1 always;" if draining else ""
    ssl = " ssl" if tls else ""
    # TLS 1.3/1.2 only, as the NLB's ELBSecurityPolicy-TLS13-1-2-2021-06.
    certs = (
        f"ssl_certificate {tls.server_cert};\n    ssl_certificate_key {tls.server_key};\n"
        "    ssl_protocols TLSv1.2 TLSv1.3;\n"
        if tls
        else ""
    )
    openai_server = ""
    if openai is not None:
        public, internal = openai
        openai_server = f"""
    server {{
        listen {host}:{public}{ssl};
        location / {{
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_pass http://127.0.0.1:{internal};
        }}
    }}"""
    return f"""{user}worker_processes 1;
daemon off;
pid {workdir}/nginx.pid;
error_log {workdir}/error.log notice;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {workdir}/client_body;
    proxy_temp_path {workdir}/proxy;
    fastcgi_temp_path {workdir}/fastcgi;
    uwsgi_temp_path {workdir}/uwsgi;
    scgi_temp_path {workdir}/scgi;
    client_max_body_size 32m;
    proxy_buffering off;
    proxy_read_timeout {t};
    proxy_send_timeout {t};
    grpc_read_timeout {t};
    grpc_send_timeout {t};
    {certs}server {{
        listen {host}:{http_port}{ssl};
        location = {READINESS_PATH} {{ return {503 if draining else 200}; }}
        location / {{
            {auth}{retry_after}
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass {http_upstream};
        }}
    }}
    server {{
        listen {host}:{grpc_port}{ssl} http2;
        location / {{
            {auth}
            error_page 401 = @grpc_unauthenticated;
            error_page 502 503 504 = @grpc_unavailable;
            grpc_pass {grpc_upstream};
        }}
        location @grpc_unauthenticated {{
            default_type application/grpc;
            add_header content-type application/grpc;
            add_header grpc-status 16;
            add_header grpc-message unauthenticated;
            return 204;
        }}
        location @grpc_unavailable {{
            default_type application/grpc;
            add_header content-type application/grpc;
            add_header grpc-status 14;
            add_header grpc-message unavailable;
            return 204;
        }}
    }}
    server {{
        listen {unavailable};
        access_log off;
        default_type application/json;
        return 503 '{{"error":"the server is draining (stopping): no replica takes new requests; retry"}}';
    }}{openai_server}
}}
"""


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
    )


class ApiKeyFront(LoopbackUrls):
    """An nginx process in front of Triton's HTTP and gRPC ports: API keys, TLS, or both."""

    def __init__(
        self,
        keys: Sequence[tuple[str, str]],
        *,
        triton_http: int,
        triton_grpc: int,
        host: str = "127.0.0.1",
        http_port: int = 8000,
        grpc_port: int = 8001,
        timeout_seconds: int = 300,
        tls: TlsFiles | None = None,
        openai: tuple[int, int] | None = None,
    ) -> None:
        if not keys and tls is None:
            raise FrontError("no API keys and no TLS: nothing for the front to do")
        self.keys = list(keys)
        self.tls = tls
        self.openai = openai
        self.host, self.http_port, self.grpc_port = host, http_port, grpc_port
        self.triton_http, self.triton_grpc = triton_http, triton_grpc
        self.timeout_seconds = timeout_seconds
        self.workdir: Path | None = None
        self.process: subprocess.Popen | None = None

    def start(self, ready_timeout: float = 15.0) -> ApiKeyFront:
        binary = nginx_binary()
        if binary is None:
            raise FrontError("`serve --api-key` runs nginx in front of Triton; install it (apt-get install nginx)")
        for attr in ("http_port", "grpc_port"):
            if getattr(self, attr) == 0:
                setattr(self, attr, find_free_port(self.host))
        self.workdir = Path(tempfile.mkdtemp(prefix="tritonllm-front-"))
        if self.keys:
            htpasswd = self.workdir / "htpasswd"
            htpasswd.write_text(htpasswd_text(self.keys))
            htpasswd.chmod(0o600)
        conf = self.workdir / "nginx.conf"
        conf.write_text(self._config())
        self.process = subprocess.Popen(
            [binary, "-p", str(self.workdir), "-c", str(conf), "-e", str(self.workdir / "error.log")],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise FrontError(f"nginx exited ({self.process.returncode}): {self._error_tail()}")
            ports = [self.http_port, self.grpc_port, *([self.openai[0]] if self.openai else [])]
            if all(listening(self._client_host, port) for port in ports):
                return self
            time.sleep(0.05)
        self.stop()
        raise FrontError(f"nginx did not listen on {self.http_port}/{self.grpc_port}: {self._error_tail()}")

    def _config(self, draining: bool = False) -> str:
        assert self.workdir is not None
        return nginx_config(
            workdir=self.workdir,
            host=self.host,
            http_port=self.http_port,
            grpc_port=self.grpc_port,
            triton_http=self.triton_http,
            triton_grpc=self.triton_grpc,
            timeout_seconds=self.timeout_seconds,
            run_as_root=os.geteuid() == 0,
            draining=draining,
            keys=bool(self.keys),
            tls=self.tls,
            openai=self.openai,
        )

    def drain(self, timeout: float = 15.0) -> bool:
        """Refuse new requests from now on (HTTP 503, gRPC UNAVAILABLE) while NGINX's old worker finishes
        those in flight: nginx_config(draining=True) applied by a reload. True once the new worker answers."""
        if self.process is None or self.process.poll() is not None or self.workdir is None:
            return False
        import urllib.error
        import urllib.request

        log = self.workdir / "error.log"

        def old_workers_stopped() -> int:  # nginx logs it (notice level) when a worker stops accepting
            return log.read_text(errors="replace").count("gracefully shutting down") if log.is_file() else 0

        before = old_workers_stopped()
        (self.workdir / "nginx.conf").write_text(self._config(draining=True))
        self.process.send_signal(signal.SIGHUP)
        # Done once the old worker no longer accepts connections (until then both take new ones) and the
        # new one answers with the draining config.
        deadline = time.monotonic() + timeout
        # Behind TLS (serve --tls) the readiness answer comes over HTTPS with the generated CA.
        context = ssl.create_default_context(cafile=str(self.tls.ca_cert)) if self.tls else None
        while time.monotonic() < deadline:
            if old_workers_stopped() > before:
                try:
                    urllib.request.urlopen(f"{self.http_url}{READINESS_PATH}", timeout=2, context=context).close()
                except urllib.error.HTTPError as exc:
                    if exc.code == 503:
                        return True
                except OSError:
                    pass
            time.sleep(0.05)
        return False

    @property
    def http_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self._client_host}:{self.http_port}"

    @property
    def openai_base_url(self) -> str | None:
        if self.openai is None:
            return None
        return f"{'https' if self.tls else 'http'}://{self._client_host}:{self.openai[0]}/v1"

    def _error_tail(self) -> str:
        err = ""
        if self.process is not None and self.process.stderr is not None and self.process.poll() is not None:
            err = self.process.stderr.read().decode(errors="replace")
        log = self.workdir / "error.log" if self.workdir else None
        if log is not None and log.is_file():
            err += log.read_text(errors="replace")
        return err.strip()[-2000:]

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)  # graceful: finish streams in flight
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process is not None and self.process.stderr is not None:
            self.process.stderr.close()
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def __enter__(self) -> ApiKeyFront:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
