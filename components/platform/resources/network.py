"""Network: a VPC over `network.azCount` AZs with public, private and pod subnets.

Layout (pure function `subnet_layout`): the primary CIDR is cut into eight equal
blocks; blocks 0..n-1 are the private (node) subnets, the last block is cut into
eight public subnets. The secondary `podCidr` is cut into one pod subnet per AZ
for VPC CNI custom networking, so pods do not eat node-subnet addresses.
Nodes only ever go in private subnets: only those carry the Karpenter discovery
tag, and the system node group is given only those.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.config import NetworkConfig
from components.platform.builders.network import (
    nat_subnet_index,
    pick_zones,
    subnet_layout,
    subnet_tags,
)
from components.tokens import component_type


@dataclass(frozen=True)
class NetworkArgs:
    network: NetworkConfig
    cluster_name: str  # subnets carry the EKS cluster's discovery and ELB tags


class Network(pulumi.ComponentResource):
    """VPC, subnets, IGW, NAT, route tables.

    Attributes: vpc_id, private_subnet_ids, public_subnet_ids, pod_subnet_ids,
    availability_zones (Outputs of lists), private_subnets / public_subnets /
    pod_subnets (per-AZ aws.ec2.Subnet, index = AZ index), layout (SubnetLayout),
    vpc_cidr, pod_cidr.
    """

    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(component_type("platform", "Network"), name, None, opts)
        net = args.network
        cluster_name = args.cluster_name
        self.vpc_cidr, self.pod_cidr = net.vpc_cidr, net.pod_cidr
        self.layout = subnet_layout(net.vpc_cidr, net.pod_cidr, net.az_count)
        child = pulumi.ResourceOptions(parent=self)

        zones = aws.get_availability_zones_output(
            state="available",
            filters=[{"name": "opt-in-status", "values": ["opt-in-not-required"]}],  # no Local/Wavelength zones
            opts=pulumi.InvokeOptions(parent=self),
        ).names.apply(lambda names: pick_zones(names, net.az_count))
        self.availability_zones = zones

        self.vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=net.vpc_cidr,
            enable_dns_hostnames=True,  # EKS private endpoint and EFS mount DNS need both
            enable_dns_support=True,
            tags={"Name": f"{name}-vpc"},
            opts=child,
        )
        pod_cidr_block = aws.ec2.VpcIpv4CidrBlockAssociation(
            f"{name}-pod-cidr", vpc_id=self.vpc.id, cidr_block=net.pod_cidr, opts=child
        )
        igw = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=self.vpc.id, tags={"Name": f"{name}-igw"}, opts=child)
        public_rt = aws.ec2.RouteTable(
            f"{name}-public",
            vpc_id=self.vpc.id,
            routes=[{"cidr_block": "0.0.0.0/0", "gateway_id": igw.id}],
            tags={"Name": f"{name}-public"},
            opts=child,
        )

        self.public_subnets: list[aws.ec2.Subnet] = []
        self.private_subnets: list[aws.ec2.Subnet] = []
        self.pod_subnets: list[aws.ec2.Subnet] = []
        nat_gateways: list[aws.ec2.NatGateway] = []
        # What a private subnet needs before an instance launched in it reaches the internet: its association
        # with the route table whose default route is the NAT gateway (before it, the VPC's main table: local
        # routes only). Resources that launch instances themselves (NodeImageCache) wait for these.
        self.private_egress: list[pulumi.Resource] = []
        for i in range(net.az_count):
            zone = zones[i]
            public = aws.ec2.Subnet(
                f"{name}-public-{i}",
                vpc_id=self.vpc.id,
                availability_zone=zone,
                cidr_block=self.layout.public[i],
                map_public_ip_on_launch=False,  # only load balancers and NAT live here; they get EIPs themselves
                tags=subnet_tags("public", cluster_name, f"{name}-public-{i}"),
                opts=child,
            )
            aws.ec2.RouteTableAssociation(
                f"{name}-public-{i}", subnet_id=public.id, route_table_id=public_rt.id, opts=child
            )
            self.public_subnets.append(public)
            if i == 0 or net.nat_gateways == "perAz":
                eip = aws.ec2.Eip(
                    f"{name}-nat-{i}",
                    domain="vpc",
                    tags={"Name": f"{name}-nat-{i}"},
                    opts=pulumi.ResourceOptions(parent=self, depends_on=[igw]),
                )
                nat_gateways.append(
                    aws.ec2.NatGateway(
                        f"{name}-nat-{i}",
                        allocation_id=eip.id,
                        subnet_id=public.id,
                        tags={"Name": f"{name}-nat-{i}"},
                        opts=pulumi.ResourceOptions(parent=self, depends_on=[igw]),
                    )
                )

        for i in range(net.az_count):
            zone = zones[i]
            private_rt = aws.ec2.RouteTable(
                f"{name}-private-{i}",
                vpc_id=self.vpc.id,
                routes=[
                    {
                        "cidr_block": "0.0.0.0/0",
                        "nat_gateway_id": nat_gateways[nat_subnet_index(net.nat_gateways, i)].id,
                    }
                ],
                tags={"Name": f"{name}-private-{i}"},
                opts=child,
            )
            private = aws.ec2.Subnet(
                f"{name}-private-{i}",
                vpc_id=self.vpc.id,
                availability_zone=zone,
                cidr_block=self.layout.private[i],
                map_public_ip_on_launch=False,
                tags=subnet_tags("private", cluster_name, f"{name}-private-{i}"),
                opts=child,
            )
            pods = aws.ec2.Subnet(
                f"{name}-pods-{i}",
                vpc_id=pod_cidr_block.vpc_id,
                availability_zone=zone,
                cidr_block=self.layout.pods[i],
                map_public_ip_on_launch=False,
                tags=subnet_tags("pods", cluster_name, f"{name}-pods-{i}"),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[pod_cidr_block]),
            )
            for subnet, kind in ((private, "private"), (pods, "pods")):
                association = aws.ec2.RouteTableAssociation(
                    f"{name}-{kind}-{i}", subnet_id=subnet.id, route_table_id=private_rt.id, opts=child
                )
                if kind == "private":
                    self.private_egress.append(association)
            self.private_subnets.append(private)
            self.pod_subnets.append(pods)

        self.vpc_id = self.vpc.id
        self.private_subnet_ids = pulumi.Output.all(*[s.id for s in self.private_subnets])
        self.public_subnet_ids = pulumi.Output.all(*[s.id for s in self.public_subnets])
        self.pod_subnet_ids = pulumi.Output.all(*[s.id for s in self.pod_subnets])
        self.register_outputs(
            {
                "vpc_id": self.vpc_id,
                "private_subnet_ids": self.private_subnet_ids,
                "public_subnet_ids": self.public_subnet_ids,
                "pod_subnet_ids": self.pod_subnet_ids,
                "availability_zones": self.availability_zones,
            }
        )
