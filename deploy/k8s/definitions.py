# deploy/k8s/definitions.py
"""Each run is a Kubernetes job (the run launcher in dagster.yaml) and each step of a run a pod
of its own; every pod gets the state store URL and the secrets from the Kubernetes secret
``l2sync-secrets``, and nothing is kept on a pod's disk."""

from pathlib import Path

from dagster_k8s import k8s_job_executor

from l2sync_dagster.orchestration.definitions import build_definitions

defs = build_definitions(
    Path(__file__).resolve().parents[2] / "connections",
    executor=k8s_job_executor.configured({
        "env_secrets": ["l2sync-secrets"],  # L2SYNC_STATE_URL, GRAPH_SECRET, PGPASSWORD, ...
        "max_concurrent": 16,
    }),
)
