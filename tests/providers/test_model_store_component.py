"""ModelStore under Pulumi mocks: what the bucket is registered with, and the pure IAM builders."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest

from components.providers import s3_sync
from components.serving.builders.model_store import read_prefix_policy, write_prefix_policy
from tests.unit.harness import REPO_ROOT, ProgramRun, RecordedResource, run_program

PROGRAM = Path(__file__).with_name("model_store_program.py")
BUCKET = "aws:s3/bucket:Bucket"
REPOSITORY = "pulumi-python:dynamic/tritonllm:ModelRepository"


@pytest.fixture(scope="module")
def run() -> ProgramRun:
    return run_program("dev", program=PROGRAM, overrides={"modelStore.noncurrentVersionDays": 7})


def bucket_setting(run: ProgramRun, type_name: str) -> RecordedResource:
    resource = run.one(f"aws:s3/{type_name}")
    assert resource.inputs["bucket"] == run.one(BUCKET).id  # configures this bucket, not another
    return resource


def test_bucket_is_encrypted_by_default(run):
    rule = bucket_setting(
        run, "bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
    ).inputs["rules"][0]
    assert rule["applyServerSideEncryptionByDefault"]["sseAlgorithm"] == "AES256"


def test_bucket_blocks_every_kind_of_public_access(run):
    block = bucket_setting(run, "bucketPublicAccessBlock:BucketPublicAccessBlock").inputs
    assert all(
        block[k] is True for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
    )
    ownership = bucket_setting(run, "bucketOwnershipControls:BucketOwnershipControls").inputs
    assert ownership["rule"]["objectOwnership"] == "BucketOwnerEnforced"


def test_bucket_policy_denies_requests_without_tls(run):
    arn = run.one(BUCKET).outputs["arn"]
    policy = json.loads(bucket_setting(run, "bucketPolicy:BucketPolicy").inputs["policy"])
    [statement] = policy["Statement"]
    assert statement["Effect"] == "Deny" and statement["Principal"] == "*" and statement["Action"] == "s3:*"
    assert statement["Resource"] == [arn, f"{arn}/*"]
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_bucket_is_versioned_and_expires_old_versions_per_config(run):
    versioning = bucket_setting(run, "bucketVersioning:BucketVersioning").inputs
    assert versioning["versioningConfiguration"]["status"] == "Enabled"
    rules = {
        r["id"]: r
        for r in bucket_setting(run, "bucketLifecycleConfiguration:BucketLifecycleConfiguration").inputs["rules"]
    }
    assert rules["expire-noncurrent-versions"]["noncurrentVersionExpiration"]["noncurrentDays"] == 7
    assert rules["abort-incomplete-multipart-uploads"]["abortIncompleteMultipartUpload"]["daysAfterInitiation"] == 1
    assert all(rule["filter"] == {"prefix": ""} and rule["status"] == "Enabled" for rule in rules.values())


@pytest.mark.parametrize("force_destroy", [False, True])
def test_force_destroy_follows_config(force_destroy):
    run = run_program("dev", program=PROGRAM, overrides={"modelStore.forceDestroy": force_destroy})
    assert run.one(BUCKET).inputs["forceDestroy"] is force_destroy


def test_repository_carries_the_content_hash_and_waits_for_the_bucket_setup(run):
    repository = run.one(REPOSITORY)
    assert repository.inputs["prefix"] == "repositories/local"
    assert repository.inputs["content_hash"] == s3_sync.content_hash(REPO_ROOT / "model_repository/local")
    assert repository.inputs["region"] == "us-west-2"
    settings = {r.urn for r in run.resources if r.type.startswith("aws:s3/bucket") and r.type != BUCKET}
    assert settings <= set(repository.dependencies)  # encryption, policy... exist before any upload


def test_serialized_provider_loads_in_a_fresh_process(run):
    # The engine runs the provider in another process from the pickled `__provider` input.
    pickled = run.one(REPOSITORY).inputs["__provider"]
    code = (
        "import base64, sys, dill; p = dill.loads(base64.b64decode(sys.stdin.read())); "
        "print(type(p).__module__, type(p).__name__, p.settings, p.cache_dir)"
    )
    result = subprocess.run([sys.executable, "-c", code], input=pickled, cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.stdout.split() == [
        "components.providers.model_repository",
        "ModelRepositoryProvider",
        "None",
        "None",
    ], result.stderr
    assert len(base64.b64decode(pickled)) < 1024  # by reference: no code or data captured


def test_read_prefix_policy_is_least_privilege():
    policy = read_prefix_policy("arn:aws:s3:::bkt", "/models/llama/")
    get, listing = policy["Statement"]
    assert get["Action"] == ["s3:GetObject"] and get["Resource"] == ["arn:aws:s3:::bkt/models/llama/*"]
    assert listing["Action"] == ["s3:ListBucket"] and listing["Resource"] == ["arn:aws:s3:::bkt"]
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["models/llama", "models/llama/", "models/llama/*"]}}
    assert all(s["Effect"] == "Allow" for s in policy["Statement"])


def test_read_prefix_policy_with_a_kms_key_adds_only_decrypt():
    policy = read_prefix_policy("arn:aws:s3:::bkt", "m", kms_key_arn="arn:aws:kms:us-west-2:1:key/k")
    assert policy["Statement"][-1] == {
        "Sid": "UseBucketKmsKey",
        "Effect": "Allow",
        "Action": ["kms:Decrypt"],
        "Resource": ["arn:aws:kms:us-west-2:1:key/k"],
    }


def test_write_prefix_policy_writes_only_under_the_prefix():
    policy = write_prefix_policy("arn:aws:s3:::bkt", "engines/abc")
    write = policy["Statement"][-1]
    assert "s3:PutObject" in write["Action"] and "s3:DeleteObject" in write["Action"]
    assert write["Resource"] == ["arn:aws:s3:::bkt/engines/abc/*"]
    assert not any("*" == a or a.endswith(":*") for s in policy["Statement"] for a in s["Action"])


def test_policies_refuse_an_empty_prefix():
    with pytest.raises(ValueError, match="prefix must not be empty"):
        read_prefix_policy("arn:aws:s3:::bkt", "/")
