"""ServingImages: the ECR repository, the CodeBuild project and the images the program builds for serving.

Registers, once per stack that needs a custom serving image (multi-node models, or
servingImage.extraAptPackages):
- an ECR repository `<name>/serving`: immutable tags (a content key names one image forever), scan on
  push, AES256 encryption, a lifecycle policy (components/serving/builders/serving_image.py);
- the builder: a CloudWatch log group, a CodeBuild service role scoped to that repository, log group and
  the bucket's image-contexts/ prefix, and a privileged CodeBuild project (docker builds need it);
- one ServingImage (components/providers/image_build.py) per image spec, deduplicated by tag.

`image_uri(spec)` is the Output pods run (repository:tag@digest); other components (node image pre-pull)
read `image_uris`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.catalog import versions
from components.providers.image_build import ServingImage
from components.serving.builders import serving_image as si
from components.serving.resources.model_store import ModelStore
from components.tokens import component_type

LOG_RETENTION_DAYS = 30


@dataclass(frozen=True)
class ServingImagesArgs:
    stack_name: str  # cfg.name: the repository's and project's prefix
    region: str
    model_store: ModelStore  # its bucket holds the build contexts
    specs: tuple[si.ImageSpec, ...]
    timeout_minutes: int  # servingImage.buildTimeoutMinutes


class ServingImages(pulumi.ComponentResource):
    """ECR repository + CodeBuild builder + one content-keyed image per spec.

    Attributes: repository_url, image_uris (spec name + base -> image URI Output), images (ServingImage).
    """

    def __init__(self, name: str, args: ServingImagesArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(component_type("serving", "ServingImages"), name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.repository = aws.ecr.Repository(
            f"{name}-serving-images",
            name=si.repository_name(args.stack_name),
            image_tag_mutability="IMMUTABLE",
            image_scanning_configuration=aws.ecr.RepositoryImageScanningConfigurationArgs(scan_on_push=True),
            encryption_configurations=[aws.ecr.RepositoryEncryptionConfigurationArgs(encryption_type="AES256")],
            force_delete=True,  # `pulumi destroy` takes the images with it: they are rebuilt from this repo
            opts=child,
        )
        aws.ecr.LifecyclePolicy(
            f"{name}-serving-images-lifecycle",
            repository=self.repository.name,
            policy=json.dumps(si.lifecycle_policy()),
            opts=child,
        )
        log_group = aws.cloudwatch.LogGroup(
            f"{name}-image-builds",
            name=f"/tritonllm/{args.stack_name}/image-builds",
            retention_in_days=LOG_RETENTION_DAYS,
            opts=child,
        )
        role = aws.iam.Role(
            f"{name}-image-builder",
            assume_role_policy=json.dumps(si.builder_trust_policy()),
            opts=child,
        )
        policy = aws.iam.RolePolicy(
            f"{name}-image-builder",
            role=role.id,
            policy=pulumi.Output.all(self.repository.arn, log_group.arn, args.model_store.bucket_arn).apply(
                lambda a: json.dumps(si.builder_policy(repository_arn=a[0], log_group_arn=a[1], bucket_arn=a[2]))
            ),
            opts=child,
        )
        project = aws.codebuild.Project(
            f"{name}-image-builder",
            name=f"{args.stack_name}-image-builder",
            description="Builds tritonllm serving images (images/*/Dockerfile) and pushes them to ECR",
            service_role=role.arn,
            build_timeout=args.timeout_minutes,
            artifacts=aws.codebuild.ProjectArtifactsArgs(type="NO_ARTIFACTS"),
            # Every build overrides the location with its own context object (start_build).
            source=aws.codebuild.ProjectSourceArgs(
                type="S3",
                location=pulumi.Output.concat(args.model_store.bucket_name, f"/{si.CONTEXT_PREFIX}/none.zip"),
                buildspec=si.buildspec(),
            ),
            environment=aws.codebuild.ProjectEnvironmentArgs(
                type="LINUX_CONTAINER",
                compute_type=versions.CODEBUILD_COMPUTE_TYPE,
                image=versions.CODEBUILD_IMAGE,
                image_pull_credentials_type="CODEBUILD",
                privileged_mode=True,  # docker build inside the build container (CodeBuild's Docker sample)
            ),
            logs_config=aws.codebuild.ProjectLogsConfigArgs(
                cloudwatch_logs=aws.codebuild.ProjectLogsConfigCloudwatchLogsArgs(
                    status="ENABLED", group_name=log_group.name
                ),
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[policy]),
        )
        self.repository_url: pulumi.Output[str] = self.repository.repository_url
        self.images: dict[str, ServingImage] = {}
        self.image_uris: dict[str, pulumi.Output[str]] = {}
        for spec in args.specs:
            key = image_id(spec)
            if key in self.images:
                continue
            image = ServingImage(
                f"{name}-{key}",
                spec,
                repository_name=self.repository.name,
                repository_url=self.repository.repository_url,
                bucket=args.model_store.bucket_name,
                project_name=project.name,
                region=args.region,
                timeout_minutes=args.timeout_minutes,
                opts=pulumi.ResourceOptions(parent=self, depends_on=[project, policy]),
            )
            self.images[key] = image
            self.image_uris[key] = image.image_uri
        self.register_outputs({"repositoryUrl": self.repository_url, "imageUris": self.image_uris})

    def image_uri(self, spec: si.ImageSpec) -> pulumi.Output[str]:
        return self.image_uris[image_id(spec)]


def image_id(spec: si.ImageSpec) -> str:
    """A stable resource name per image: its kind and its base image's release (not the content key, so a
    changed Dockerfile updates the same resource instead of adding one)."""
    base = spec.base_image.rsplit("/", 1)[-1].split("@", 1)[0].replace(":", "-").replace(".", "-")
    return f"{spec.name}-{base}"
