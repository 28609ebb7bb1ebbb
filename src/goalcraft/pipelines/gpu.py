"""GPU execution: how the training assets (the goal predictor and its aligner) reach a GPU.

One typed setting, :class:`goalcraft.config.GpuSettings` (``[gpu]``), decides where GPU steps run:

* ``inprocess`` (the default): the step runs inside the run worker, on whatever device it has. A
  CPU laptop trains with exactly the same asset code.
* ``k8s``: dagster-k8s's ``k8s_job_executor`` runs every step as its own Kubernetes Job. GPU assets
  carry a ``dagster-k8s/config`` op tag that asks for ``nvidia.com/gpu`` limits, a GPU node
  selector, GPU tolerations, a larger ``/dev/shm`` (PyTorch DataLoader workers) and, optionally, a
  CUDA image; CPU steps keep the run's image and land on ordinary nodes.
* ``ray``: dagster-ray's ``ray_executor`` submits every step as a Ray job. GPU assets carry a
  ``dagster-ray/config`` op tag with ``num_gpus`` (and ``num_cpus``/``memory``).

Whatever the target, GPU assets also carry a Dagster *pool* (``@dg.asset(pool=...)``); the instance
caps how many steps of that pool run at once (``concurrency: pools:`` in ``dagster.yaml``, or
``dagster instance concurrency set <pool> <limit>``), so a burst of partitions cannot queue more
GPU pods or Ray jobs than the cluster has GPUs.

dagster-k8s and dagster-ray are optional extras (``goalcraft[k8s]``, ``goalcraft[ray]``): nothing
here imports them until :func:`executor_for` is asked for their executor. Tag and config key names
below are those the installed packages read (``dagster_k8s.job.USER_DEFINED_K8S_CONFIG_KEY``,
``dagster_ray.configs.USER_DEFINED_RAY_KEY``); tests/test_gpu_config.py checks them against the
packages' own parsers and schemas. docs/gpu-execution.md is the user's guide.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import yaml

# Toleration is re-exported: callers and tests import it from here.
from goalcraft.config import CONFIG_ENV_VAR, GpuSettings, Toleration, parse_quantity  # noqa: F401

# Tag keys read by the executors (verified against dagster-k8s 0.29.27 and dagster-ray 0.4.8).
K8S_CONFIG_TAG = "dagster-k8s/config"
RAY_CONFIG_TAG = "dagster-ray/config"
# goalcraft's own marker tags: how many GPUs a step wants, whatever executor runs it.
GPU_COUNT_TAG = "goalcraft/gpus"
NPROC_TAG = "goalcraft/nproc_per_node"
# The Kubernetes extended resource the NVIDIA device plugin advertises.
K8S_GPU_RESOURCE = "nvidia.com/gpu"
# Set in the step's environment on k8s and Ray: how many DDP workers the step should start.
NPROC_ENV_VAR = "GOALCRAFT_NPROC_PER_NODE"

# --------------------------------------------------------------------------------------------------
# Per-step configuration (op tags)


def k8s_step_config(execution: GpuSettings) -> dict[str, Any]:
    """The ``dagster-k8s/config`` value of a GPU step (container resources, scheduling, /dev/shm)."""
    limits: dict[str, str] = {}
    requests: dict[str, str] = {}
    if execution.gpus_per_step:
        # Extended resources are only given as limits; Kubernetes sets the request equal to it.
        limits[K8S_GPU_RESOURCE] = str(execution.gpus_per_step)
    if execution.cpu is not None:
        requests["cpu"] = limits["cpu"] = execution.cpu
    if execution.memory is not None:
        requests["memory"] = limits["memory"] = execution.memory
    container: dict[str, Any] = {
        "env": [{"name": NPROC_ENV_VAR, "value": str(execution.nproc_per_node)}],
    }
    resources: dict[str, Any] = {}
    if limits:
        resources["limits"] = limits
    if requests:
        resources["requests"] = requests
    if resources:
        container["resources"] = resources
    if execution.image:
        container["image"] = execution.image
    pod: dict[str, Any] = {}
    if execution.node_selector:
        pod["node_selector"] = dict(execution.node_selector)
    if execution.tolerations:
        pod["tolerations"] = [t.to_k8s() for t in execution.tolerations]
    if execution.shm_size:
        container["volume_mounts"] = [{"name": "dshm", "mount_path": "/dev/shm"}]
        pod["volumes"] = [{"name": "dshm", "empty_dir": {"medium": "Memory", "size_limit": execution.shm_size}}]
    config: dict[str, Any] = {"container_config": container}
    if pod:
        config["pod_spec_config"] = pod
    return config


def ray_step_config(execution: GpuSettings) -> dict[str, Any]:
    """The ``dagster-ray/config`` value of a GPU step (dagster-ray's ``RayExecutionConfig`` fields).

    ``runtime_env`` is left to the executor: a step tag's runtime_env *replaces* the executor's.
    """
    config: dict[str, Any] = {}
    if execution.gpus_per_step:
        config["num_gpus"] = float(execution.gpus_per_step)
    if execution.cpu is not None:
        config["num_cpus"] = float(parse_quantity(execution.cpu))
    if execution.memory is not None:
        config["memory"] = int(parse_quantity(execution.memory))
    if execution.ray_resources:
        config["resources"] = {k: float(v) for k, v in execution.ray_resources.items()}
    return config


def gpu_pool(execution: GpuSettings) -> str:
    """The Dagster pool GPU assets run in (``@dg.asset(pool=gpu_pool(execution))``)."""
    return execution.pool


def gpu_asset_tags(execution: GpuSettings) -> dict[str, str]:
    """Op tags for a GPU asset (``@dg.asset(op_tags=...)``): the executor tag of ``execution.target``.

    In-process there is nothing for an executor to read; the goalcraft marker tags are always set.
    Values are JSON strings, the form the executors parse.
    """
    tags = {GPU_COUNT_TAG: str(execution.gpus_per_step), NPROC_TAG: str(execution.nproc_per_node)}
    if execution.target == "k8s":
        tags[K8S_CONFIG_TAG] = json.dumps(k8s_step_config(execution), sort_keys=True)
    elif execution.target == "ray":
        tags[RAY_CONFIG_TAG] = json.dumps(ray_step_config(execution), sort_keys=True)
    return tags


def gpu_asset_kwargs(execution: GpuSettings) -> dict[str, Any]:
    """``@dg.asset(**gpu_asset_kwargs(execution))``: the pool and the op tags together."""
    return {"pool": gpu_pool(execution), "op_tags": gpu_asset_tags(execution)}


# --------------------------------------------------------------------------------------------------
# CPU steps: what the scale-out assets ask for


@dataclass(frozen=True)
class StepAsk:
    """What one step asks its executor for: CPU cores and memory (a Kubernetes quantity)."""

    cpus: float
    memory: str


#: One step (one partition) of each scale-out CPU asset, and of its checks (docs/gpu-execution.md,
#: "What each asset asks for"; measurements in docs/scale.md): the clip stage keeps two cores busy
#: (the decoder's threads, JPEG encoding and tar writing in a second thread) and peaked at 0.35 GB on
#: 640x360 footage; ingest of a 730K-record manifest peaks at 0.73 GB; the embedding runs torch on two
#: threads with the ViT-B/16 goal space (0.6 GB of weights) and one batch of clips.
STEP_ASKS: dict[str, StepAsk] = {
    "corpus_manifest": StepAsk(1, "2Gi"),
    "video_clips": StepAsk(2, "2Gi"),
    "goal_clips": StepAsk(2, "2Gi"),
    "clip_embeddings": StepAsk(2, "4Gi"),
}


def cpu_step_tags(execution: GpuSettings, asset: str) -> dict[str, str]:
    """Op tags that make ``execution.target``'s executor reserve ``STEP_ASKS[asset]`` for the step.

    Ray: ``num_cpus``/``memory`` (so Ray packs as many steps on a node as it has cores, and queues
    the rest); k8s: container requests (and a memory limit). In-process: none. The executors take
    no executor-wide CPU value: dagster-ray lets one override every step's tag.
    """
    ask = STEP_ASKS[asset]
    if execution.target == "ray":
        config: dict[str, Any] = {"num_cpus": float(ask.cpus), "memory": int(parse_quantity(ask.memory))}
        return {RAY_CONFIG_TAG: json.dumps(config, sort_keys=True)}
    if execution.target == "k8s":
        resources = {"requests": {"cpu": str(ask.cpus), "memory": ask.memory}, "limits": {"memory": ask.memory}}
        return {K8S_CONFIG_TAG: json.dumps({"container_config": {"resources": resources}}, sort_keys=True)}
    return {}


# --------------------------------------------------------------------------------------------------
# Executors


def k8s_executor_config(execution: GpuSettings) -> dict[str, Any]:
    """Config of ``dagster_k8s.k8s_job_executor`` (the ``execution: config:`` of a run).

    GPU requests stay on the GPU steps' tags, so CPU steps are not scheduled on GPU nodes.
    """
    config: dict[str, Any] = {"labels": {"app.kubernetes.io/part-of": "goalcraft"}}
    if execution.namespace:
        config["job_namespace"] = execution.namespace
    return config


def ray_executor_config(execution: GpuSettings) -> dict[str, Any]:
    """Config of ``dagster_ray.ray_executor`` (fields nest under ``ray``, as its schema demands).

    ``num_gpus`` is deliberately not set here: dagster-ray lets an executor-level value override
    every step's tag, which would hand each CPU step a GPU too.
    """
    ray: dict[str, Any] = {}
    if execution.ray_address:
        ray["address"] = execution.ray_address
    if execution.ray_runtime_env:
        ray["runtime_env"] = dict(execution.ray_runtime_env)
    # A bare name passes the launching process's value on: steps load the same settings file.
    ray["env_vars"] = [f"{NPROC_ENV_VAR}={execution.nproc_per_node}", CONFIG_ENV_VAR]
    return {"ray": ray}


def _missing_extra(extra: str, package: str, exc: ImportError) -> ImportError:
    return ImportError(f"GPU target {extra!r} needs {package}: pip install 'goalcraft[{extra}]' ({exc})")


def executor_for(execution: GpuSettings) -> dg.ExecutorDefinition:
    """The executor that runs GPU steps for ``execution.target``.

    ``inprocess``: Dagster's in-process executor; ``k8s``: ``k8s_job_executor`` configured with
    :func:`k8s_executor_config`; ``ray``: dagster-ray's ``ray_executor`` configured with
    :func:`ray_executor_config`. The optional packages are imported only here.
    """
    if execution.target == "inprocess":
        return dg.in_process_executor
    if execution.target == "k8s":
        try:
            from dagster_k8s import k8s_job_executor
        except ImportError as exc:
            raise _missing_extra("k8s", "dagster-k8s", exc) from exc
        return k8s_job_executor.configured(k8s_executor_config(execution), name="gpu_k8s")
    if execution.target == "ray":
        try:
            from dagster_ray import ray_executor
        except ImportError as exc:
            raise _missing_extra("ray", "dagster-ray", exc) from exc
        return ray_executor.configured(ray_executor_config(execution), name="gpu_ray")
    raise ValueError(f"unknown GPU target {execution.target!r}")


def location_executor(execution: GpuSettings) -> dg.ExecutorDefinition:
    """The code location's default executor: in-process target, the multiprocess CPU executor (one
    partition a process); k8s or Ray, that executor for every step (CPU steps reserve their
    :data:`STEP_ASKS`, GPU steps their GPUs)."""
    if execution.target == "inprocess":
        from goalcraft.pipelines.executors import cpu_executor

        return cpu_executor()
    return executor_for(execution)


# --------------------------------------------------------------------------------------------------
# Deployment files

DAGSTER_YAML = "dagster.yaml"
HELM_VALUES_YAML = "helm-values.yaml"
RUN_CONFIG_YAML = "run-config.yaml"
POOL_LIMITS_SH = "pool-limits.sh"


def concurrency_config(execution: GpuSettings) -> dict[str, Any]:
    """The ``concurrency`` section of dagster.yaml.

    Dagster 1.13's instance schema has no per-pool limits in dagster.yaml (only
    ``pools.default_limit``, applied to every pool without an explicit limit); the explicit limit
    for the GPU pool is set in the instance's storage by ``dagster instance concurrency set``
    (:func:`pool_limit_commands`). ``granularity: op`` makes each GPU *step* hold a slot.
    """
    return {"pools": {"granularity": "op", "default_limit": execution.pool_limit}}


def pool_limit_commands(execution: GpuSettings) -> list[list[str]]:
    """The Dagster CLI calls that set the GPU pool's limit on a running instance."""
    return [["dagster", "instance", "concurrency", "set", execution.pool, str(execution.pool_limit)]]


def _k8s_run_launcher(execution: GpuSettings) -> dict[str, Any]:
    config: dict[str, Any] = {
        "instance_config_map": execution.instance_config_map,
        "service_account_name": execution.service_account_name,
        "load_incluster_config": True,
    }
    if execution.namespace:
        config["job_namespace"] = execution.namespace
    return {"module": "dagster_k8s", "class": "K8sRunLauncher", "config": config}


def _ray_run_launcher(execution: GpuSettings) -> dict[str, Any]:
    address: Any = execution.ray_address or {"env": "RAY_ADDRESS"}
    return {"module": "dagster_ray", "class": "RayRunLauncher", "config": {"ray": {"address": address}}}


def _helm_values(execution: GpuSettings) -> dict[str, Any]:
    """Values for the Dagster Helm chart (its ``concurrency`` and ``runLauncher`` keys)."""
    launcher: dict[str, Any] = {}
    if execution.namespace:
        launcher["jobNamespace"] = execution.namespace
    return {
        "runLauncher": {"type": "K8sRunLauncher", "config": {"k8sRunLauncher": launcher}},
        "concurrency": {"enabled": True,
                        "pools": {"granularity": "op", "defaultLimit": execution.pool_limit}},
    }


def render_deployment_config(execution: GpuSettings) -> dict[str, Any]:
    """The files a user deploys, by file name: YAML documents as mappings, the shell script as text.

    * ``dagster.yaml``: the instance fragment (run launcher for k8s/ray, the pool's concurrency);
    * ``run-config.yaml`` (k8s, ray): the executor config, for runs launched with the plain
      ``k8s_job_executor``/``ray_executor`` (code built with :func:`executor_for` carries it);
    * ``helm-values.yaml`` (k8s): the same settings as Dagster Helm chart values;
    * ``pool-limits.sh``: sets the GPU pool's limit on the instance.
    """
    files: dict[str, Any] = {}
    instance: dict[str, Any] = {}
    if execution.target == "k8s":
        instance["run_launcher"] = _k8s_run_launcher(execution)
        files[RUN_CONFIG_YAML] = {"execution": {"config": k8s_executor_config(execution)}}
        files[HELM_VALUES_YAML] = _helm_values(execution)
    elif execution.target == "ray":
        instance["run_launcher"] = _ray_run_launcher(execution)
        files[RUN_CONFIG_YAML] = {"execution": {"config": ray_executor_config(execution)}}
    instance["concurrency"] = concurrency_config(execution)
    files[DAGSTER_YAML] = instance
    commands = "\n".join(" ".join(cmd) for cmd in pool_limit_commands(execution))
    files[POOL_LIMITS_SH] = (
        "#!/bin/sh\n"
        f"# Caps the '{execution.pool}' pool (goalcraft's GPU steps) at {execution.pool_limit} at once.\n"
        "# Run once where DAGSTER_HOME points at the deployment's instance (e.g. in the daemon pod).\n"
        "set -e\n"
        f"{commands}\n"
    )
    return dict(sorted(files.items()))


def _atomic_write_text(text: str, path: Path, mode: int | None = None) -> None:
    from goalcraft.storage import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
        if mode is not None:
            os.chmod(tmp, mode)


def write_deployment_config(execution: GpuSettings, out_dir: str | os.PathLike[str]) -> list[Path]:
    """Write :func:`render_deployment_config` into ``out_dir``, each file atomically; returns the paths."""
    out = Path(out_dir)
    written = []
    header = f"# Generated by goalcraft for GPU target {execution.target!r}; regenerate, do not edit.\n"
    for name, content in render_deployment_config(execution).items():
        path = out / name
        if isinstance(content, str):
            _atomic_write_text(content, path, mode=0o755)
        else:
            _atomic_write_text(header + yaml.safe_dump(content, sort_keys=False), path)
        written.append(path)
    return written
