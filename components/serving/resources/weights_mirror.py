"""WeightsMirror: the `hf-mirror` namespace and one HfSnapshotMirror per distinct model snapshot.

The namespace holds the only Kubernetes copy of the Hugging Face token (Secret `hf-token`, mounted
into the download container of the mirror Jobs), a service account whose EKS Pod Identity role may
write under `hf-mirror/` of the model store and nothing else, and the Jobs themselves
(components/serving/builders/weights_mirror.py). Serving namespaces hold no token.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import partial
from typing import Any

import pulumi

from components.config import StackConfig
from components.platform.resources import iam_roles
from components.platform.resources.cluster import ClusterRef
from components.platform.resources.k8s_objects import k8s_object
from components.providers.weights_mirror import HfSnapshotMirror
from components.serving.builders import weights_mirror as wm
from components.serving.builders.model_store import write_prefix_policy
from components.serving.builders.triton_manifests import IMAGE_PULL_SECRET, dockerconfigjson, image_pull_secret_manifest
from components.serving.resources.model_store import ModelStore
from components.tokens import component_type


@dataclass(frozen=True)
class WeightsMirrorArgs:
    config: StackConfig
    resolved: dict[str, wm.ResolvedMirror]  # model name -> its mirror (resolve_mirrors at program start)
    cluster: ClusterRef
    model_store: ModelStore
    hf_token: pulumi.Input[str] | None = None  # secret; public models need none
    ngc_api_key: pulumi.Input[str] | None = None  # secret: nvcr.io pull secret for the download image


class WeightsMirror(pulumi.ComponentResource):
    """The mirror namespace, its writer role and token, and the snapshots.

    `for_model(name)` is the HfSnapshotMirror a model's readers wait for.
    """

    def __init__(self, name: str, args: WeightsMirrorArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(component_type("serving", "WeightsMirror"), name, None, opts)
        cfg, cluster, store = args.config, args.cluster, args.model_store
        k8s_opts = pulumi.ResourceOptions(parent=self, provider=cluster.k8s_provider)
        base = f"{name}-hf-mirror"  # names of what it registers: <stack>-hf-mirror-*

        def after(*deps: pulumi.Resource) -> pulumi.ResourceOptions:
            return pulumi.ResourceOptions.merge(k8s_opts, pulumi.ResourceOptions(depends_on=list(deps)))

        namespace = k8s_object(f"{base}-ns", wm.namespace_manifest(), k8s_opts)
        account = k8s_object(f"{base}-sa", wm.service_account_manifest(), after(namespace))
        writer_policy = pulumi.Output.all(store.bucket_arn, store.kms_key_arn).apply(
            lambda a: json.dumps(write_prefix_policy(a[0], wm.MIRROR_PREFIX, kms_key_arn=a[1]))
        )
        _, association = iam_roles.pod_identity_role(
            f"{base}-writer",
            cluster_name=cluster.cluster_name,
            namespace=wm.MIRROR_NAMESPACE,
            service_account=wm.MIRROR_SERVICE_ACCOUNT,
            account_id=cluster.account_id,
            inline_policy=writer_policy,
            opts=pulumi.ResourceOptions(parent=self),
        )
        token_secret = None
        if args.hf_token is not None:
            token_secret = k8s_object(
                f"{base}-hf-token",
                wm.hf_token_secret_manifest(),
                after(namespace),
                stringData={wm.HF_TOKEN_KEY: pulumi.Output.secret(args.hf_token)},
            )
        pull_secret = None
        if args.ngc_api_key is not None:
            manifest = image_pull_secret_manifest(cfg.models[0])
            manifest["metadata"] = {"name": IMAGE_PULL_SECRET, "namespace": wm.MIRROR_NAMESPACE}
            pull_secret = k8s_object(
                f"{base}-ngc-pull",
                manifest,
                after(namespace),
                stringData={".dockerconfigjson": pulumi.Output.secret(args.ngc_api_key).apply(dockerconfigjson)},
            )
        self.by_key: dict[str, HfSnapshotMirror] = {}
        deps = [d for d in (account, association, token_secret, pull_secret, *store.ready) if d is not None]
        for key, (mirror, model) in wm.mirrors_by_key(list(cfg.models), args.resolved).items():
            site = cfg.site_of(model)
            job = store.bucket_name.apply(partial(self._job, cfg, mirror, model, token_secret, pull_secret))
            self.by_key[key] = HfSnapshotMirror(
                wm.resource_name(mirror),
                mirror,
                bucket=store.bucket_name,
                region=site.region,
                job=job,
                script_config_map=wm.script_configmap_manifest(mirror),
                timeout_seconds=cfg.model_store.mirror.timeout_minutes * 60,
                kubeconfig=cluster.kubeconfig,
                opts=pulumi.ResourceOptions(parent=self, depends_on=deps),
            )
        self.resolved = dict(args.resolved)
        self.register_outputs({"mirrors": {k: m.prefix for k, m in self.by_key.items()}})

    @staticmethod
    def _job(
        cfg: StackConfig,
        mirror: wm.ResolvedMirror,
        model: Any,
        token_secret: pulumi.Resource | None,
        pull_secret: pulumi.Resource | None,
        bucket: str,
    ) -> dict[str, Any]:
        return wm.mirror_job_manifest(
            mirror,
            model,
            bucket=bucket,
            region=cfg.site_of(model).region,
            timeout_minutes=cfg.model_store.mirror.timeout_minutes,
            hf_token_secret=wm.MIRROR_HF_TOKEN_SECRET if token_secret is not None else None,
            image_pull_secret=IMAGE_PULL_SECRET if pull_secret is not None else None,
        )

    def for_model(self, model_name: str) -> HfSnapshotMirror:
        return self.by_key[self.resolved[model_name].key]
