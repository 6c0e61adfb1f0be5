"""The deployments the README shows (deploy/k8s, deploy/celery) are the files in the repository,
their definitions pass ``dagster definitions validate``, and their dagster.yaml passes the
config schema of the instance and of every class it names (run launcher, run coordinator,
storage) as Dagster checks it when the instance starts."""

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from dagster._config import process_config
from dagster._config.field import resolve_to_config_type
from dagster._core.instance.config import dagster_instance_config_schema

ROOT = Path(__file__).resolve().parents[1]
DEPLOYMENTS = ["k8s", "celery"]


def config_errors(instance_yaml: dict) -> list[str]:
    """What Dagster would refuse in this dagster.yaml: the instance schema, then the config of
    each pluggable class it names, and the PostgreSQL storage."""
    from dagster_postgres import DagsterPostgresStorage

    result = process_config(resolve_to_config_type(dagster_instance_config_schema()), instance_yaml)
    errors = [e.message for e in result.errors or []]
    for section in ("run_launcher", "run_coordinator"):
        if section in instance_yaml:
            named = instance_yaml[section]
            cls = getattr(importlib.import_module(named["module"]), named["class"])
            result = process_config(resolve_to_config_type(cls.config_type()),
                                    named.get("config", {}))
            errors += [f"{section}: {e.message}" for e in result.errors or []]
    result = process_config(resolve_to_config_type(DagsterPostgresStorage.config_type()),
                            instance_yaml["storage"]["postgres"])
    errors += [f"storage: {e.message}" for e in result.errors or []]
    return errors


@pytest.mark.parametrize("name", DEPLOYMENTS)
def test_definitions_validate(name, tmp_path):
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "definitions", "validate",
         "-f", str(ROOT / "deploy" / name / "definitions.py")],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
        env={**os.environ, "DAGSTER_HOME": str(tmp_path)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Validation successful" in proc.stdout + proc.stderr


@pytest.mark.parametrize("name", DEPLOYMENTS)
def test_instance_yaml_passes_dagsters_schemas(name, monkeypatch):
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", "from-the-environment")
    instance_yaml = yaml.safe_load((ROOT / "deploy" / name / "dagster.yaml").read_text())
    assert config_errors(instance_yaml) == []


def test_the_schema_check_catches_a_broken_launcher(monkeypatch):
    """The check above can fail: the K8sRunLauncher without the ConfigMap of the instance (a
    mistake the first draft of deploy/k8s/dagster.yaml made) is refused."""
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", "from-the-environment")
    instance_yaml = yaml.safe_load((ROOT / "deploy" / "k8s" / "dagster.yaml").read_text())
    del instance_yaml["run_launcher"]["config"]["instance_config_map"]
    assert any("instance_config_map" in e for e in config_errors(instance_yaml))


@pytest.mark.parametrize("path", [f"deploy/{n}/{f}" for n in DEPLOYMENTS
                                  for f in ("definitions.py", "dagster.yaml")])
def test_readme_shows_the_deploy_files_verbatim(path):
    readme = (ROOT / "README.md").read_text()
    text = (ROOT / path).read_text()
    assert text.startswith(f"# {path}"), f"{path} must open with a comment naming it"
    assert text in readme, f"README.md must show {path} exactly as it is in the repository"
