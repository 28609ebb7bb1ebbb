"""GPU execution config (goalcraft.pipelines.gpu), checked against the real schemas and parsers of
Dagster 1.13, dagster-k8s and dagster-ray: the op tags go through the executors' own tag parsers,
executor config through the executors' config schemas (Dagster's run-config validation), and the
generated dagster.yaml through Dagster's instance loader, which builds the real run launchers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from decimal import Decimal

import dagster as dg
import pytest
import yaml
from dagster._core.execution.api import create_execution_plan
from dagster._core.instance.config import dagster_instance_config
from pydantic import ValidationError

from goalcraft.pipelines.gpu import (
    DAGSTER_YAML,
    GPU_COUNT_TAG,
    HELM_VALUES_YAML,
    K8S_CONFIG_TAG,
    K8S_GPU_RESOURCE,
    NPROC_ENV_VAR,
    POOL_LIMITS_SH,
    RAY_CONFIG_TAG,
    RUN_CONFIG_YAML,
    STEP_ASKS,
    GpuSettings,
    Toleration,
    executor_for,
    gpu_asset_kwargs,
    gpu_asset_tags,
    gpu_pool,
    parse_quantity,
    render_deployment_config,
    write_deployment_config,
)

K8S_SKIP = "dagster-k8s is not installed (the goalcraft[k8s] extra: pip install -e '.[k8s]')"
RAY_SKIP = "dagster-ray is not installed (the goalcraft[ray] extra: pip install -e '.[ray]')"

A100 = {"cloud.google.com/gke-accelerator": "nvidia-tesla-a100"}


def _k8s_execution(**overrides) -> GpuSettings:
    values = dict(target="k8s", gpus_per_step=2, nproc_per_node=2, cpu="8", memory="32Gi",
                  image="registry.example/goalcraft:cuda", namespace="ml", node_selector=A100, pool_limit=4)
    values.update(overrides)
    return GpuSettings(**values)


def _ray_execution(**overrides) -> GpuSettings:
    values = dict(target="ray", gpus_per_step=2, nproc_per_node=2, cpu="4", memory="16Gi",
                  ray_address="http://ray-head:8265", ray_runtime_env={"pip": ["goalcraft[ray]"]},
                  ray_resources={"accelerator_type:A100": 0.001}, pool_limit=3)
    values.update(overrides)
    return GpuSettings(**values)


def _job(execution: GpuSettings, executor_def: dg.ExecutorDefinition, name: str = "train_predictor"):
    """A one-asset job shaped like the lead's predictor job: a GPU asset in group 'predictor'."""

    @dg.asset(group_name="predictor", **gpu_asset_kwargs(execution))
    def goal_predictor() -> int:
        return 1

    defs = dg.Definitions(assets=[goal_predictor],
                          jobs=[dg.define_asset_job(name, selection=[goal_predictor], executor_def=executor_def)])
    return goal_predictor, defs.resolve_job_def(name)


def _step_tags(job_def) -> dict[str, str]:
    """The tags of the predictor step as the step-delegating executors see them (``step.tags``)."""
    step = create_execution_plan(job_def).get_step_by_key("goal_predictor")
    return dict(step.tags)


# --------------------------------------------------------------------------------------------------
# The config object


def test_defaults_are_in_process_with_a_one_gpu_pool():
    execution = GpuSettings()
    assert execution.target == "inprocess"
    assert gpu_pool(execution) == "gpu" and execution.pool_limit == 1
    assert execution.gpus_per_step == 1 and execution.nproc_per_node == 1
    assert [t.to_k8s() for t in execution.tolerations] == [
        {"key": K8S_GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}]
    assert executor_for(execution) is dg.in_process_executor
    # No executor tag in-process: only goalcraft's marker tags.
    assert gpu_asset_tags(execution) == {GPU_COUNT_TAG: "1", "goalcraft/nproc_per_node": "1"}


def test_reads_a_toml_section_and_is_a_dagster_config_schema():
    raw = tomllib.loads("""
        [gpu]
        target = "k8s"
        gpus_per_step = 4
        nproc_per_node = 4
        memory = "64Gi"
        node_selector = { "cloud.google.com/gke-accelerator" = "nvidia-h100-80gb" }
        [[gpu.tolerations]]
        key = "nvidia.com/gpu"
        effect = "NoSchedule"
        [[gpu.tolerations]]
        key = "dedicated"
        operator = "Equal"
        value = "training"
        effect = "NoExecute"
        toleration_seconds = 60
    """)
    execution = GpuSettings(**raw["gpu"])
    assert execution.tolerations[1].to_k8s() == {"key": "dedicated", "operator": "Equal", "value": "training",
                                                 "effect": "NoExecute", "toleration_seconds": 60}
    # Its derived Dagster config class has the schema the launchpad shows, and its values are GpuSettings.
    from goalcraft.resources import as_config, dagster_config

    fields = dagster_config(GpuSettings).to_config_schema().as_field().config_type.fields
    assert {"target", "pool", "pool_limit", "gpus_per_step", "tolerations", "ray_address"} <= set(fields)
    derived = as_config(execution)
    assert isinstance(derived, GpuSettings) and derived.model_dump() == execution.model_dump()


@pytest.mark.parametrize("bad", [
    {"target": "slurm"},
    {"pool": ""},
    {"pool": "gpu pool"},
    {"pool_limit": 0},
    {"gpus_per_step": -1},
    {"gpus_per_step": 1, "nproc_per_node": 2},
    {"memory": "lots"},
    {"cpu": "0"},
    {"tolerations": [{"operator": "Sometimes"}]},
    {"tolerations": [{"key": "a", "effect": "NoRun"}]},
    {"tolerations": [{"key": "a", "operator": "Exists", "value": "b"}]},
])
def test_rejects_invalid_settings(bad):
    with pytest.raises(ValidationError):
        GpuSettings(**bad)


def test_kubernetes_quantities():
    assert parse_quantity("500m") == Decimal("0.5")
    assert parse_quantity("8") == 8
    assert parse_quantity("32Gi") == 32 * 2**30
    assert parse_quantity("16G") == 16 * 10**9
    assert parse_quantity("1e3") == 1000
    assert parse_quantity("1E") == 10**18
    for bad in ("", "Gi", "1GB", "-1", "1.2.3"):
        with pytest.raises(ValueError):
            parse_quantity(bad)


def test_toleration_rules():
    assert Toleration(key="k", operator="Equal", value="v").to_k8s() == {"key": "k", "operator": "Equal", "value": "v"}
    with pytest.raises(ValidationError):
        Toleration(operator="Equal", value="v")  # Equal needs a key


# --------------------------------------------------------------------------------------------------
# In-process: the same asset code, with its pool, on a CPU machine


def test_gpu_asset_materializes_in_process_and_goes_through_its_pool(tmp_path):
    """An asset carrying the k8s tags and the pool runs in-process; the instance built from the
    generated (in-process) dagster.yaml gives the pool its limit and the step claims a slot of it."""
    write_deployment_config(GpuSettings(pool_limit=2), tmp_path)
    instance = dg.DagsterInstance.from_config(str(tmp_path))
    try:
        kwargs = gpu_asset_kwargs(_k8s_execution())

        @dg.asset(group_name="predictor", **kwargs)
        def goal_predictor() -> int:
            return 7

        assert goal_predictor.op.pool == "gpu"
        assert K8S_CONFIG_TAG in goal_predictor.op.tags
        assert instance.event_log_storage.get_concurrency_info("gpu").slot_count == 0
        result = dg.materialize([goal_predictor], instance=instance)
        assert result.success and result.output_for_node("goal_predictor") == 7
        info = instance.event_log_storage.get_concurrency_info("gpu")
        # The step went through the pool: its slots were created from `default_limit` and released.
        assert info.slot_count == 2 and info.using_default_limit
        assert not info.claimed_slots and not info.pending_steps
    finally:
        instance.dispose()


def test_in_process_job_with_the_gpu_executor():
    asset_def, job_def = _job(GpuSettings(), executor_for(GpuSettings()))
    assert job_def.executor_def is dg.in_process_executor
    assert create_execution_plan(job_def).get_step_by_key("goal_predictor").pool == "gpu"
    assert job_def.execute_in_process().success


def test_goalcraft_imports_and_runs_in_process_without_the_extras():
    code = (
        "import sys\n"
        "sys.modules['dagster_k8s'] = None\n"  # any import of them now raises ImportError
        "sys.modules['dagster_ray'] = None\n"
        "import dagster as dg\n"
        "from goalcraft.pipelines import gpu\n"
        "assert gpu.executor_for(gpu.GpuSettings()) is dg.in_process_executor\n"
        "gpu.render_deployment_config(gpu.GpuSettings(target='k8s'))\n"
        "gpu.render_deployment_config(gpu.GpuSettings(target='ray'))\n"
        "for target, extra in (('k8s', 'goalcraft[k8s]'), ('ray', 'goalcraft[ray]')):\n"
        "    try:\n"
        "        gpu.executor_for(gpu.GpuSettings(target=target))\n"
        "    except ImportError as exc:\n"
        "        assert extra in str(exc), exc\n"
        "    else:\n"
        "        raise AssertionError(target)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_pool_limit_script_runs_through_the_dagster_cli(tmp_path):
    """pool-limits.sh holds real `dagster instance concurrency set` calls: run them with Dagster's CLI
    against an instance from the generated dagster.yaml, and the pool has an explicit limit."""
    from click.testing import CliRunner
    from dagster._cli import cli

    execution = GpuSettings(pool="gpu-a100", pool_limit=3)
    write_deployment_config(execution, tmp_path)
    script = (tmp_path / POOL_LIMITS_SH).read_text()
    assert os.access(tmp_path / POOL_LIMITS_SH, os.X_OK) and script.startswith("#!/bin/sh\n")
    commands = [line.split() for line in script.splitlines() if line.startswith("dagster ")]
    assert commands == [["dagster", "instance", "concurrency", "set", "gpu-a100", "3"]]
    for command in commands:
        done = CliRunner().invoke(cli, command[1:], env={"DAGSTER_HOME": str(tmp_path)})
        assert done.exit_code == 0, done.output
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        info = instance.event_log_storage.get_concurrency_info("gpu-a100")
        assert info.slot_count == 3 and not info.using_default_limit


# --------------------------------------------------------------------------------------------------
# Kubernetes (dagster-k8s)


def test_k8s_tags_parse_with_dagster_k8s_and_build_a_gpu_pod():
    """The step tag goes through dagster-k8s's own parser (validated against its
    USER_DEFINED_K8S_JOB_CONFIG_SCHEMA, then checked key by key against the kubernetes client models),
    is merged with the executor's container context as K8sStepHandler merges it, and builds the
    V1Job the executor would create: one GPU pod on the GPU nodes."""
    pytest.importorskip("dagster_k8s", reason=K8S_SKIP)
    from dagster_k8s import k8s_job_executor
    from dagster_k8s.container_context import K8sContainerContext
    from dagster_k8s.job import (
        USER_DEFINED_K8S_CONFIG_KEY,
        DagsterK8sJobConfig,
        UserDefinedDagsterK8sConfig,
        construct_dagster_k8s_job,
        get_user_defined_k8s_config,
    )
    from kubernetes.client import ApiClient

    assert K8S_CONFIG_TAG == USER_DEFINED_K8S_CONFIG_KEY
    execution = _k8s_execution()
    _, job_def = _job(execution, executor_for(execution))
    tags = _step_tags(job_def)
    assert json.loads(tags[K8S_CONFIG_TAG]) == json.loads(gpu_asset_tags(execution)[K8S_CONFIG_TAG])

    # The executor's processed config, as k8s_job_executor receives it (init_context.executor_config).
    exc_cfg = dg.validate_run_config(job_def, {})["execution"]["gpu_k8s"]
    executor_context = K8sContainerContext(
        namespace=exc_cfg.get("job_namespace"), labels=exc_cfg.get("labels"),
        run_k8s_config=UserDefinedDagsterK8sConfig.from_dict(exc_cfg.get("step_k8s_config", {})))
    context = executor_context.merge(K8sContainerContext(run_k8s_config=get_user_defined_k8s_config(tags)))
    assert context.namespace == "ml"
    job = construct_dagster_k8s_job(
        job_config=DagsterK8sJobConfig(job_image="registry.example/goalcraft:cpu"),  # the run's image
        args=["dagster", "api", "execute_step"], job_name="dagster-step-goal-predictor",
        component="step_worker", user_defined_k8s_config=context.run_k8s_config,
        labels={"dagster/op": "goal_predictor"})
    body = ApiClient().sanitize_for_serialization(job)  # the JSON POSTed to the API server
    pod = body["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["resources"]["limits"] == {K8S_GPU_RESOURCE: "2", "cpu": "8", "memory": "32Gi"}
    assert container["resources"]["requests"] == {"cpu": "8", "memory": "32Gi"}
    assert container["image"] == "registry.example/goalcraft:cuda"  # GPU steps get the CUDA image
    assert {"name": NPROC_ENV_VAR, "value": "2"} in container["env"]
    assert {"name": "dshm", "mountPath": "/dev/shm"} in container["volumeMounts"]
    assert {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "8Gi"}} in pod["volumes"]
    assert pod["nodeSelector"] == A100
    assert pod["tolerations"] == [{"key": K8S_GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}]
    assert body["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/part-of"] == "goalcraft"

    # A step without the GPU tag (a CPU step) asks for no GPU and keeps the run's image.
    cpu_context = executor_context.merge(K8sContainerContext(run_k8s_config=get_user_defined_k8s_config({})))
    cpu_job = construct_dagster_k8s_job(job_config=DagsterK8sJobConfig(job_image="registry.example/goalcraft:cpu"),
                                        args=[], job_name="dagster-step-cpu",
                                        user_defined_k8s_config=cpu_context.run_k8s_config)
    cpu_container = cpu_job.spec.template.spec.containers[0]
    assert cpu_container.image == "registry.example/goalcraft:cpu"
    assert not (cpu_container.resources and cpu_container.resources.limits)
    assert k8s_job_executor.name == "k8s"


def test_k8s_executor_config_passes_the_executor_schema():
    pytest.importorskip("dagster_k8s", reason=K8S_SKIP)
    from dagster_k8s import k8s_job_executor

    execution = _k8s_execution()
    _, job_def = _job(execution, executor_for(execution))
    assert job_def.executor_def.name == "gpu_k8s"
    # Run-config validation runs the configured executor's config through k8s_job_executor's schema.
    processed = dg.validate_run_config(job_def, {})["execution"]["gpu_k8s"]
    assert processed["job_namespace"] == "ml"
    # The generated run-config.yaml is valid run config for a job on the plain k8s_job_executor.
    run_config = render_deployment_config(execution)[RUN_CONFIG_YAML]
    _, plain_job = _job(execution, k8s_job_executor, name="train_plain")
    assert dg.validate_run_config(plain_job, run_config)["execution"]["k8s"]["job_namespace"] == "ml"
    # Negative control: the schema is strict, so the checks above are not vacuous.
    bad = k8s_job_executor.configured({"job_namespace": "ml", "gpus": 2}, name="bad_k8s")
    _, bad_job = _job(execution, bad, name="train_bad")
    with pytest.raises(dg.DagsterInvalidConfigError):
        dg.validate_run_config(bad_job, {})


def test_k8s_dagster_yaml_loads_as_an_instance_with_the_k8s_run_launcher(tmp_path, monkeypatch):
    """The generated dagster.yaml passes Dagster's instance loader (schema + concurrency checks) and
    builds a real K8sRunLauncher from its config (only the in-cluster credential load is stubbed)."""
    pytest.importorskip("dagster_k8s", reason=K8S_SKIP)
    import kubernetes.config
    from dagster_k8s import K8sRunLauncher

    execution = _k8s_execution()
    paths = write_deployment_config(execution, tmp_path)
    assert sorted(p.name for p in paths) == [DAGSTER_YAML, HELM_VALUES_YAML, POOL_LIMITS_SH, RUN_CONFIG_YAML]
    assert not list(tmp_path.glob(".*tmp*"))  # atomic writes leave no temporaries
    document = yaml.safe_load((tmp_path / DAGSTER_YAML).read_text())
    assert document == render_deployment_config(execution)[DAGSTER_YAML]

    config, _ = dagster_instance_config(str(tmp_path))
    assert config["concurrency"] == {"pools": {"granularity": "op", "default_limit": 4}}

    loaded = []
    monkeypatch.setattr(kubernetes.config, "load_incluster_config", lambda *a, **k: loaded.append(True))
    instance = dg.DagsterInstance.from_config(str(tmp_path))
    try:
        launcher = instance.run_launcher
        assert isinstance(launcher, K8sRunLauncher) and loaded == [True]
        assert launcher.job_namespace == "ml" and launcher.instance_config_map == "dagster-instance"
        pool_config = instance.get_concurrency_config().pool_config
        assert pool_config.default_pool_limit == 4 and pool_config.pool_granularity.value == "op"
    finally:
        instance.dispose()


def test_k8s_helm_values_mirror_the_instance_config():
    """Not validated against the chart (no chart schema is installed here): the Helm values must at
    least say what dagster.yaml says, in the chart's camelCase keys."""
    files = render_deployment_config(_k8s_execution())
    helm, instance = files[HELM_VALUES_YAML], files[DAGSTER_YAML]
    assert helm["runLauncher"]["type"] == instance["run_launcher"]["class"] == "K8sRunLauncher"
    assert helm["runLauncher"]["config"]["k8sRunLauncher"]["jobNamespace"] == \
        instance["run_launcher"]["config"]["job_namespace"]
    pools = instance["concurrency"]["pools"]
    assert helm["concurrency"] == {"enabled": True, "pools": {"granularity": pools["granularity"],
                                                              "defaultLimit": pools["default_limit"]}}


# --------------------------------------------------------------------------------------------------
# Ray (dagster-ray)


def test_ray_tags_parse_with_dagster_ray():
    """The step tag goes through dagster-ray's own parser (RayExecutionConfig.from_tags, what
    RayStepHandler.launch_step calls on the step's tags)."""
    pytest.importorskip("dagster_ray", reason=RAY_SKIP)
    from dagster_ray.configs import USER_DEFINED_RAY_KEY, RayExecutionConfig

    assert RAY_CONFIG_TAG == USER_DEFINED_RAY_KEY
    execution = _ray_execution()
    _, job_def = _job(execution, executor_for(execution))
    step_config = RayExecutionConfig.from_tags(_step_tags(job_def))
    assert step_config.num_gpus == 2.0 and step_config.num_cpus == 4.0
    assert step_config.memory == 16 * 2**30
    assert step_config.resources == {"accelerator_type:A100": 0.001}
    # runtime_env stays on the executor: a tag's runtime_env would replace the executor's.
    assert step_config.runtime_env is None
    # A CPU step (no tag) asks Ray for no GPU.
    assert RayExecutionConfig.from_tags({}).num_gpus is None


def test_ray_executor_config_passes_the_executor_schema():
    pytest.importorskip("dagster_ray", reason=RAY_SKIP)
    from dagster_ray import ray_executor

    execution = _ray_execution()
    _, job_def = _job(execution, executor_for(execution))
    assert job_def.executor_def.name == "gpu_ray"
    processed = dg.validate_run_config(job_def, {})["execution"]["gpu_ray"]["ray"]
    assert processed["address"] == "http://ray-head:8265"
    assert processed["runtime_env"] == {"pip": ["goalcraft[ray]"]}
    # GOALCRAFT_CONFIG bare: each step gets the launching process's value (the same settings file).
    assert processed["env_vars"] == [f"{NPROC_ENV_VAR}=2", "GOALCRAFT_CONFIG"]
    # Executor-level num_gpus would override every step's tag (CPU steps too), so it stays unset.
    assert processed["num_gpus"] is None
    run_config = render_deployment_config(execution)[RUN_CONFIG_YAML]
    _, plain_job = _job(execution, ray_executor, name="train_plain")
    assert dg.validate_run_config(plain_job, run_config)["execution"]["ray"]["ray"]["address"] == "http://ray-head:8265"
    # Negative control: fields outside `ray:` are rejected (dagster-ray's docstring example does this).
    bad = ray_executor.configured({"address": "http://ray-head:8265"}, name="bad_ray")
    _, bad_job = _job(execution, bad, name="train_bad")
    with pytest.raises(dg.DagsterInvalidConfigError):
        dg.validate_run_config(bad_job, {})


@pytest.mark.parametrize("address", ["http://ray-head:8265", None])
def test_ray_dagster_yaml_loads_as_an_instance_with_the_ray_run_launcher(tmp_path, monkeypatch, address):
    pytest.importorskip("dagster_ray", reason=RAY_SKIP)
    from dagster_ray import RayRunLauncher

    monkeypatch.setenv("RAY_ADDRESS", "http://from-env:8265")
    execution = _ray_execution(ray_address=address)
    write_deployment_config(execution, tmp_path)
    assert HELM_VALUES_YAML not in os.listdir(tmp_path)
    config, _ = dagster_instance_config(str(tmp_path))
    assert config["concurrency"]["pools"]["default_limit"] == 3
    instance = dg.DagsterInstance.from_config(str(tmp_path))
    try:
        assert isinstance(instance.run_launcher, RayRunLauncher)
        assert instance.run_launcher.address == (address or "http://from-env:8265")
        assert instance.get_concurrency_config().pool_config.default_pool_limit == 3
    finally:
        instance.dispose()


# --------------------------------------------------------------------------------------------------
# The whole code location on k8s / Ray: CPU steps reserve what they use


def _location_step(target: str, asset: str, **sections):
    """The code location built for ``target``: its executor, and ``asset``'s op (its tags and pool)."""
    from pathlib import Path

    from goalcraft.config import config_from_dict
    from goalcraft.definitions import build_definitions

    config = config_from_dict({"gpu": {"target": target, "ray_address": "http://ray-head:8265"}, **sections},
                              Path("/tmp"))
    defs = build_definitions(config)
    return defs.executor, defs.resolve_asset_graph().assets_def_for_key(dg.AssetKey(asset)).op


@pytest.mark.parametrize("target, executor", [("inprocess", "cpu_multiprocess"), ("ray", "gpu_ray"),
                                              ("k8s", "gpu_k8s")])
def test_the_target_is_every_step_s_executor(target, executor):
    if target != "inprocess":
        pytest.importorskip(f"dagster_{target}", reason=RAY_SKIP if target == "ray" else K8S_SKIP)
    executor_def, op = _location_step(target, "video_clips")
    assert executor_def.name == executor
    assert (RAY_CONFIG_TAG in op.tags, K8S_CONFIG_TAG in op.tags) == (target == "ray", target == "k8s")


@pytest.mark.parametrize("asset, cpus, memory", [(a, s.cpus, s.memory) for a, s in STEP_ASKS.items()])
def test_cpu_steps_ask_ray_for_their_cores_and_memory(asset, cpus, memory):
    pytest.importorskip("dagster_ray", reason=RAY_SKIP)
    from dagster_ray.configs import RayExecutionConfig

    _, op = _location_step("ray", asset)
    step = RayExecutionConfig.from_tags(op.tags)  # what RayStepHandler.launch_step reads
    assert step.num_cpus == cpus and step.memory == parse_quantity(memory) and step.num_gpus is None


def test_cpu_steps_ask_kubernetes_for_their_cores_and_memory():
    pytest.importorskip("dagster_k8s", reason=K8S_SKIP)
    from dagster_k8s.job import DagsterK8sJobConfig, construct_dagster_k8s_job, get_user_defined_k8s_config

    _, op = _location_step("k8s", "video_clips")
    job = construct_dagster_k8s_job(job_config=DagsterK8sJobConfig(job_image="registry.example/goalcraft:cpu"),
                                    args=[], job_name="dagster-step-video-clips",
                                    user_defined_k8s_config=get_user_defined_k8s_config(op.tags))
    container = job.spec.template.spec.containers[0]
    assert container.resources.requests == {"cpu": "2", "memory": "2Gi"}
    assert container.resources.limits == {"memory": "2Gi"}  # no GPU, no CPU limit (no throttling)
    assert container.image == "registry.example/goalcraft:cpu"


def test_clip_embeddings_is_a_gpu_step_on_a_gpu_goal_space():
    pytest.importorskip("dagster_ray", reason=RAY_SKIP)
    from dagster_ray.configs import RayExecutionConfig

    _, op = _location_step("ray", "clip_embeddings", goal_space={"preset": "vitb16-gpu"})
    assert RayExecutionConfig.from_tags(op.tags).num_gpus == 1.0 and op.pool == "gpu"
    _, op = _location_step("ray", "clip_embeddings")
    assert RayExecutionConfig.from_tags(op.tags).num_gpus is None and op.pool is None
