"""TritonLLM: one served model on EKS (vLLM or TensorRT-LLM), from config to routes.

The objects themselves come from the pure builders in components/serving/builders/triton_manifests.py,
components/engine_build.py and components/serving/builders/model_repository.py; this class
only registers them, in order.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
import pulumi_random as random

from components.config import ModelConfig, ModelSite
from components.gateway.builders import certificates
from components.gateway.resources.gateway import Gateway
from components.platform.builders import iam
from components.platform.builders.addon_versions import MOUNTPOINT_ADDON
from components.platform.resources import iam_roles
from components.platform.resources.cluster import ClusterRef
from components.platform.resources.k8s_objects import k8s_object
from components.platform.resources.storage import Storage
from components.providers import engine_build as engine_build_provider
from components.serving.builders import (
    compile_cache,
    engine_build,
    mountpoint_weights,
    network_policies,
    scale_to_zero,
)
from components.serving.builders import openai as openai_frontend
from components.serving.builders import triton_manifests as tm
from components.serving.builders.model_repository import (
    models_prefix,
    render_vllm_repository,
    served_model_name,
)
from components.serving.builders.model_store import also_read_prefix, write_prefix_policy
from components.serving.builders.weights_mirror import ResolvedMirror
from components.serving.resources.model_store import ModelStore
from components.serving.resources.multinode_group import register_group
from components.tokens import component_type


def repository_render_dir(model: ModelConfig) -> Path:
    """Where a vLLM model's repository is rendered for upload (stable per project/stack/model)."""
    return (
        Path(tempfile.gettempdir())
        / "tritonllm-repositories"
        / f"{pulumi.get_project()}-{pulumi.get_stack()}"
        / model.name
    )


@dataclass(frozen=True)
class TritonLLMArgs:
    model: ModelConfig
    site: ModelSite  # region, node pool, EFS/monitoring/auth switches (StackConfig.site_of)
    cluster: ClusterRef  # provider, names, OIDC (IRSA for vLLM pods), kubeconfig (engine build)
    model_store: ModelStore  # bucket, read policies, repository() uploads
    storage: Storage | None = None  # the shared EFS claim (efs.enabled)
    gateway: Gateway | None = None  # routes, API keys, the client command's endpoints
    hf_token: pulumi.Input[str] | None = None  # secret: only to resolve hfRevision (the mirror Job holds the token)
    ngc_api_key: pulumi.Input[str] | None = None  # secret: nvcr.io image pull secret
    resolved_engine_build: engine_build.ResolvedEngine | None = None  # TRT-LLM: key resolved at program start
    # The serving image the program built for this model (ServingImages.image_uri): required for multi-node
    # models (images/multinode), set for single-node ones by servingImage.extraAptPackages, else None.
    serving_image: pulumi.Input[str] | None = None
    # The model's Hugging Face snapshot in the model store (resolve_mirrors at program start) and the
    # resource that fills it (WeightsMirror.for_model): the engine build and the vLLM/llmapi pods read it.
    weights: ResolvedMirror | None = None
    weights_ready: pulumi.Resource | None = None


class TritonLLM(pulumi.ComponentResource):
    """One served model: namespace, S3 access, secrets, (engine build,) Deployment, Service, PodMonitor, HPA, PDB, routes.

    Wiring (`__main__.py`), one per `cfg.models` entry:

        TritonLLM(model.name, TritonLLMArgs(model=model, site=cfg.site_of(model), cluster=cluster.ref,
                                            model_store=model_store, storage=storage, gateway=gateway,
                                            hf_token=hf_token, ngc_api_key=ngc_api_key),
                  opts=pulumi.ResourceOptions(depends_on=[karpenter]))   # GPU nodes must be possible

    Outputs: model_name (what clients call), namespace, service_name,
    client_command (the exact `python -m tritonllm client ...` through the gateway),
    engine_key (TRT-LLM only, else None).
    """

    model_name: pulumi.Output[str]
    namespace: pulumi.Output[str]
    service_name: pulumi.Output[str]
    client_command: pulumi.Output[str]
    engine_key: pulumi.Output[str | None]
    openai_base_url: pulumi.Output[str | None]
    openai_examples: pulumi.Output[dict | None]

    def __init__(
        self,
        name: str,
        args: TritonLLMArgs,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(component_type("serving", "TritonLLM"), name, None, opts)
        model, site, cluster, model_store = args.model, args.site, args.cluster, args.model_store
        storage, gateway, hf_token, ngc_api_key = args.storage, args.gateway, args.hf_token, args.ngc_api_key
        resolved_engine_build = args.resolved_engine_build
        weights, weights_ready = args.weights, args.weights_ready
        if weights is None:
            raise ValueError(f"model {model.name!r}: pass `weights` (its mirror); every runtime reads the mirror")
        ns_name = model.name
        if model.scales_to_zero and gateway is None:
            # Only requests through the gateway's routes reach the interceptor that wakes the model.
            raise ValueError(f"model {model.name!r}: minReplicas 0 needs the gateway (TritonLLMArgs.gateway)")
        aws_opts = pulumi.ResourceOptions(parent=self)
        k8s_opts = pulumi.ResourceOptions(parent=self, provider=cluster.k8s_provider)

        def after(*deps: pulumi.Resource | None, **kw: Any) -> pulumi.ResourceOptions:
            return pulumi.ResourceOptions.merge(
                k8s_opts, pulumi.ResourceOptions(depends_on=[d for d in deps if d is not None], **kw)
            )

        # --- namespace and read-only access to exactly one S3 prefix
        route_labels = dict(getattr(gateway, "route_namespace_labels", {}) or {})
        namespace = k8s_object(f"{name}-ns", tm.namespace_manifest(model, route_labels), k8s_opts)
        # Only the gateway, Prometheus and the loadtest Job reach the pods (the multi-node group adds
        # rank-to-rank traffic): components/serving/builders/network_policies.py.
        for policy in network_policies.model_network_policies(model, site):
            k8s_object(f"{name}-netpol-{policy['metadata']['name']}", policy, after(namespace))
        engine_key: pulumi.Output[str] | None = None
        resolved_engine = None
        if model.backend == "vllm":
            read_prefix: pulumi.Input[str] = models_prefix(model)
        elif model.uses_llmapi:
            read_prefix = ""  # no repository in S3: the weights mirror only (triton_reader_policy)
        else:
            # hfRevision resolved to a commit (Hugging Face API, with the token for gated models) and
            # the engine cache key computed from it, when the program runs.
            resolved_engine = (
                pulumi.Output.from_input(resolved_engine_build)
                if resolved_engine_build is not None
                else engine_build_provider.resolve_engine_output(model, site, hf_token)
            )
            engine_key = resolved_engine.apply(lambda r: r.key)
            read_prefix = engine_key.apply(engine_build.engine_prefix)
        # vLLM and llmapi pods also stage the weights mirror; TRT-LLM engine pods read their engine only.
        weights_prefix = weights.prefix if tm.reads_weights_mirror(model) else None
        shares_compile_cache = compile_cache.wanted(model, site.node_pool)

        def pod_policy(bucket_arn: str, kms_key_arn: str | None, prefix: str) -> str:
            document = tm.triton_reader_policy(model, bucket_arn, prefix, kms_key_arn, weights_prefix)
            if shares_compile_cache:  # read and write compile-cache/<model>/ (the restore and save containers)
                document = compile_cache.cache_access_policy(document, bucket_arn, model.name, kms_key_arn)
            return json.dumps(document)

        reader_policy = pulumi.Output.all(model_store.bucket_arn, model_store.kms_key_arn, read_prefix).apply(
            lambda a: pod_policy(a[0], a[1], a[2])
        )
        reader_access: pulumi.Resource | None = None
        if tm.uses_irsa(model):
            reader_role = aws.iam.Role(
                f"{name}-triton",
                assume_role_policy=pulumi.Output.all(cluster.oidc_provider_arn, cluster.oidc_provider_url).apply(
                    lambda a: json.dumps(iam.irsa_trust_policy(a[0], a[1], ns_name, tm.SERVICE_ACCOUNT))
                ),
                description=pulumi.Output.concat(
                    f"IRSA role for {ns_name}/{tm.SERVICE_ACCOUNT}: read s3 ", read_prefix
                ),
                opts=aws_opts,
            )
            reader_access = aws.iam.RolePolicy(
                f"{name}-triton-inline",
                role=reader_role.id,
                policy=reader_policy,
                opts=pulumi.ResourceOptions(parent=reader_role),
            )
            service_account = k8s_object(
                f"{name}-sa", tm.service_account_manifest(model, irsa_role_arn=reader_role.arn), after(namespace)
            )
        else:
            _, reader_access = iam_roles.pod_identity_role(
                f"{name}-triton",
                cluster_name=cluster.cluster_name,
                namespace=ns_name,
                service_account=tm.SERVICE_ACCOUNT,
                account_id=cluster.account_id,
                inline_policy=reader_policy,
                opts=aws_opts,
            )
            service_account = k8s_object(f"{name}-sa", tm.service_account_manifest(model), after(namespace))

        # No Hugging Face token in this namespace: the weights come from the mirror (WeightsMirror holds it).
        pull_secret = None
        if ngc_api_key is not None:
            config_json = pulumi.Output.secret(ngc_api_key).apply(tm.dockerconfigjson)
            pull_secret = k8s_object(
                f"{name}-ngc-pull",
                tm.image_pull_secret_manifest(model),
                after(namespace),
                stringData={".dockerconfigjson": config_json},
            )
        admin_secret = None
        if tm.explicit_model_control(model):
            # The model repository API's header value (tm.ADMIN_KEY_SECRET): generated, a Pulumi secret,
            # in the cluster only as this Secret; tritonserver gets it through its environment.
            admin_key = random.RandomPassword(f"{name}-admin-key", length=48, special=False, opts=aws_opts)
            admin_secret = k8s_object(
                f"{name}-admin-key",
                tm.admin_key_secret_manifest(model),
                after(namespace),
                stringData={tm.ADMIN_KEY_KEY: pulumi.Output.secret(admin_key.result)},
            )
        pull_secret_name = tm.IMAGE_PULL_SECRET if pull_secret is not None else None

        claim = None
        if storage is not None:
            claim = k8s_object(
                f"{name}-shared", tm.shared_claim(model, site, storage.storage_class_name), after(namespace, storage)
            )

        # --- weights.delivery mountpoint: the mirror as a Mountpoint volume (PV) and its claim in the namespace;
        # the pods wait for the add-on (its CSIDriver and node plugin) as well
        weights_claim: pulumi.Resource | None = None
        if model.weights.delivery == "mountpoint" and tm.reads_weights_mirror(model):
            volume = k8s_object(
                f"{name}-weights-pv",
                mountpoint_weights.persistent_volume_manifest(
                    model, weights, bucket=model_store.bucket_name, region=site.region
                ),
                after(cluster.addons.get(MOUNTPOINT_ADDON)),
            )
            weights_claim = k8s_object(
                f"{name}-weights-pvc",
                mountpoint_weights.persistent_volume_claim_manifest(model, weights),
                after(namespace, volume),
            )

        # --- what Triton loads: a vLLM repository uploaded to S3, or a TRT-LLM engine built into S3
        engine = None
        repository: pulumi.Resource | None = None  # the uploaded repository (vLLM) or the llmapi ConfigMap
        if model.backend == "vllm":
            source = render_vllm_repository(model, repository_render_dir(model))
            repository = model_store.repository(
                f"{name}-repository",
                source_dir=source,
                prefix=models_prefix(model),
                opts=pulumi.ResourceOptions(parent=self),
            )
        elif model.uses_llmapi:
            # No engine build: the llmapi model.yaml and config.pbtxt, mounted into the pod.
            repository = k8s_object(f"{name}-llmapi-config", tm.llmapi_configmap_manifest(model), after(namespace))
        else:
            builder_sa = k8s_object(
                f"{name}-engine-builder-sa",
                tm.service_account_manifest(model, engine_build.BUILDER_SERVICE_ACCOUNT),
                after(namespace),
            )
            # Write its engine prefix; read the weights mirror it builds from.
            writer_policy = pulumi.Output.all(model_store.bucket_arn, model_store.kms_key_arn, read_prefix).apply(
                lambda a: json.dumps(
                    also_read_prefix(
                        write_prefix_policy(a[0], a[2], kms_key_arn=a[1]), a[0], weights.prefix, "WeightsMirror"
                    )
                )
            )
            _, builder_association = iam_roles.pod_identity_role(
                f"{name}-engine-builder",
                cluster_name=cluster.cluster_name,
                namespace=ns_name,
                service_account=engine_build.BUILDER_SERVICE_ACCOUNT,
                account_id=cluster.account_id,
                inline_policy=writer_policy,
                opts=aws_opts,
            )
            engine = engine_build_provider.TrtllmEngine(
                f"{name}-engine",
                model,
                site,
                namespace=ns_name,
                bucket=model_store.bucket_name,
                kubeconfig=cluster.kubeconfig,
                weights=weights,
                image_pull_secret=pull_secret_name,
                resolved=resolved_engine,
                opts=pulumi.ResourceOptions(
                    parent=self,
                    depends_on=[
                        d
                        for d in (builder_sa, builder_association, weights_ready, pull_secret, *model_store.ready)
                        if d is not None
                    ],
                ),
            )

        # --- the server
        shared_claim_name = tm.SHARED_CLAIM if claim is not None else None
        if model.multi_node is not None:
            # One replica over several nodes: a LeaderWorkerSet (components/serving/builders/multinode.py).
            assert engine_key is not None, "multiNode is TRT-LLM engine only (components/config/multinode_checks.py)"
            assert args.serving_image is not None, "a multi-node model runs the image ServingImages builds"
            deployment, service = register_group(
                self,
                name,
                model,
                site,
                k8s_object=k8s_object,
                after=after,
                namespace=namespace,
                bucket=model_store.bucket_name,
                engine_key=engine_key,
                shared_claim_name=shared_claim_name,
                image_pull_secret=pull_secret_name,
                image=args.serving_image,
                depends_on=[service_account, reader_access, pull_secret, admin_secret, claim, engine],
            )
        else:
            deployment_manifest = pulumi.Output.all(model_store.bucket_name, engine_key, args.serving_image).apply(
                lambda a: tm.deployment_manifest(
                    model,
                    site,
                    bucket=a[0],
                    engine_key=a[1],
                    shared_claim_name=shared_claim_name,
                    image_pull_secret=pull_secret_name,
                    image=a[2],
                    weights=weights,
                )
            )
            deployment = k8s.apps.v1.Deployment(
                f"{name}-deployment",
                metadata=deployment_manifest.apply(lambda m: m["metadata"]),
                spec=deployment_manifest.apply(lambda m: m["spec"]),
                opts=after(
                    service_account,
                    reader_access,
                    weights_ready,  # the mirror holds the snapshot before a pod stages it
                    weights_claim,
                    pull_secret,
                    admin_secret,
                    claim,
                    repository,
                    engine,
                    # The HPA owns the replica count once it exists.
                    ignore_changes=["spec.replicas"],
                    # Rollouts wait for a cold start (download/stage + load), not Pulumi's default 10 minutes.
                    custom_timeouts=pulumi.CustomTimeouts(create="60m", update="60m"),
                ),
            )
            service = k8s_object(f"{name}-service", tm.service_manifest(model), after(namespace))
            if site.monitoring_enabled:
                # Both need the monitoring stack: the PodMonitor CRD and the adapter that serves the HPA metric.
                # Without it the Deployment keeps minReplicas.
                k8s_object(f"{name}-podmonitor", tm.pod_monitor_manifest(model, site), after(namespace))
                if model.scales_to_zero:
                    # KEDA owns the HPA (named and shaped like the plain one) and scales to and from zero;
                    # the InterceptorRoutes tell the HTTP add-on which requests wake it (scale_to_zero.py).
                    held_routes = [
                        k8s_object(
                            f"{name}-interceptorroute-{backend.kind}",
                            scale_to_zero.interceptor_route_manifest(model, site, backend),
                            after(service),
                        )
                        for backend in scale_to_zero.held_backends(model)
                    ]
                    k8s_object(
                        f"{name}-scaledobject",
                        scale_to_zero.scaled_object_manifest(model, site),
                        after(deployment, *held_routes),
                    )
                else:
                    k8s_object(f"{name}-hpa", tm.hpa_manifest(model), after(deployment))
            k8s_object(f"{name}-pdb", tm.pdb_manifest(model), after(namespace))

        # --- routes on the shared Gateway (created after it, deleted before it)
        if gateway is not None:
            # API keys: every route rule behind the gateway's AuthenticationFilter (in this namespace).
            route_auth = list(
                gateway.route_authentication(name, ns_name, after(namespace))
                if hasattr(gateway, "route_authentication")
                else []
            )
            secure = getattr(gateway, "secure_route", lambda m: m)
            routes = tm.route_manifests(model, gateway.gateway_name, gateway.gateway_namespace)
            if model.scales_to_zero:
                # Through the interceptor (namespace keda), which holds a request while a replica starts.
                routes = scale_to_zero.held_route_manifests(model, site, routes)
                http_route = next(r for r in routes if r["kind"] == "HTTPRoute")["metadata"]["name"]
                for manifest in scale_to_zero.held_route_policies(model, site, http_route):
                    route_auth.append(
                        k8s_object(f"{name}-{manifest['kind'].lower()}", manifest, after(namespace, gateway))
                    )
            for manifest in routes:
                k8s_object(f"{name}-{manifest['kind'].lower()}", secure(manifest), after(service, gateway, *route_auth))
            grpc_endpoint = pulumi.Output.from_input(gateway.grpc_endpoint)
        else:
            grpc_endpoint = pulumi.Output.from_input(None)

        self.model_name = pulumi.Output.from_input(served_model_name(model))
        self.namespace = pulumi.Output.from_input(ns_name)
        self.service_name = pulumi.Output.from_input(tm.SERVICE_NAME)
        # Behind TLS (gateway.tls) the gRPC endpoint is <domain>:443 and wants a secure channel; with the
        # program's own CA (no domain of the user's) clients verify against its certificate.
        ca_file = certificates.CA_FILE if getattr(gateway, "generated_ca", False) else None
        tls_flag = f" --ca-cert {ca_file}" if ca_file else (" --ssl" if getattr(gateway, "tls", False) else "")
        self.client_command = grpc_endpoint.apply(lambda endpoint: tm.client_command(model, endpoint) + tls_flag)
        http_endpoint = pulumi.Output.from_input(gateway.http_endpoint if gateway is not None else None)
        served = served_model_name(model)
        if model.openai.enabled:
            self.openai_base_url = http_endpoint.apply(lambda e: openai_frontend.base_url(e, served))
            keys = site.auth_enabled
            self.openai_examples = http_endpoint.apply(
                lambda e: {
                    "curl": openai_frontend.curl_example(e, served, keys, ca_file),
                    "python": openai_frontend.python_example(e, served, keys, ca_file),
                }
            )
        else:
            self.openai_base_url = pulumi.Output.from_input(None)
            self.openai_examples = pulumi.Output.from_input(None)
        self.engine_key = pulumi.Output.from_input(engine_key)
        self.engine = engine
        self.repository = repository
        self.deployment = deployment
        self.register_outputs(
            {
                "model_name": self.model_name,
                "namespace": self.namespace,
                "service_name": self.service_name,
                "client_command": self.client_command,
                "engine_key": self.engine_key,
                "openai_base_url": self.openai_base_url,
            }
        )
