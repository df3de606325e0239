"""Gateway: AWS Load Balancer Controller + NGINX Gateway Fabric behind one NLB.

Everything here is registered from the pure builders in `components.gateway_manifests`;
read that module for the routing scheme (what clients must send).

Why `pulumi destroy` leaves no load balancer behind
---------------------------------------------------
The NLB, its target groups, its security group and the rules it adds to the targets'
security group are created by the AWS Load Balancer Controller (LBC), outside Pulumi. The
controller deletes them only while it runs, when the Service they belong to is deleted:
the Service carries the LBC's finalizer `service.k8s.aws/resources`, so Kubernetes keeps
the Service until the controller has removed the AWS resources and dropped the finalizer.

So the one Service that becomes an NLB is a resource this component owns (NGF is told to
make its own NGINX Service ClusterIP), and it `depends_on` the LBC Helm release. Pulumi
destroys in reverse dependency order, and the Kubernetes provider's delete waits until the
object is really gone (finalizers included), so on destroy:

    1. the Service is deleted; Pulumi waits while the still-running LBC deletes the NLB,
       target groups and security groups and releases the finalizer;
    2. only then the LBC release, its Pod Identity association, its IAM policy and role
       (the association depends on the policy, so the controller keeps its permissions
       until it is gone), and after the release what it runs on (`controllers_depend_on`:
       system nodes, Pod Identity agent, CoreDNS, CNI);
    3. the cluster, then the VPC.

If the controller cannot clean up (say, it lost its permissions), the Service's deletion
times out and `pulumi destroy` fails loudly instead of leaking an NLB.

Nothing else here creates AWS resources besides the ACM certificate and Route 53 records
(gateway.tls.domain): NGF's own Service is ClusterIP, and the LBC's Service mutator webhook,
Ingress class and Gateway API controllers are turned off.
tests/unit/test_gateway_component.py checks this graph under mocks.

Why the NLB Service comes before the Gateway
--------------------------------------------
The LBC's pod readiness gate (namespace label `elbv2.k8s.aws/pod-readiness-gate-inject`) is
injected only into pods created while a TargetGroupBinding that selects them exists. NGF
creates the NGINX pods as soon as the Gateway exists, so the Service (whose creation Pulumi
awaits until the NLB, and with it the TargetGroupBinding, exists) is created first and the
Gateway depends on it. Otherwise the first NGINX pods never get the gate, and a rollout can
take pods out of service before the NLB has registered their replacements.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as kubernetes
import pulumi_tls

from components.catalog import versions
from components.config import GatewayConfig, NetworkConfig, StackIdentity, parse_api_keys
from components.gateway.builders import certificates
from components.gateway.builders import manifests as gm
from components.platform.builders import pod_security
from components.platform.builders.cluster import SYSTEM_NODE_SELECTOR
from components.platform.builders.karpenter import chart_source
from components.platform.resources import iam_roles
from components.platform.resources.k8s_objects import k8s_object
from components.tokens import component_type


@dataclass(frozen=True)
class GatewayArgs:
    stack: StackIdentity
    gateway: GatewayConfig
    network: NetworkConfig  # an internal gateway admits the VPC's own ranges
    k8s_provider: pulumi.ProviderResource
    cluster_name: pulumi.Input[str]
    vpc_id: pulumi.Input[str]
    system_node_selector: Mapping[str, str] | None = field(default_factory=lambda: dict(SYSTEM_NODE_SELECTOR))
    controllers_depend_on: Sequence[pulumi.Resource] = ()
    api_keys: pulumi.Input[str] | None = None  # secret; None: read tritonllm:apiKeys
    # The NLB's TCP idle timeout (plaintext gateway) when routes hold requests longer than
    # gateway.requestTimeoutSeconds (StackConfig.nlb_idle_timeout_seconds: minReplicas 0 cold starts).
    nlb_idle_timeout_seconds: int | None = None


def _validation_record_value(option: aws.acm.outputs.CertificateDomainValidationOption) -> str:
    """The DNS validation record's value (ACM sets it for every domain of a DNS-validated certificate)."""
    if option.resource_record_value is None:
        raise ValueError(f"ACM gave no DNS validation record value for {option.domain_name}")
    return option.resource_record_value


class Gateway(pulumi.ComponentResource):
    """The cluster's inference entry point: NLB -> NGINX Gateway Fabric -> Triton routes.

    Attributes for wiring:
      gateway_name, gateway_namespace  where Triton's HTTPRoute/GRPCRoute attach (parentRefs)
      route_namespace_labels           labels a model namespace needs for its routes to attach
      hostname                         the NLB's DNS name (Output[str])
      http_endpoint, grpc_endpoint     `http://<host>:8000`, `<host>:8001` (Output[str])
      load_balancer_service            the Service that is the NLB (depend on it to wait for the NLB)
    Triton should create its routes with `depends_on=[gateway]` so they are created after,
    and deleted before, the Gateway and the CRDs.

    controllers_depend_on: what the two controllers run on, e.g.
    `[cluster.system_node_group, *cluster.addons.values()]`. Besides making the Helm installs
    wait for nodes, this keeps the nodes, the Pod Identity agent (credentials), CoreDNS and the
    CNI alive on destroy until the LBC has deleted the NLB.
    """

    def __init__(
        self,
        name: str,
        args: GatewayArgs,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(component_type("gateway", "Gateway"), name, None, opts)
        k8s_provider, cluster_name, vpc_id = args.k8s_provider, args.cluster_name, args.vpc_id
        system_node_selector, controllers_depend_on, api_keys = (
            args.system_node_selector,
            args.controllers_depend_on,
            args.api_keys,
        )
        aws_opts = pulumi.ResourceOptions(parent=self)
        k8s_opts = pulumi.ResourceOptions(parent=self, provider=k8s_provider)

        self.gateway_name = gm.GATEWAY_NAME
        self.gateway_namespace = gm.NGF_NAMESPACE
        self.route_namespace_labels = gm.route_namespace_labels()
        self._auth = args.gateway.auth
        self.auth_enabled = args.gateway.auth.enabled
        # The htpasswd file, computed inside the secret Output: the keys never leave it in plain text.
        self._htpasswd: pulumi.Output[str] | None = None
        if self.auth_enabled:
            if api_keys is None:
                api_keys = pulumi.Config("tritonllm").get_secret("apiKeys")
            if api_keys is None:
                raise ValueError(
                    "gateway.auth.enabled needs the apiKeys secret (pulumi config set --secret tritonllm:apiKeys ...)"
                )
            self._htpasswd = pulumi.Output.secret(api_keys).apply(lambda raw: gm.htpasswd(parse_api_keys(raw)))

        # Gateway API CRDs (standard channel): the NGF chart ships only its own gateway.nginx.org CRDs.
        self.gateway_api_crds = kubernetes.yaml.v2.ConfigFile(
            f"{name}-gateway-api-crds", file=gm.GATEWAY_API_CRDS_URL, opts=k8s_opts
        )

        # --- AWS Load Balancer Controller: its own role through EKS Pod Identity.
        account_id = aws.get_caller_identity_output(opts=pulumi.InvokeOptions(parent=self)).account_id
        lbc_role, _ = iam_roles.pod_identity_role(
            f"{name}-lbc",
            cluster_name=cluster_name,
            namespace=gm.LBC_NAMESPACE,
            service_account=gm.LBC_SERVICE_ACCOUNT,
            account_id=account_id,
            associate=False,  # made below, after the policy: the controller keeps its permissions to the end
            opts=aws_opts,
        )
        lbc_policy = aws.iam.RolePolicy(
            f"{name}-lbc-policy",
            role=lbc_role.id,
            policy=json.dumps(gm.lbc_controller_policy_document(), separators=(",", ":")),
            opts=aws_opts,
        )
        lbc_association = aws.eks.PodIdentityAssociation(
            f"{name}-lbc",
            cluster_name=cluster_name,
            namespace=gm.LBC_NAMESPACE,
            service_account=gm.LBC_SERVICE_ACCOUNT,
            role_arn=lbc_role.arn,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[lbc_policy]),
        )
        self.lbc_release = kubernetes.helm.v3.Release(
            f"{name}-lbc",
            kubernetes.helm.v3.ReleaseArgs(
                name=gm.LBC_RELEASE_NAME,
                namespace=gm.LBC_NAMESPACE,
                values=gm.lbc_helm_values(
                    cluster_name=cluster_name,
                    region=args.stack.region,
                    vpc_id=vpc_id,
                    node_selector=system_node_selector,
                    # The same tags the AWS provider puts on everything else (__main__.py).
                    tags={"tritonllm:stack": pulumi.get_stack(), **args.stack.tags},
                ),
                timeout=600,
                **chart_source(versions.AWS_LOAD_BALANCER_CONTROLLER),
            ),
            # Credentials are injected at pod creation: the association must exist first. The
            # nodes and add-ons it runs on must outlive it on destroy (see module docstring).
            opts=pulumi.ResourceOptions.merge(
                k8s_opts, pulumi.ResourceOptions(depends_on=[lbc_association, *controllers_depend_on])
            ),
        )

        # --- NGINX Gateway Fabric (control plane; it provisions NGINX per Gateway).
        ngf_namespace = kubernetes.core.v1.Namespace(
            f"{name}-ngf",
            metadata={
                "name": gm.NGF_NAMESPACE,
                # The LBC keeps NGINX pods out of rotation until the NLB sees them healthy. Pod
                # Security: baseline enforced, restricted audited (NGF renders these pods, not us).
                "labels": {
                    "elbv2.k8s.aws/pod-readiness-gate-inject": "enabled",
                    **pod_security.namespace_labels("baseline", audit="restricted", warn="restricted"),
                },
            },
            opts=k8s_opts,
        )
        self.ngf_release = kubernetes.helm.v3.Release(
            f"{name}-ngf",
            kubernetes.helm.v3.ReleaseArgs(
                name=gm.NGF_RELEASE_NAME,
                namespace=ngf_namespace.metadata.name,
                values=gm.ngf_helm_values(gateway_name=self.gateway_name, node_selector=system_node_selector),
                timeout=600,
                **chart_source(versions.NGINX_GATEWAY_FABRIC),
            ),
            opts=pulumi.ResourceOptions.merge(
                k8s_opts, pulumi.ResourceOptions(depends_on=[self.gateway_api_crds, *controllers_depend_on])
            ),
        )

        # --- TLS: the ACM certificate the NLB's TLS listener presents: the user's (certificateArn), one
        # created and DNS-validated for the user's domain, or one from the program's own CA for a name
        # in a private hosted zone (components/gateway/builders/certificates.py says why that name).
        tls = args.gateway.tls
        certificate_arn: pulumi.Input[str] | None = None
        self.domain = tls.endpoint_domain(args.stack.name)
        self.ca_certificate: pulumi.Output[str] | None = None
        if tls.generated:
            assert self.domain is not None
            plan = certificates.gateway_plan(
                self.domain, stack_name=args.stack.name, validity_days=tls.certificate_validity_days
            )
            certificate_arn = self._generated_certificate(name, plan, args.stack, aws_opts)
        elif tls.enabled:
            certificate_arn = tls.certificate_arn or self._dns_validated_certificate(name, tls, aws_opts)

        # --- The NLB: a Service Pulumi owns, deleted (and awaited) while the LBC still runs, and
        # created before the Gateway, i.e. before NGF starts any NGINX pod (module docstring).
        service = pulumi.Output.from_input(certificate_arn).apply(
            lambda arn: gm.load_balancer_service_manifest(
                scheme=args.gateway.scheme,
                source_cidrs=args.gateway.source_cidrs(args.network),
                allow_any_source=args.gateway.dangerously_allow_any_source,
                certificate_arn=arn,
                ssl_policy=tls.ssl_policy,
                idle_timeout_seconds=None
                if tls.enabled
                else (args.nlb_idle_timeout_seconds or args.gateway.nlb_idle_timeout_seconds),
                gateway_name=self.gateway_name,
                namespace=self.gateway_namespace,
            )
        )
        self.load_balancer_service = kubernetes.core.v1.Service(
            f"{name}-nlb",
            metadata=service.apply(lambda m: m["metadata"]),
            spec=service.apply(lambda m: m["spec"]),
            opts=pulumi.ResourceOptions.merge(
                k8s_opts,
                pulumi.ResourceOptions(
                    depends_on=[self.lbc_release, ngf_namespace],
                    # Creating an NLB and deleting one (finalizer) each take minutes.
                    custom_timeouts=pulumi.CustomTimeouts(create="20m", delete="20m"),
                ),
            ),
        )

        # --- The Gateway (GatewayClass comes with the NGF chart) and its NGINX settings.
        after_ngf = pulumi.ResourceOptions.merge(
            k8s_opts,
            pulumi.ResourceOptions(depends_on=[self.ngf_release, self.gateway_api_crds, self.load_balancer_service]),
        )
        self.gateway = k8s_object(
            f"{name}-gateway", gm.gateway_manifest(self.gateway_name, self.gateway_namespace), after_ngf
        )
        after_gateway = pulumi.ResourceOptions.merge(after_ngf, pulumi.ResourceOptions(depends_on=[self.gateway]))
        timeout = args.gateway.request_timeout_seconds
        for suffix, manifest in (
            ("proxy-settings", gm.proxy_settings_policy_manifest(self.gateway_name, self.gateway_namespace, timeout)),
            ("grpc-timeouts", gm.grpc_timeouts_policy_manifest(self.gateway_name, self.gateway_namespace, timeout)),
            ("client-settings", gm.client_settings_policy_manifest(self.gateway_name, self.gateway_namespace)),
        ):
            k8s_object(f"{name}-{suffix}", manifest, after_gateway)

        self.hostname = self.load_balancer_service.status.apply(gm.load_balancer_hostname)
        # With TLS clients use the certificate's name: tls.domain (alias record below when the
        # zone is ours), else the NLB's name (the user points their DNS at it).
        public_host: pulumi.Output[str | None] = self.hostname
        if tls.enabled and tls.domain:
            public_host = pulumi.Output.from_input(tls.domain)
            if tls.hosted_zone_id:
                self._alias_record(name, tls.hosted_zone_id, tls.domain, args.stack.region, aws_opts)
        elif tls.generated and self.domain:
            # The generated certificate's name: a private hosted zone in the VPC, its apex aliased to the NLB.
            zone = aws.route53.Zone(
                f"{name}-endpoint",
                name=self.domain,
                comment=f"tritonllm {args.stack.name}: the inference endpoint's name (generated TLS certificate)",
                vpcs=[aws.route53.ZoneVpcArgs(vpc_id=args.vpc_id, vpc_region=args.stack.region)],
                force_destroy=True,
                opts=aws_opts,
            )
            self._alias_record(name, zone.zone_id, self.domain, args.stack.region, aws_opts)
            public_host = pulumi.Output.from_input(self.domain)
        self.http_endpoint = public_host.apply(lambda h: gm.endpoints(h, tls.enabled)["http"] if h else None)
        self.grpc_endpoint = public_host.apply(lambda h: gm.endpoints(h, tls.enabled)["grpc"] if h else None)
        self.tls = tls.enabled
        self.generated_ca = tls.generated  # clients verify against the stack output caCertificate
        self.api_key_command = (
            "pulumi config get tritonllm:apiKeys | python3 -c 'import json,sys; print(json.load(sys.stdin)[0])'"
            if self.auth_enabled
            else None
        )
        self.register_outputs(
            {
                "gatewayName": self.gateway_name,
                "gatewayNamespace": self.gateway_namespace,
                "hostname": self.hostname,
                "httpEndpoint": self.http_endpoint,
                "grpcEndpoint": self.grpc_endpoint,
            }
        )

    def _dns_validated_certificate(self, name: str, tls, aws_opts: pulumi.ResourceOptions) -> pulumi.Output[str]:
        """An ACM certificate for tls.domain, validated through records in tls.hosted_zone_id."""
        certificate = aws.acm.Certificate(
            f"{name}-endpoint", domain_name=tls.domain, validation_method="DNS", opts=aws_opts
        )
        options = certificate.domain_validation_options
        record = aws.route53.Record(
            f"{name}-endpoint-validation",
            zone_id=tls.hosted_zone_id,
            name=options.apply(lambda o: o[0].resource_record_name),
            type=options.apply(lambda o: o[0].resource_record_type),
            records=[options.apply(lambda o: _validation_record_value(o[0]))],
            ttl=300,
            allow_overwrite=True,
            opts=aws_opts,
        )
        validation = aws.acm.CertificateValidation(
            f"{name}-endpoint", certificate_arn=certificate.arn, validation_record_fqdns=[record.fqdn], opts=aws_opts
        )
        return validation.certificate_arn

    def _generated_certificate(
        self, name: str, plan: certificates.CertificatePlan, stack: StackIdentity, aws_opts: pulumi.ResourceOptions
    ) -> pulumi.Output[str]:
        """CA + server certificate from `plan` (pulumi_tls; private keys are Pulumi secrets), imported into ACM."""
        secret_opts = pulumi.ResourceOptions.merge(
            aws_opts, pulumi.ResourceOptions(additional_secret_outputs=["private_key_pem"])
        )

        def key(suffix: str, spec: certificates.KeySpec) -> pulumi_tls.PrivateKey:
            return pulumi_tls.PrivateKey(
                f"{name}-{suffix}",
                algorithm=spec.algorithm,
                rsa_bits=spec.rsa_bits,
                ecdsa_curve=spec.ecdsa_curve,
                opts=secret_opts,
            )

        ca_key = key("endpoint-ca-key", plan.ca_key)
        ca = pulumi_tls.SelfSignedCert(
            f"{name}-endpoint-ca",
            private_key_pem=ca_key.private_key_pem,
            is_ca_certificate=True,
            subject=pulumi_tls.SelfSignedCertSubjectArgs(**plan.ca_subject()),
            validity_period_hours=plan.ca_validity_hours,
            allowed_uses=list(plan.ca_uses),
            opts=aws_opts,
        )
        server_key = key("endpoint-key", plan.server_key)
        request = pulumi_tls.CertRequest(
            f"{name}-endpoint",
            private_key_pem=server_key.private_key_pem,
            subject=pulumi_tls.CertRequestSubjectArgs(**plan.server_subject()),
            dns_names=list(plan.dns_names),
            ip_addresses=list(plan.ip_addresses),
            opts=aws_opts,
        )
        server = pulumi_tls.LocallySignedCert(
            f"{name}-endpoint",
            cert_request_pem=request.cert_request_pem,
            ca_private_key_pem=ca_key.private_key_pem,
            ca_cert_pem=ca.cert_pem,
            validity_period_hours=plan.server_validity_hours,
            early_renewal_hours=plan.early_renewal_hours,
            allowed_uses=list(plan.server_uses),
            opts=aws_opts,
        )
        # Imported into ACM: the NLB's TLS listener takes it exactly as a brought certificate (ssl-cert).
        imported = aws.acm.Certificate(
            f"{name}-endpoint-generated",
            private_key=server_key.private_key_pem,  # secret: pulumi_tls and additional_secret_outputs
            certificate_body=server.cert_pem,
            certificate_chain=ca.cert_pem,
            tags={**stack.tags, "tritonllm:component": "gateway"},
            opts=aws_opts,
        )
        self.ca_certificate = ca.cert_pem
        return imported.arn

    def _alias_record(
        self, name: str, zone_id: pulumi.Input[str], domain: str, region: str, aws_opts: pulumi.ResourceOptions
    ) -> aws.route53.Record:
        """`domain` -> the NLB (Route 53 alias; the NLB's canonical zone from the provider)."""
        zone = aws.lb.get_hosted_zone_id_output(
            load_balancer_type="network", region=region, opts=pulumi.InvokeOptions(parent=self)
        )
        return aws.route53.Record(
            f"{name}-endpoint-alias",
            zone_id=zone_id,
            name=domain,
            type="A",
            aliases=[
                aws.route53.RecordAliasArgs(
                    name=self.hostname.apply(lambda h: h or ""), zone_id=zone.id, evaluate_target_health=True
                )
            ],
            opts=pulumi.ResourceOptions.merge(
                aws_opts, pulumi.ResourceOptions(depends_on=[self.load_balancer_service])
            ),
        )

    def route_authentication(self, name: str, namespace: str, opts: pulumi.ResourceOptions) -> list[pulumi.Resource]:
        """The API-key Secret and AuthenticationFilter in a route namespace (nothing when auth is off).

        Routes in that namespace pass through `secure_route` and depend on what this returns.
        """
        if self._htpasswd is None:  # None exactly when auth is off
            return []
        k8s_opts = opts  # the caller's: its parent, and the cluster's Kubernetes provider
        secret_manifest = gm.api_key_secret_manifest(namespace)
        secret = kubernetes.core.v1.Secret(
            f"{name}-api-keys",
            metadata=secret_manifest["metadata"],
            type=secret_manifest["type"],
            string_data={gm.AUTH_SECRET_KEY: self._htpasswd},
            opts=k8s_opts,
        )
        auth_filter = k8s_object(
            f"{name}-api-key-filter",
            gm.authentication_filter_manifest(namespace, self._auth.realm),
            pulumi.ResourceOptions.merge(k8s_opts, pulumi.ResourceOptions(depends_on=[secret, self.gateway])),
        )
        return [secret, auth_filter]

    def secure_route(self, manifest: dict) -> dict:
        """A route with the API-key filter on every rule (unchanged when auth is off)."""
        return gm.with_authentication(manifest) if self.auth_enabled else manifest
