"""Network: subnet layout (pure) and the VPC the program builds for every stack."""

from __future__ import annotations

import ipaddress
import itertools

import pytest

from components.config import parse_stack_config
from components.platform.builders.network import (
    DISCOVERY_TAG,
    ELB_ROLE_TAG,
    INTERNAL_ELB_ROLE_TAG,
    SUBNET_ROLE_TAG,
    cluster_tag,
    nat_subnet_index,
    pick_zones,
    subnet_layout,
    subnet_tags,
)
from tests.unit.harness import ProgramRun, run_program

SUBNET = "aws:ec2/subnet:Subnet"
NETWORK = "tritonllm:platform:Network"
CLUSTER = "tritonllm:platform:Cluster"


def _cfg(run: ProgramRun):
    raw = {k.split(":", 1)[1]: v for k, v in run.config.items() if k.startswith("tritonllm:")}
    return parse_stack_config(raw, {"hfToken"})


def _subnets(run: ProgramRun, role: str):
    return [r for r in run.within(NETWORK).of_type(SUBNET) if r.inputs["tags"][SUBNET_ROLE_TAG] == role]


# --------------------------------------------------------------------------- pure


@pytest.mark.parametrize("vpc_cidr,pod_cidr", [("10.0.0.0/16", "100.64.0.0/16"), ("10.9.0.0/20", "100.64.0.0/20")])
@pytest.mark.parametrize("az_count", [2, 3, 4, 6])
def test_layout_is_disjoint_and_inside_its_cidrs(vpc_cidr, pod_cidr, az_count):
    layout = subnet_layout(vpc_cidr, pod_cidr, az_count)
    assert len(layout.private) == len(layout.public) == len(layout.pods) == az_count
    nets = [ipaddress.ip_network(c) for c in layout.private + layout.public + layout.pods]
    for a, b in itertools.combinations(nets, 2):
        assert not a.overlaps(b), (a, b)
    for c in layout.private + layout.public:
        assert ipaddress.ip_network(c).subnet_of(ipaddress.ip_network(vpc_cidr))
    for c in layout.pods:
        assert ipaddress.ip_network(c).subnet_of(ipaddress.ip_network(pod_cidr))


def test_private_subnets_are_bigger_than_public_ones():
    layout = subnet_layout("10.0.0.0/16", "100.64.0.0/16", 3)
    assert layout.private == ["10.0.0.0/19", "10.0.32.0/19", "10.0.64.0/19"]
    assert layout.public == ["10.0.224.0/22", "10.0.228.0/22", "10.0.232.0/22"]
    assert layout.pods == ["100.64.0.0/18", "100.64.64.0/18", "100.64.128.0/18"]


def test_subnet_tags_by_role():
    public, private, pods = (subnet_tags(role, "c1", "n") for role in ("public", "private", "pods"))
    assert public[ELB_ROLE_TAG] == "1" and INTERNAL_ELB_ROLE_TAG not in public and DISCOVERY_TAG not in public
    assert private[INTERNAL_ELB_ROLE_TAG] == "1" and private[DISCOVERY_TAG] == "c1" and ELB_ROLE_TAG not in private
    assert DISCOVERY_TAG not in pods and ELB_ROLE_TAG not in pods and INTERNAL_ELB_ROLE_TAG not in pods
    for tags in (public, private, pods):
        assert tags[cluster_tag("c1")] == "shared"
    with pytest.raises(ValueError):
        subnet_tags("nodes", "c1", "n")


def test_pick_zones_names_the_key_when_the_region_is_too_small():
    assert pick_zones(["a", "b", "c", "d"], 3) == ["a", "b", "c"]
    with pytest.raises(ValueError, match="network.azCount"):
        pick_zones(["a", "b"], 3)


def test_nat_index():
    assert [nat_subnet_index("single", i) for i in range(3)] == [0, 0, 0]
    assert [nat_subnet_index("perAz", i) for i in range(3)] == [0, 1, 2]


# --------------------------------------------------------------------------- program, every stack


def test_vpc_and_secondary_cidr_follow_config(stack_run):
    cfg = _cfg(stack_run)
    net = stack_run.within(NETWORK)
    vpc = net.one("aws:ec2/vpc:Vpc")
    assert vpc.inputs["cidrBlock"] == cfg.network.vpc_cidr
    assert vpc.inputs["enableDnsHostnames"] and vpc.inputs["enableDnsSupport"]
    assoc = net.one("aws:ec2/vpcIpv4CidrBlockAssociation:VpcIpv4CidrBlockAssociation")
    assert assoc.inputs["cidrBlock"] == cfg.network.pod_cidr and assoc.inputs["vpcId"] == vpc.id
    assert stack_run.outputs["vpcId"] == vpc.id


def test_one_subnet_per_role_per_az_with_the_right_tags(stack_run):
    cfg = _cfg(stack_run)
    layout = subnet_layout(cfg.network.vpc_cidr, cfg.network.pod_cidr, cfg.network.az_count)
    for role, cidrs in (("public", layout.public), ("private", layout.private), ("pods", layout.pods)):
        subnets = _subnets(stack_run, role)
        assert sorted(s.inputs["cidrBlock"] for s in subnets) == sorted(cidrs)
        assert len({s.inputs["availabilityZone"] for s in subnets}) == cfg.network.az_count
        for s in subnets:
            assert s.inputs["tags"] == subnet_tags(role, cfg.name, s.inputs["tags"]["Name"])
            assert not s.inputs.get("mapPublicIpOnLaunch")
    assert len(stack_run.within(NETWORK).of_type(SUBNET)) == 3 * cfg.network.az_count


def test_routes_public_via_igw_private_and_pods_via_nat(stack_run):
    cfg = _cfg(stack_run)
    net = stack_run.within(NETWORK)
    igw = net.one("aws:ec2/internetGateway:InternetGateway")
    nats = {n.id for n in net.of_type("aws:ec2/natGateway:NatGateway")}
    public_ids = {s.id for s in _subnets(stack_run, "public")}
    assert len(nats) == (cfg.network.az_count if cfg.network.nat_gateways == "perAz" else 1)
    for n in net.of_type("aws:ec2/natGateway:NatGateway"):
        assert n.inputs["subnetId"] in public_ids
    tables = {t.id: t for t in net.of_type("aws:ec2/routeTable:RouteTable")}
    assoc = {
        a.inputs["subnetId"]: tables[a.inputs["routeTableId"]]
        for a in net.of_type("aws:ec2/routeTableAssociation:RouteTableAssociation")
    }
    for s in net.of_type(SUBNET):
        route = assoc[s.id].inputs["routes"][0]
        assert route["cidrBlock"] == "0.0.0.0/0"
        if s.inputs["tags"][SUBNET_ROLE_TAG] == "public":
            assert route["gatewayId"] == igw.id
        else:
            assert route["natGatewayId"] in nats


def test_per_az_nat_gives_every_az_its_own_gateway(dev_run):
    run = run_program("dev", overrides={"network.natGateways": "perAz"}).within(NETWORK)
    nats = run.of_type("aws:ec2/natGateway:NatGateway")
    assert len(nats) == 3 and len({n.inputs["subnetId"] for n in nats}) == 3
    assert len(dev_run.within(NETWORK).of_type("aws:ec2/natGateway:NatGateway")) == 1


def test_a_region_with_too_few_azs_fails_naming_az_count():
    run = run_program("dev", available_zones=2, check=False)
    assert isinstance(run.error, ValueError) and "network.azCount" in str(run.error)


def test_az_count_drives_the_number_of_subnets():
    run = run_program("vllm", overrides={"network.azCount": 2})
    assert len(run.within(NETWORK).of_type(SUBNET)) == 6
    assert len(run.within("tritonllm:platform:Storage").of_type("aws:efs/mountTarget:MountTarget")) == 2


def test_nodes_only_ever_land_in_private_subnets(stack_run):
    private = {s.id for s in _subnets(stack_run, "private")}
    ng = stack_run.within(CLUSTER).one("aws:eks/nodeGroup:NodeGroup")
    assert set(ng.inputs["subnetIds"]) == private
    # Karpenter: every subnet selector term matches exactly the private subnets.
    for node_class in stack_run.manifests("EC2NodeClass"):
        for term in node_class["spec"]["subnetSelectorTerms"]:
            if "id" in term:  # a single-zone pool (multi-node): one of the private subnets
                assert term["id"] in private
                continue
            matched = {
                s.id
                for s in stack_run.within(NETWORK).of_type(SUBNET)
                if all(s.inputs["tags"].get(k) == v for k, v in term["tags"].items())
            }
            assert matched == private


def test_cluster_gets_private_and_public_subnets_of_this_vpc(stack_run):
    eks = stack_run.within(CLUSTER).one("eks:index:Cluster")
    assert eks.inputs["vpcId"] == stack_run.within(NETWORK).one("aws:ec2/vpc:Vpc").id
    assert set(eks.inputs["privateSubnetIds"]) == {s.id for s in _subnets(stack_run, "private")}
    assert set(eks.inputs["publicSubnetIds"]) == {s.id for s in _subnets(stack_run, "public")}
