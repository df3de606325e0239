"""TrtllmEngine's provider logic: cache hit, build, failure with log tail, deadline, cleanup, diff.

S3 is a real moto server (tests/providers/moto_counting_server.py); Kubernetes is a
fake JobApi that plays a Job's life (the same interface KubernetesJobApi implements).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import boto3
import botocore.config
import pytest

from components.providers import engine_build as eb_provider
from components.serving.builders import engine_build as eb
from tests.providers.conftest import start_moto_server, stop_moto_server

KEY = "ab" * 32


@pytest.fixture(scope="module")
def moto_url(monkeypatch_module):
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch_module.setenv(name, value)
    monkeypatch_module.delenv("AWS_PROFILE", raising=False)
    server = start_moto_server()
    yield server.url
    stop_moto_server(server)


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


@pytest.fixture
def bucket(moto_url) -> str:
    name = f"engines-{uuid.uuid4().hex[:12]}"
    s3_client(moto_url).create_bucket(Bucket=name)
    return name


def s3_client(url: str):
    return boto3.client(
        "s3", endpoint_url=url, region_name="us-east-1", config=botocore.config.Config(s3={"addressing_style": "path"})
    )


def store(url: str) -> eb_provider.S3ObjectStore:
    return eb_provider.S3ObjectStore("us-east-1", url)


class FakeJobs:
    """A Job that reports `statuses` one poll at a time; on success it 'uploads' like the real Job."""

    def __init__(self, statuses: list[dict[str, Any]], *, on_success=None, logs: str = "", exists: bool = False):
        self.statuses = list(statuses)
        self.on_success = on_success
        self.logs = logs
        self.exists = exists
        self.calls: list[tuple[str, Any]] = []

    def apply_config_map(self, manifest):
        self.calls.append(("apply_config_map", manifest["metadata"]["name"]))

    def create_job(self, manifest):
        self.calls.append(("create_job", manifest["metadata"]["name"]))
        return not self.exists

    def job_status(self, namespace, name):
        status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        if eb_provider.job_outcome(status) == "succeeded" and self.on_success:
            self.on_success()
            self.on_success = None
        return status

    def job_log_tail(self, namespace, name, lines):
        self.calls.append(("job_log_tail", lines))
        return self.logs

    def delete_job(self, namespace, name):
        self.calls.append(("delete_job", name))
        self.exists = False

    def delete_config_map(self, namespace, name):
        self.calls.append(("delete_config_map", name))

    def called(self, what: str) -> int:
        return sum(1 for c in self.calls if c[0] == what)


RUNNING = {"active": 1}
COMPLETE = {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}
FAILED = {
    "failed": 1,
    "conditions": [
        {
            "type": "Failed",
            "status": "True",
            "reason": "BackoffLimitExceeded",
            "message": "Job has reached the specified backoff limit",
        }
    ],
}


def props(bucket: str, timeout: int = 3600) -> dict[str, Any]:
    return {
        "key": KEY,
        "bucket": bucket,
        "prefix": eb.engine_prefix(KEY),
        "region": "us-east-1",
        "timeout_seconds": timeout,
        "job": {"metadata": {"name": eb.job_name(KEY), "namespace": "llama"}},
        "script_config_map": {"metadata": {"name": eb.script_configmap_name(KEY), "namespace": "llama"}},
    }


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def upload_engine(url: str, bucket: str):
    def upload():
        client = s3_client(url)
        client.put_object(Bucket=bucket, Key=f"engines/{KEY}/engine/rank0.engine", Body=b"engine")
        client.put_object(Bucket=bucket, Key=f"engines/{KEY}/{eb.COMPLETE_MARKER}", Body=KEY.encode())

    return upload


def test_a_cached_engine_runs_no_job(moto_url, bucket):
    s3_client(moto_url).put_object(Bucket=bucket, Key=f"engines/{KEY}/{eb.COMPLETE_MARKER}", Body=b"x")

    def no_cluster():
        raise AssertionError("the cluster must not be contacted on a cache hit")

    result = eb_provider.ensure_engine(props(bucket), no_cluster, store(moto_url))
    assert result.built is False


def test_a_build_waits_for_the_job_then_cleans_up(moto_url, bucket):
    clock = Clock()
    jobs = FakeJobs([RUNNING, RUNNING, COMPLETE], on_success=upload_engine(moto_url, bucket))
    result = eb_provider.ensure_engine(props(bucket), lambda: jobs, store(moto_url), clock=clock, sleep=clock.sleep)
    assert result.built is True
    assert result.seconds == 2 * eb.POLL_SECONDS
    assert [c[0] for c in jobs.calls] == ["apply_config_map", "create_job", "delete_job", "delete_config_map"]


def test_an_interrupted_runs_job_is_adopted(moto_url, bucket):
    jobs = FakeJobs([COMPLETE], on_success=upload_engine(moto_url, bucket), exists=True)
    assert eb_provider.ensure_engine(props(bucket), lambda: jobs, store(moto_url), sleep=lambda s: None).built
    assert jobs.called("create_job") == 1 and jobs.called("delete_job") == 1


def test_a_failed_build_reports_the_log_tail_and_keeps_the_failed_job(moto_url, bucket):
    """The failed Job stays (its pod has ended): `kubectl logs` shows the whole log, and the
    TritonEngineBuildFailed alert sees kube_job_status_failed, until the next run or the Job's TTL."""
    jobs = FakeJobs([RUNNING, FAILED], logs="[engine-build-x/build]\nRuntimeError: CUDA out of memory")
    with pytest.raises(eb_provider.EngineBuildError) as err:
        eb_provider.ensure_engine(props(bucket), lambda: jobs, store(moto_url), sleep=lambda s: None)
    text = str(err.value)
    assert "BackoffLimitExceeded" in text and "CUDA out of memory" in text and KEY in text
    assert "the failed Job is kept" in text and "logs job/" in text
    assert jobs.called("delete_job") == 0 and jobs.called("delete_config_map") == 1
    assert ("job_log_tail", eb.LOG_TAIL_LINES) in jobs.calls


def test_the_next_run_replaces_a_failed_job_kept_from_an_earlier_run(moto_url, bucket):
    jobs = FakeJobs([FAILED, RUNNING, COMPLETE], on_success=upload_engine(moto_url, bucket), exists=True)
    result = eb_provider.ensure_engine(props(bucket), lambda: jobs, store(moto_url), sleep=lambda s: None)
    assert result.built is True
    assert [c[0] for c in jobs.calls] == [
        "apply_config_map",
        "create_job",  # 409: the kept Job
        "delete_job",  # it failed: replaced
        "create_job",
        "delete_job",  # succeeded: removed
        "delete_config_map",
    ]


def test_a_failed_job_that_will_not_go_away_is_an_error(moto_url, bucket):
    class Stuck(FakeJobs):
        def delete_job(self, namespace, name):
            self.calls.append(("delete_job", name))  # still there

    jobs = Stuck([FAILED], exists=True)
    with pytest.raises(eb_provider.EngineBuildError, match="could not replace the failed build Job"):
        eb_provider.ensure_engine(props(bucket), lambda: jobs, store(moto_url), sleep=lambda s: None)
    assert jobs.called("create_job") == eb.REPLACE_ATTEMPTS


def test_the_deadline_stops_waiting(moto_url, bucket):
    clock = Clock()
    jobs = FakeJobs([RUNNING], logs="")
    with pytest.raises(eb_provider.EngineBuildError, match="no result within"):
        eb_provider.ensure_engine(
            props(bucket, timeout=60), lambda: jobs, store(moto_url), clock=clock, sleep=clock.sleep
        )
    assert clock.now >= 60 + eb.WAIT_MARGIN_SECONDS
    assert jobs.called("delete_job") == 1


def test_success_without_the_marker_is_an_error(moto_url, bucket):
    jobs = FakeJobs([COMPLETE])
    with pytest.raises(eb_provider.EngineBuildError, match="is missing"):
        eb_provider.ensure_engine(props(bucket), lambda: jobs, store(moto_url), sleep=lambda s: None)


def test_delete_removes_only_its_own_prefix(moto_url, bucket):
    client = s3_client(moto_url)
    for key in (
        f"engines/{KEY}/engine/rank0.engine",
        f"engines/{KEY}/{eb.COMPLETE_MARKER}",
        f"engines/{'cd' * 32}/engine/rank0.engine",
        "models/llama/config.pbtxt",
    ):
        client.put_object(Bucket=bucket, Key=key, Body=b"x")
    assert store(moto_url).delete_prefix(bucket, eb.engine_prefix(KEY)) == 2
    left = sorted(o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"])
    assert left == [f"engines/{'cd' * 32}/engine/rank0.engine", "models/llama/config.pbtxt"]


def test_delete_removes_every_version_in_a_versioned_bucket(moto_url, bucket):
    client = s3_client(moto_url)
    client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    key = f"engines/{KEY}/engine/rank0.engine"
    client.put_object(Bucket=bucket, Key=key, Body=b"v1")
    client.put_object(Bucket=bucket, Key=key, Body=b"v2")
    store(moto_url).delete_prefix(bucket, eb.engine_prefix(KEY))
    listing = client.list_object_versions(Bucket=bucket, Prefix=f"engines/{KEY}/")
    assert not listing.get("Versions") and not listing.get("DeleteMarkers")


@pytest.mark.parametrize(
    "status, outcome",
    [
        ({}, "running"),
        (RUNNING, "running"),
        (COMPLETE, "succeeded"),
        (FAILED, "failed"),
        ({"failed": 1}, "failed"),
        ({"conditions": [{"type": "Failed", "status": "False"}], "active": 1}, "running"),
    ],
)
def test_job_outcome(status, outcome):
    assert eb_provider.job_outcome(status) == outcome


UNKNOWN = object()


@pytest.mark.parametrize(
    "news, expected",
    [
        ({"key": KEY, "bucket": "b", "kubeconfig": "new", "job": {"x": 1}}, (False, [])),
        ({"key": "ef" * 32, "bucket": "b"}, (True, ["key"])),
        ({"key": KEY, "bucket": "other"}, (True, ["bucket"])),
        ({"key": KEY, "bucket": UNKNOWN}, (True, ["bucket"])),
    ],
)
def test_diff_compares_only_the_key_and_its_bucket(news, expected):
    olds = {"key": KEY, "bucket": "b", "kubeconfig": "old", "job": {"x": 0}}
    assert eb_provider.engine_diff(olds, news, UNKNOWN) == expected


def test_provider_diff_handles_preview_unknowns():
    from pulumi.runtime import rpc

    diff = eb_provider.TrtllmEngineProvider().diff(
        "id", {"key": KEY, "bucket": "b"}, {"key": KEY, "bucket": rpc.UNKNOWN}
    )
    assert diff.changes and diff.replaces == ["bucket"] and diff.delete_before_replace is False


def test_kubeconfig_may_be_a_dict_or_yaml_text():
    assert eb_provider.parse_kubeconfig({"a": 1}) == {"a": 1}
    assert eb_provider.parse_kubeconfig("apiVersion: v1\nkind: Config\n") == {"apiVersion": "v1", "kind": "Config"}


def test_the_provider_class_creates_from_cache_and_deletes_its_prefix(moto_url, bucket):
    client = s3_client(moto_url)
    client.put_object(Bucket=bucket, Key=f"engines/{KEY}/{eb.COMPLETE_MARKER}", Body=b"x")
    client.put_object(Bucket=bucket, Key=f"engines/{KEY}/engine/rank0.engine", Body=b"x")
    provider = eb_provider.TrtllmEngineProvider()
    inputs = {
        **props(bucket),
        "served_model_name": "llama",
        "kubeconfig": {"unused": "on a cache hit"},
        "s3_endpoint_url": moto_url,
    }
    created = provider.create(inputs)
    assert created.id == KEY
    assert created.outs == {
        "key": KEY,
        "bucket": bucket,
        "prefix": eb.engine_prefix(KEY),
        "region": "us-east-1",
        "served_model_name": "llama",
        "built": False,
        "build_seconds": 0.0,
    }
    provider.delete(created.id, {**created.outs, "s3_endpoint_url": moto_url})
    assert "Contents" not in client.list_objects_v2(Bucket=bucket)


class _FakeApiServer:
    """Just enough of the Kubernetes API, on loopback, for KubernetesJobApi's calls."""

    def __init__(self):
        import http.server
        import threading

        self.requests: list[tuple[str, str]] = []
        self.jobs: dict[str, dict] = {}
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, code: int, body: Any, content_type: str = "application/json"):
                data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _record(self):
                server.requests.append((self.command, self.path.split("?")[0]))

            def do_POST(self):
                self._record()
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                name = body["metadata"]["name"]
                if self.path.endswith("/jobs"):
                    if name in server.jobs:
                        return self._send(409, {"kind": "Status", "code": 409, "reason": "AlreadyExists"})
                    server.jobs[name] = body
                self._send(201, body)

            def do_GET(self):
                self._record()
                path = self.path.split("?")[0]
                if path.endswith("/status"):
                    name = path.split("/")[-2]
                    return self._send(
                        200,
                        {
                            **server.jobs[name],
                            "status": {
                                "failed": 1,
                                "conditions": [
                                    {
                                        "type": "Failed",
                                        "status": "True",
                                        "reason": "DeadlineExceeded",
                                        "message": "too slow",
                                        "lastTransitionTime": None,
                                    }
                                ],
                            },
                        },
                    )
                if path.endswith("/pods"):
                    return self._send(
                        200,
                        {
                            "kind": "PodList",
                            "apiVersion": "v1",
                            "metadata": {},
                            "items": [
                                {
                                    "metadata": {"name": "engine-build-x-abcde"},
                                    "status": {
                                        "phase": "Failed",
                                        "initContainerStatuses": [
                                            {
                                                "name": "build",
                                                "ready": False,
                                                "restartCount": 0,
                                                "image": "i",
                                                "imageID": "",
                                                "state": {"terminated": {"exitCode": 1}},
                                            }
                                        ],
                                    },
                                }
                            ],
                        },
                    )
                if path.endswith("/log"):
                    return self._send(200, "line 1\nRuntimeError: boom\n", "text/plain")
                self._send(404, {"kind": "Status", "code": 404})

            def do_DELETE(self):
                self._record()
                name = self.path.split("?")[0].split("/")[-1]
                if "/jobs/" in self.path and server.jobs.pop(name, None) is None:
                    return self._send(404, {"kind": "Status", "code": 404, "reason": "NotFound"})
                self._send(200, {"kind": "Status", "code": 200})

            do_PUT = do_POST

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the kubernetes client on urllib3 2
def test_kubernetes_job_api_against_a_loopback_api_server():
    pytest.importorskip("kubernetes")
    server = _FakeApiServer()
    try:
        api = eb_provider.KubernetesJobApi(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "c",
                "clusters": [{"name": "k", "cluster": {"server": server.url}}],
                "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
            }
        )
        job = {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": "engine-build-x", "namespace": "llama"},
            "spec": {"template": {"spec": {"containers": [], "restartPolicy": "Never"}}},
        }
        cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "script", "namespace": "llama"}, "data": {}}
        api.apply_config_map(cm)
        assert api.create_job(job) is True
        assert api.create_job(job) is False  # adopted
        status = api.job_status("llama", "engine-build-x")
        assert eb_provider.job_outcome(status) == "failed" and "DeadlineExceeded" in eb_provider.failure_reason(status)
        tail = api.job_log_tail("llama", "engine-build-x", 10)
        assert "[engine-build-x-abcde/build]" in tail and "RuntimeError: boom" in tail
        api.delete_job("llama", "engine-build-x")
        api.delete_job("llama", "engine-build-x")  # already gone: fine
        api.delete_config_map("llama", "script")
    finally:
        server.close()
    assert ("POST", "/apis/batch/v1/namespaces/llama/jobs") in server.requests
    assert ("DELETE", "/apis/batch/v1/namespaces/llama/jobs/engine-build-x") in server.requests
