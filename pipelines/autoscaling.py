"""Endpoint autoscaling: an Application Auto Scaling target-tracking policy on each production variant.

`pipeline.py autoscale` registers every variant of the endpoint as a scalable target (min..max instances) and puts
one target-tracking policy on it that holds SageMakerVariantInvocationsPerInstance at the configured value. Both
calls create or update, so running it again (after a re-deploy, or with new numbers) is safe. A re-deploy that
changes only the model keeps the policy; one that changes the instance type is refused by SageMaker while the
variant is registered (`autoscale --remove` first, then `autoscale` again after it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pipelines.config import DeploymentConfig

SERVICE_NAMESPACE = "sagemaker"
SCALABLE_DIMENSION = "sagemaker:variant:DesiredInstanceCount"
METRIC = "SageMakerVariantInvocationsPerInstance"


def resource_id(endpoint_name: str, variant_name: str) -> str:
    return f"endpoint/{endpoint_name}/variant/{variant_name}"


def policy_name(endpoint_name: str, variant_name: str) -> str:
    return f"{endpoint_name}-{variant_name}-invocations-per-instance"


def scalable_target_request(deployment: DeploymentConfig, endpoint_name: str, variant_name: str) -> dict[str, Any]:
    """RegisterScalableTarget's request."""
    return {"ServiceNamespace": SERVICE_NAMESPACE, "ResourceId": resource_id(endpoint_name, variant_name),
            "ScalableDimension": SCALABLE_DIMENSION, "MinCapacity": deployment.min_instances,
            "MaxCapacity": deployment.max_instances}


def scaling_policy_request(deployment: DeploymentConfig, endpoint_name: str, variant_name: str) -> dict[str, Any]:
    """PutScalingPolicy's request: target tracking on invocations per instance."""
    return {
        "PolicyName": policy_name(endpoint_name, variant_name), "ServiceNamespace": SERVICE_NAMESPACE,
        "ResourceId": resource_id(endpoint_name, variant_name), "ScalableDimension": SCALABLE_DIMENSION,
        "PolicyType": "TargetTrackingScaling",
        "TargetTrackingScalingPolicyConfiguration": {
            "TargetValue": float(deployment.target_invocations_per_instance),
            "PredefinedMetricSpecification": {"PredefinedMetricType": METRIC},
            "ScaleInCooldown": deployment.scale_in_cooldown_s,
            "ScaleOutCooldown": deployment.scale_out_cooldown_s,
        },
    }


def apply_policies(client: Any, deployment: DeploymentConfig, endpoint_name: str,
                   variants: Sequence[str]) -> list[dict[str, Any]]:
    """Registers each variant and puts its policy (both create-or-update); returns what each variant got."""
    applied = []
    for variant in variants:
        client.register_scalable_target(**scalable_target_request(deployment, endpoint_name, variant))
        response = client.put_scaling_policy(**scaling_policy_request(deployment, endpoint_name, variant))
        applied.append({"variant": variant, "resource_id": resource_id(endpoint_name, variant),
                        "min_instances": deployment.min_instances, "max_instances": deployment.max_instances,
                        "target_invocations_per_instance": deployment.target_invocations_per_instance,
                        "policy_arn": response.get("PolicyARN", "")})
    return applied


def remove_policies(client: Any, endpoint_name: str, variants: Sequence[str]) -> list[str]:
    """Deletes each variant's policy and deregisters it; returns the variants that had been registered."""
    removed = []
    for variant in variants:
        resource = resource_id(endpoint_name, variant)
        targets = client.describe_scalable_targets(ServiceNamespace=SERVICE_NAMESPACE, ResourceIds=[resource],
                                                   ScalableDimension=SCALABLE_DIMENSION)["ScalableTargets"]
        if not targets:
            continue
        policies = client.describe_scaling_policies(ServiceNamespace=SERVICE_NAMESPACE, ResourceId=resource,
                                                    ScalableDimension=SCALABLE_DIMENSION)["ScalingPolicies"]
        for policy in policies:
            client.delete_scaling_policy(PolicyName=policy["PolicyName"], ServiceNamespace=SERVICE_NAMESPACE,
                                         ResourceId=resource, ScalableDimension=SCALABLE_DIMENSION)
        client.deregister_scalable_target(ServiceNamespace=SERVICE_NAMESPACE, ResourceId=resource,
                                          ScalableDimension=SCALABLE_DIMENSION)
        removed.append(variant)
    return removed
