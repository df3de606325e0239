"""The program's serving images under Pulumi mocks: which stacks build one, what the repository and the
builder look like, that pods run the built image, and that an unchanged stack registers no build.
"""

from __future__ import annotations

import json

from components.providers import image_build
from tests.unit.conftest import stack_run_for
from tests.unit.harness import run_program

SERVING_IMAGE = "pulumi-python:dynamic/tritonllm:ServingImage"


def _containers(run, kind: str) -> list[dict]:
    out = []
    for manifest in run.manifests(kind):
        spec = manifest["spec"]
        templates = (
            [spec["leaderWorkerTemplate"]["leaderTemplate"], spec["leaderWorkerTemplate"]["workerTemplate"]]
            if kind == "LeaderWorkerSet"
            else [spec["template"]]
        )
        out += [c for t in templates for c in t["spec"]["containers"]]
    return out


def test_the_multinode_stack_builds_one_image_and_its_group_runs_it():
    run = stack_run_for("multinode")
    (image,) = run.of_type(SERVING_IMAGE)
    assert image.inputs["tag"].startswith("multinode-") and len(image.inputs["tag"]) == len("multinode-") + 64
    uri = image.outputs["image_uri"]
    assert uri.startswith("123456789012.dkr.ecr.") and f":{image.inputs['tag']}@sha256:" in uri
    containers = _containers(run, "LeaderWorkerSet")
    assert containers and {c["image"] for c in containers} == {uri}
    assert run.outputs["multinodeImage"] == uri and list(run.outputs["servingImages"].values()) == [uri]


def test_the_repository_is_immutable_scanned_encrypted_and_expiring():
    run = stack_run_for("multinode")
    (repo,) = run.of_type("aws:ecr/repository:Repository")
    assert repo.inputs["imageTagMutability"] == "IMMUTABLE"
    assert repo.inputs["imageScanningConfiguration"] == {"scanOnPush": True}
    assert repo.inputs["encryptionConfigurations"] == [{"encryptionType": "AES256"}]
    (lifecycle,) = run.of_type("aws:ecr/lifecyclePolicy:LifecyclePolicy")
    assert [r["action"]["type"] for r in json.loads(lifecycle.inputs["policy"])["rules"]] == ["expire", "expire"]
    (project,) = run.of_type("aws:codebuild/project:Project")
    assert project.inputs["environment"]["privilegedMode"] is True
    assert project.inputs["logsConfig"]["cloudwatchLogs"]["status"] == "ENABLED"


def test_a_stack_without_multi_node_or_extra_packages_builds_nothing():
    run = stack_run_for("dev")
    assert not run.of_type(SERVING_IMAGE) and not run.of_type("aws:ecr/repository:Repository")
    assert "servingImages" not in run.outputs


def test_extra_apt_packages_build_a_single_node_image_the_deployment_runs():
    run = run_program("dev", overrides={"servingImage": {"extraAptPackages": ["htop", "strace"]}})
    (image,) = run.of_type(SERVING_IMAGE)
    assert image.inputs["tag"].startswith("extra-packages-")
    assert "EXTRA_APT_PACKAGES='htop strace'" in image.inputs["build_args"]
    assert {c["image"] for c in _containers(run, "Deployment")} == {image.outputs["image_uri"]}


def test_an_unchanged_stack_registers_no_build():
    """Two runs of the same stack hand the ServingImage the same inputs, and the provider's diff of the
    second against the first's state says no change: `pulumi up` never calls update (no AWS request)."""
    first = stack_run_for("multinode")
    second = run_program("multinode", previous=first)
    (old,) = first.of_type(SERVING_IMAGE)
    (new,) = second.of_type(SERVING_IMAGE)
    assert new.inputs == old.inputs
    assert image_build.image_diff(old.outputs, new.inputs) == (False, [])
    # a changed input (another extra package) is a new tag, built once
    third = run_program("multinode", overrides={"servingImage": {"extraAptPackages": ["htop"]}}, previous=first)
    (changed,) = third.of_type(SERVING_IMAGE)
    assert image_build.image_diff(old.outputs, changed.inputs) == (True, [])
