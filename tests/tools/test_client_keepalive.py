"""The toolbox clients keep a held connection alive inside the NLB's 350 s TLS idle timeout
(tritonllm/client_core.py; docs/autoscaling.md "Scale to zero": a request to a model at zero waits
minutes without a byte).

HTTP (the KServe and OpenAI clients, aiohttp): the socket of a real connection to a local server is read
back for SO_KEEPALIVE and the probe timings. gRPC: the real tritonclient turns our KeepAliveOptions into
the channel arguments it gives grpc.aio, captured at the channel call.
"""

from __future__ import annotations

import asyncio
import socket

import pytest
from aiohttp import web

from tritonllm import client_core, kserve_client, openai_client
from tritonllm._llm_io import GenerationSettings


def _keepalive_of(sock: socket.socket) -> tuple[int, int, int, int]:
    return (
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
        sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
        sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
        sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
    )


EXPECTED = (1, client_core.KEEPALIVE_IDLE_SECONDS, client_core.KEEPALIVE_INTERVAL_SECONDS, client_core.KEEPALIVE_PROBES)


def test_keepalive_probes_start_well_inside_the_nlb_idle_timeout():
    nlb_tls_idle_seconds = 350  # Elastic Load Balancing network/update-idle-timeout.html: TLS, fixed
    idle, interval, probes = (
        client_core.KEEPALIVE_IDLE_SECONDS,
        client_core.KEEPALIVE_INTERVAL_SECONDS,
        client_core.KEEPALIVE_PROBES,
    )
    assert idle + interval < nlb_tls_idle_seconds  # a lost first probe is retried in time
    assert idle + interval * probes < 600  # a dead peer is noticed within minutes, not Linux's 2 h 11 min
    assert 300 <= client_core.GRPC_KEEPALIVE_SECONDS < nlb_tls_idle_seconds


def test_an_aiohttp_connection_through_the_toolbox_connector_sends_keepalives():
    async def scenario() -> tuple[int, int, int, int]:
        release = asyncio.Event()

        async def held(request: web.Request) -> web.StreamResponse:
            # headers and a first byte, then the body stays open: the connection is in use while we look
            response = web.StreamResponse()
            await response.prepare(request)
            await response.write(b"x")
            await release.wait()
            return response

        app = web.Application()
        app.router.add_get("/", held)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        try:
            import aiohttp

            async with aiohttp.ClientSession(connector=client_core.tcp_connector(True)) as session:
                async with session.get(f"http://{host}:{port}/") as resp:
                    assert resp.status == 200
                    assert resp.connection is not None and resp.connection.transport is not None
                    sock = resp.connection.transport.get_extra_info("socket")
                    options = _keepalive_of(sock)
                    release.set()
                    return options
        finally:
            await runner.cleanup()

    assert asyncio.run(scenario()) == EXPECTED


def test_the_kserve_http_client_and_the_openai_client_use_the_keepalive_connector(monkeypatch):
    built: list[object] = []
    real = client_core.tcp_connector

    def recording(ssl):
        connector = real(ssl)
        built.append(connector)
        return connector

    monkeypatch.setattr(kserve_client, "tcp_connector", recording)
    monkeypatch.setattr(openai_client, "tcp_connector", recording)

    async def scenario() -> None:
        backend = kserve_client.HttpBackend("http://127.0.0.1:9")
        try:
            await backend.served_models()  # nothing listens on port 9: None, after the session is made
        finally:
            await backend.close()
        with pytest.raises(client_core.SetupError, match="cannot reach"):
            await openai_client.run_requests("http://127.0.0.1:9/v1", "m", ["hi"], GenerationSettings())

    asyncio.run(scenario())
    assert len(built) == 2


def test_the_grpc_client_pings_through_a_held_call(monkeypatch):
    import grpc

    captured: dict[str, object] = {}
    real_insecure = grpc.aio.insecure_channel

    def insecure_channel(target, options=None, **kwargs):
        captured.update(dict(options or []))
        return real_insecure(target, options=options, **kwargs)

    monkeypatch.setattr(grpc.aio, "insecure_channel", insecure_channel)

    async def scenario() -> None:
        backend = kserve_client.GrpcBackend("grpc://127.0.0.1:9")
        await backend.client.close()

    asyncio.run(scenario())
    assert captured["grpc.keepalive_time_ms"] == client_core.GRPC_KEEPALIVE_SECONDS * 1000
    assert captured["grpc.http2.max_pings_without_data"] == 0  # keep pinging while no data comes
    assert captured["grpc.keepalive_permit_without_calls"] is False  # only while a call is open
