"""Security properties of the control plane, nodes and IAM, checked on every stack file.

- No API endpoint admits the internet (0.0.0.0/0, or ranges that together cover more public
  addresses than one /8: components/config/addresses.py) unless `cluster.allowPublicEndpointFromAnywhere`
  says so; the private endpoint is always on.
- IMDS hop limit 1 on every launch template and every EC2NodeClass.
- Every Pod Identity trust names one cluster, one namespace and one service account; every
  IRSA trust one namespace/service account and the sts audience.
- The identity that created the cluster never gets a second admin access entry (EKS bootstraps one),
  whoever runs `pulumi up` later.
Bad configs fail before any resource is registered, naming the key and the fix.
"""

from __future__ import annotations

import json

import pytest

from components.config import ConfigError
from components.config.addresses import admits_internet
from components.observability.builders import container_insights
from components.platform.builders.cluster import admins_without_creator, caller_role_arn
from tests.unit.conftest import stack_run_for
from tests.unit.harness import ACCOUNT_ID, ProgramRun, run_program
from tests.unit.test_network import _cfg

EKS = "eks:index:Cluster"
ROLE = "aws:iam/role:Role"
CALLER = f"arn:aws:iam::{ACCOUNT_ID}:user/ci"  # what the harness's getCallerIdentity answers


def _assert_fails_before_resources(overrides: dict, key: str, *fragments: str, stack: str = "dev") -> str:
    run = run_program(stack, overrides=overrides, check=False)
    assert isinstance(run.error, ConfigError), f"{overrides} did not fail config validation: {run.error!r}"
    text = str(run.error)
    assert f"tritonllm:{key}:" in text, text
    for fragment in fragments:
        assert fragment in text, text
    assert not [r for r in run.resources if r.custom], "resources were registered before validation failed"
    return text


# --------------------------------------------------------------------------- API endpoint


def test_no_api_endpoint_admits_the_internet(stack_run):
    cfg = _cfg(stack_run)
    eks = stack_run.one(EKS).inputs
    assert eks["endpointPrivateAccess"] is True  # always: nodes and in-VPC deployers use it
    if eks["endpointPublicAccess"]:
        cidrs = eks["publicAccessCidrs"]
        assert cidrs, "public endpoint without CIDRs admits everyone"
        if not cfg.cluster.allow_public_endpoint_from_anywhere:
            assert not admits_internet(cidrs), cidrs
    else:
        assert not eks.get("publicAccessCidrs")


def test_default_endpoint_is_private_only():
    run = run_program("vllm", overrides={"cluster": None})
    eks = run.one(EKS).inputs
    assert eks["endpointPublicAccess"] is False and eks["endpointPrivateAccess"] is True
    assert "publicAccessCidrs" not in eks


def test_public_endpoint_to_listed_cidrs_only():
    run = run_program(
        "dev", overrides={"cluster.endpointPublicAccess": True, "cluster.endpointPublicAccessCidrs": ["203.0.113.7/32"]}
    )
    eks = run.one(EKS).inputs
    assert eks["endpointPublicAccess"] is True and eks["publicAccessCidrs"] == ["203.0.113.7/32"]
    assert eks["endpointPrivateAccess"] is True


@pytest.mark.parametrize("cidrs", [["0.0.0.0/0"], ["0.0.0.0/1", "128.0.0.0/1"], ["203.0.113.7/32", "0.0.0.0/0"]])
def test_internet_wide_endpoint_needs_the_explicit_key(cidrs):
    overrides = {"cluster.endpointPublicAccess": True, "cluster.endpointPublicAccessCidrs": cidrs}
    _assert_fails_before_resources(
        overrides, "cluster.endpointPublicAccessCidrs", "allowPublicEndpointFromAnywhere: true"
    )
    run = run_program("dev", overrides={**overrides, "cluster.allowPublicEndpointFromAnywhere": True})
    assert run.one(EKS).inputs["publicAccessCidrs"] == cidrs


def test_public_endpoint_without_cidrs_fails_before_any_resource():
    _assert_fails_before_resources(
        {"cluster.endpointPublicAccess": True}, "cluster.endpointPublicAccessCidrs", "endpointPublicAccess false"
    )


# --------------------------------------------------------------------------- IMDS


def test_hop_limit_one_on_every_launch_template_and_node_class(stack_run):
    templates = stack_run.of_type("aws:ec2/launchTemplate:LaunchTemplate")
    classes = stack_run.manifests("EC2NodeClass")
    assert templates and classes
    for lt in templates:
        options = lt.inputs["metadataOptions"]
        assert options["httpTokens"] == "required" and options["httpPutResponseHopLimit"] == 1, lt.name
    for nc in classes:
        options = nc["spec"]["metadataOptions"]
        assert options["httpTokens"] == "required" and options["httpPutResponseHopLimit"] == 1, nc["metadata"]
    # pulumi-eks makes no node group (and so no launch template of its own) here.
    assert stack_run.one(EKS).inputs["skipDefaultNodeGroup"] is True


def test_controllers_get_what_they_read_from_imds_from_their_values(stack_run):
    cfg = _cfg(stack_run)
    karpenter = stack_run.helm_release("oci://public.ecr.aws/karpenter/karpenter").inputs["values"]
    assert {"name": "AWS_REGION", "value": cfg.region} in karpenter["controller"]["env"]
    lbc = stack_run.helm_release("aws-load-balancer-controller").inputs["values"]
    vpc = stack_run.within("tritonllm:platform:Network").one("aws:ec2/vpc:Vpc")
    assert lbc["region"] == cfg.region and lbc["vpcId"] == vpc.id


# --------------------------------------------------------------------------- trust policies


# Add-ons whose pods do not run in kube-system: the association an add-on makes is in its own namespace.
ADDON_NAMESPACES = {container_insights.ADDON_NAME: container_insights.NAMESPACE}


def _associations(run: ProgramRun) -> dict[str, set[tuple[str, str]]]:
    """role ARN -> {(namespace, service account)} from Pod Identity associations (direct or add-on)."""
    found: dict[str, set[tuple[str, str]]] = {}
    for a in run.of_type("aws:eks/podIdentityAssociation:PodIdentityAssociation"):
        found.setdefault(a.inputs["roleArn"], set()).add((a.inputs["namespace"], a.inputs["serviceAccount"]))
    for addon in run.of_type("aws:eks/addon:Addon"):
        namespace = ADDON_NAMESPACES.get(addon.inputs["addonName"], "kube-system")
        for a in addon.inputs.get("podIdentityAssociations") or []:
            found.setdefault(a["roleArn"], set()).add((namespace, a["serviceAccount"]))
    return found


def _single(value) -> str:
    assert isinstance(value, str) or (isinstance(value, list) and len(value) == 1), value
    value = value if isinstance(value, str) else value[0]
    assert "*" not in value and "?" not in value, value
    return value


def test_every_pod_identity_trust_is_one_cluster_namespace_and_service_account(stack_or_variant_run):
    stack_run = stack_or_variant_run
    cluster_arn = f"arn:aws:eks:{_cfg(stack_run).region}:{ACCOUNT_ID}:cluster/{_cfg(stack_run).name}"
    associations = _associations(stack_run)
    checked = 0
    for role in stack_run.of_type(ROLE):
        for st in json.loads(role.inputs["assumeRolePolicy"])["Statement"]:
            if st.get("Principal", {}).get("Service") != "pods.eks.amazonaws.com":
                continue
            assert st["Effect"] == "Allow" and set(st["Action"]) == {"sts:AssumeRole", "sts:TagSession"}
            assert set(st["Condition"]) == {"StringEquals"}, (role.name, st["Condition"])  # no StringLike
            cond = st["Condition"]["StringEquals"]
            assert _single(cond["aws:SourceAccount"]) == ACCOUNT_ID
            assert _single(cond["aws:RequestTag/eks-cluster-arn"]) == cluster_arn, role.name
            scope = (
                _single(cond["aws:RequestTag/kubernetes-namespace"]),
                _single(cond["aws:RequestTag/kubernetes-service-account"]),
            )
            # The trust names exactly the one service account the role is associated with.
            assert associations.get(role.outputs["arn"]) == {scope}, (role.name, scope)
            checked += 1
    # Karpenter, LBC, EBS CSI, EFS CSI controller + node, and per model reader/builder roles.
    assert checked >= 5
    assert all(
        any(
            json.loads(r.inputs["assumeRolePolicy"])["Statement"][0].get("Principal", {}).get("Service")
            == "pods.eks.amazonaws.com"
            for r in stack_run.of_type(ROLE)
            if r.outputs["arn"] == arn
        )
        for arn in associations
    ), "an association points at a role without a Pod Identity trust"


def test_every_irsa_trust_is_one_service_account_with_the_sts_audience():
    run = stack_run_for("vllm")  # vLLM pods use IRSA (tritonserver's S3 client predates Pod Identity)
    provider = run.one(EKS).outputs["oidcProviderArn"]
    issuer = run.one(EKS).outputs["oidcProviderUrl"].removeprefix("https://")
    annotated = {
        (m["metadata"]["namespace"], m["metadata"]["name"]): m["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
        for m in run.manifests("ServiceAccount")
        if "eks.amazonaws.com/role-arn" in (m["metadata"].get("annotations") or {})
    }
    checked = 0
    for role in run.of_type(ROLE):
        for st in json.loads(role.inputs["assumeRolePolicy"])["Statement"]:
            if "Federated" not in st.get("Principal", {}):
                continue
            assert st["Principal"]["Federated"] == provider and st["Action"] == "sts:AssumeRoleWithWebIdentity"
            assert set(st["Condition"]) == {"StringEquals"}, st["Condition"]
            cond = st["Condition"]["StringEquals"]
            assert set(cond) == {f"{issuer}:sub", f"{issuer}:aud"}
            assert _single(cond[f"{issuer}:aud"]) == "sts.amazonaws.com"
            _, _, namespace, name = _single(cond[f"{issuer}:sub"]).split(":")
            assert annotated[(namespace, name)] == role.outputs["arn"]
            checked += 1
    assert checked == len(_cfg(run).models)


# --------------------------------------------------------------------------- deploying identity


def test_the_deploying_identity_gets_no_second_admin_entry():
    other = f"arn:aws:iam::{ACCOUNT_ID}:role/platform-admins"
    run = run_program("dev", overrides={"cluster.adminPrincipalArns": [CALLER, other]})
    entries = run.one(EKS).inputs["accessEntries"]
    assert [e["principalArn"] for e in entries.values()] == [other]


def test_caller_arn_forms():
    role = f"arn:aws:iam::{ACCOUNT_ID}:role/Admin"
    assert caller_role_arn(f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/Admin/alice@example.com") == role
    assert caller_role_arn(CALLER) == CALLER
    # STS drops the role path: a configured ARN with a path is the same principal.
    assert admins_without_creator(
        [f"arn:aws:iam::{ACCOUNT_ID}:role/teams/Admin", CALLER], f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/Admin/ci"
    ) == [CALLER]
    assert admins_without_creator([role], f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/Other/ci") == [role]
    assert admins_without_creator([role], "arn:aws:sts::210987654321:assumed-role/Admin/ci") == [role]


# --------------------------------------------------------------------------- who runs `pulumi up`

LAPTOP = f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/Admin/alice@example.com"  # created the cluster
CI = f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/github-deploy/GitHubActions"  # updates it later
ADMINS = [
    f"arn:aws:iam::{ACCOUNT_ID}:role/Admin",
    f"arn:aws:iam::{ACCOUNT_ID}:role/github-deploy",
    f"arn:aws:iam::{ACCOUNT_ID}:role/platform-admins",
]


def _admin_entries(run: ProgramRun) -> list[str]:
    """The principals the program gives access entries (pulumi-eks creates one per accessEntries key)."""
    entries = run.one(EKS).inputs["accessEntries"]
    principals = [e["principalArn"] for e in entries.values()]
    assert len(set(principals)) == len(principals), f"a principal twice: {principals}"
    return sorted(principals)


def test_access_entries_do_not_depend_on_who_runs_pulumi_up():
    """EKS gave the bootstrap admin entry to the identity that created the cluster (pulumi-eks 4.4.0
    nodejs/eks/cluster/cluster.ts: accessConfig.bootstrapClusterCreatorAdminPermissions: true, ignored
    afterwards). Created from a laptop, updated by the CI role, then by the laptop again: the same
    entries each time, none for the creator (EKS's own entry; a second one is a 409) and the CI role
    keeps its entry (removing it would lock CI out)."""
    overrides = {"cluster.adminPrincipalArns": ADMINS}
    created = run_program("dev", overrides=overrides, caller_arn=LAPTOP)
    expected = sorted(a for a in ADMINS if not a.endswith(":role/Admin"))
    assert _admin_entries(created) == expected
    by_ci = run_program("dev", overrides=overrides, caller_arn=CI, previous=created)
    assert _admin_entries(by_ci) == expected
    again = run_program("dev", overrides=overrides, caller_arn=LAPTOP, previous=by_ci)
    assert _admin_entries(again) == expected


def test_a_stack_first_deployed_by_ci_keeps_cis_bootstrap_entry():
    overrides = {"cluster.adminPrincipalArns": ADMINS}
    created = run_program("dev", overrides=overrides, caller_arn=CI)
    later = run_program("dev", overrides=overrides, caller_arn=LAPTOP, previous=created)
    expected = sorted(a for a in ADMINS if not a.endswith(":role/github-deploy"))
    assert _admin_entries(created) == _admin_entries(later) == expected


# --------------------------------------------------------------------------- who reaches the private endpoint

INGRESS_RULE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"


def _endpoint_rules(run: ProgramRun) -> list:
    """Ingress rules on the security group the private endpoint's ENIs carry (EKS's cluster security group)."""
    cluster_sg = run.one(EKS).outputs["clusterSecurityGroupId"]
    return [r for r in run.of_type(INGRESS_RULE) if r.inputs["securityGroupId"] == cluster_sg]


def test_private_endpoint_admits_only_the_cluster_unless_configured(stack_run):
    """No default security groups: the endpoint carries only EKS's cluster security group, which admits
    itself (EKS User Guide sec-group-reqs); the program adds nothing to it unless asked."""
    assert stack_run.one(EKS).inputs["skipDefaultSecurityGroups"] is True
    cfg = _cfg(stack_run)
    expected = len(cfg.cluster.endpoint_private_access_cidrs) + len(
        cfg.cluster.endpoint_private_access_security_group_ids
    )
    assert len(_endpoint_rules(stack_run)) == expected


def test_private_endpoint_rules_admit_the_listed_sources_on_443_only():
    run = run_program(
        "dev",
        overrides={
            "cluster.endpointPrivateAccessCidrs": ["10.8.0.0/16", "fd00:1::/64"],
            "cluster.endpointPrivateAccessSecurityGroupIds": ["sg-0123456789abcdef0"],
        },
    )
    rules = {r.name: r.inputs for r in _endpoint_rules(run)}
    sources = sorted(r.get("cidrIpv4") or r.get("cidrIpv6") or r["referencedSecurityGroupId"] for r in rules.values())
    assert sources == ["10.8.0.0/16", "fd00:1::/64", "sg-0123456789abcdef0"]
    for name, rule in rules.items():
        assert (rule["ipProtocol"], rule["fromPort"], rule["toPort"]) == ("tcp", 443, 443), name
    # the names come from the sources: reordering the config renames (replaces) nothing
    reordered = run_program(
        "dev",
        overrides={
            "cluster.endpointPrivateAccessCidrs": ["fd00:1::/64", "10.8.0.0/16"],
            "cluster.endpointPrivateAccessSecurityGroupIds": ["sg-0123456789abcdef0"],
        },
    )
    assert sorted(r.name for r in _endpoint_rules(reordered)) == sorted(rules)
