"""Every IAM policy document and trust policy the program builds equals its golden file.

The golden files in tests/golden/iam/<stack>/ are what each stack file's program registers
under the unit-test mocks (and tests/golden/iam/<variant>/ what a conftest.VARIANTS entry registers:
the opt-ins no stack file turns on, such as the alerts topic, Alertmanager's role, CloudWatch) (account 123456789012, deterministic ARNs and ids). They were
reviewed once against the upstream policies (Karpenter's controller policy against
karpenter-provider-aws v1.14.1 website/content/en/docs/getting-started/
getting-started-with-karpenter/cloudformation.yaml; Pod Identity trust against the EKS User
Guide, "Create IAM role with trust policy required by EKS Pod Identity"). A change to what a
policy permits changes the registered document and fails here; if the change is intended,
review the diff and regenerate with

    TRITONLLM_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/unit/test_iam_golden.py

The AWS Load Balancer Controller's policy is left out: components/policies/lbc_iam_policy.json
is stored verbatim from upstream and is its own golden file (tests/unit/test_gateway*).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from tests.unit.conftest import VARIANTS, stack_run_for
from tests.unit.harness import ProgramRun, stack_files

GOLDEN_DIR = Path(__file__).resolve().parents[1] / "golden" / "iam"
REGENERATE = (
    "review the change, then: TRITONLLM_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/unit/test_iam_golden.py"
)
UPDATE = os.environ.get("TRITONLLM_UPDATE_GOLDEN") == "1"

# Resource type -> the input holding a policy document.
POLICY_INPUTS = {
    "aws:iam/role:Role": "assumeRolePolicy",
    "aws:sns/topicPolicy:TopicPolicy": "policy",
    "aws:iam/rolePolicy:RolePolicy": "policy",
    "aws:iam/policy:Policy": "policy",
    "aws:sqs/queuePolicy:QueuePolicy": "policy",
    "aws:s3/bucketPolicy:BucketPolicy": "policy",
    "aws:kms/key:Key": "policy",
    "aws:efs/fileSystemPolicy:FileSystemPolicy": "policy",
}
VERBATIM_UPSTREAM = ("-lbc-policy",)  # resource names whose document is stored verbatim elsewhere
# The TRT-LLM engine prefix is a hash of every engine input (tests/unit/test_engine_build*.py test
# it); here it is a placeholder, so an engine option change does not read as a policy change.
ENGINE_KEY = re.compile(r"engines/[0-9a-f]{64}")


def _normalized(text: str) -> dict:
    return json.loads(ENGINE_KEY.sub("engines/{ENGINE_KEY}", text))


def policy_documents(run: ProgramRun) -> dict[str, dict]:
    """'<type>/<resource name>' -> the parsed policy document, for every policy the run registers."""
    docs: dict[str, dict] = {}
    for r in run.resources:
        field = POLICY_INPUTS.get(r.type)
        if field is None or r.name.endswith(VERBATIM_UPSTREAM):
            continue
        text = r.inputs.get(field)
        if not text:
            continue
        key = f"{r.type.split(':')[1].replace('/', '.')}/{r.name}"
        assert key not in docs, f"two resources map to the golden file {key}"
        docs[key] = _normalized(text)
    return docs


def _golden_path(stack: str, key: str) -> Path:
    return GOLDEN_DIR / stack / f"{key}.json"


GOLDEN_SETS = stack_files() + sorted(VARIANTS)


@pytest.fixture(scope="module", params=GOLDEN_SETS)
def golden(request) -> tuple[str, ProgramRun]:
    """(golden directory name, the run it holds the documents of): each stack file, each variant."""
    return request.param, stack_run_for(request.param)


def test_every_policy_matches_its_golden_file(golden):
    name, run = golden
    docs = policy_documents(run)
    assert len(docs) >= 10
    if UPDATE:
        target = GOLDEN_DIR / name
        for old in target.rglob("*.json"):
            old.unlink()
        for key, doc in docs.items():
            path = _golden_path(name, key)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    missing = [k for k in docs if not _golden_path(name, k).exists()]
    assert not missing, f"policies without a golden file: {missing}; {REGENERATE}"
    different = [k for k, doc in docs.items() if json.loads(_golden_path(name, k).read_text()) != doc]
    assert not different, f"policies differ from their golden files: {different}; {REGENERATE}"


def test_no_golden_file_is_stale(golden):
    name, run = golden
    docs = policy_documents(run)
    stale = [
        str(p.relative_to(GOLDEN_DIR))
        for p in (GOLDEN_DIR / name).rglob("*.json")
        if p.relative_to(GOLDEN_DIR / name).with_suffix("").as_posix() not in docs
    ]
    assert not stale, f"golden files no policy matches any more: {stale}; {REGENERATE}"


def test_every_stack_has_golden_files():
    assert sorted(p.name for p in GOLDEN_DIR.iterdir() if p.is_dir()) == sorted(GOLDEN_SETS), REGENERATE


def test_the_opt_in_roles_have_golden_files():
    """Alertmanager's SNS publisher (trust and policy), the alerts topic's policy, the CloudWatch agent's trust."""
    names = {p.stem for p in (GOLDEN_DIR / "vllm-opt-ins").rglob("*.json")}
    for suffix in ("-alertmanager", "-alertmanager-inline", "-alerts", "-cloudwatch-agent"):
        assert any(n.endswith(suffix) for n in names), (suffix, sorted(names))


@pytest.mark.parametrize("kind", ["karpenter-controller-inline", "karpenter-controller"])
def test_karpenter_goldens_exist(kind):
    """The controller policy and its trust are the ones issue 9 names: make sure they are covered."""
    for stack in stack_files():
        matches = [p for p in (GOLDEN_DIR / stack).rglob("*.json") if p.stem.endswith(kind)]
        assert matches, (stack, kind)
