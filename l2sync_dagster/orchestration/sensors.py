"""Sensors: run a connection's sync when one of its sides changed (``sensor:`` in its file).

Every evaluation asks each side the cheapest question that reveals a change
(``Provider.probe``: a delta/sync-state probe for Exchange, Graph and Dataverse,
``count``/``max(modified)`` for SQL, mtime and size for a file). The sensor's cursor (kept by
Dagster) is the JSON of both fingerprints; a run is requested only when it differs from the
cursor, with ``run_key`` = a hash of the fingerprints, so a tick evaluated twice never starts
two runs. The first evaluation requests a run: nothing proves the sides are in sync yet.

The probes run in a worker thread with a time limit (``sensor.timeout``): a hanging server
cannot stall the daemon. A probe that fails, times out, or a provider without ``probe``
becomes a ``SkipReason`` naming the side and the reason (secrets scrubbed); the cursor is kept,
so the next tick compares with the last good state. A sync writes to the other side, so a
bidirectional connection typically sees one more change after each run; that run finds
nothing to do.

Partitioned connections: a probe cannot tell which window changed, so the sensor requests the
window that holds "now" (the last partition).
"""

import hashlib
import json
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg

from l2sync_dagster.contract import Query
from l2sync_dagster.spec.connection_string import SECRET_KEYS, ConnectionString
from l2sync_dagster.spec.masking import mask_secrets
from l2sync_dagster.spec.model import ConnectionSpec

if TYPE_CHECKING:  # dagster does not export the type define_asset_job returns
    from dagster._core.definitions.unresolved_asset_job_definition import (
        UnresolvedAssetJobDefinition,
    )

SIDES = ("left", "right")
CHANGED_TAG = "l2sync/changed"


class ProbeFailed(RuntimeError):
    """A side could not be probed; the message says which and why (no secrets)."""


def _query(spec: ConnectionSpec, side: str) -> Query:
    e = spec.left if side == "left" else spec.right
    return Query(text=e.query, key=e.key, modified=e.modified)


def _secrets(spec: ConnectionSpec) -> list[str]:
    out = []
    for e in (spec.left, spec.right):
        try:
            cs = ConnectionString(e.connection_string)
        except Exception:  # an unresolvable reference has no value to leak
            continue
        for key in SECRET_KEYS:
            try:
                value = cs.secret(key)
            except Exception:
                continue
            if value is not None and value.reveal():
                out.append(value.reveal())
    return out


def scrub(text: str, spec: ConnectionSpec) -> str:
    """``text`` with every resolved secret of the connection replaced by ``***``."""
    for secret in _secrets(spec):
        text = text.replace(secret, "***")
    return text


def probe_sides(spec: ConnectionSpec, cursors: dict[str, str | None] | None = None
                ) -> dict[str, str]:
    """Both sides' fingerprints (``Sync.probe``: the providers opened as a run opens them).
    Raises ProbeFailed naming the side that could not answer."""
    from l2sync_dagster.sync.runner import Sync

    out: dict[str, str] = {}
    sync = Sync(spec)
    try:
        for side in SIDES:
            e = spec.left if side == "left" else spec.right
            try:
                out[side] = sync.probe(side, (cursors or {}).get(side))  # type: ignore[arg-type]
            except Exception as exc:
                text = str(exc)
                if not text.startswith(f"{side} side"):
                    text = f"{side} side ({e.provider}) probe failed: {type(exc).__name__}: {exc}"
                raise ProbeFailed(scrub(text, spec)[:1000]) from None
    finally:
        try:
            sync.close()
        except Exception:  # closing must not hide the probe's outcome
            pass
    return out


def probe_with_timeout(spec: ConnectionSpec, timeout: float, store_url: str | None = None
                       ) -> dict[str, str]:
    """``probe_sides`` (with the saved cursors) in a daemon thread, giving up after
    ``timeout`` seconds."""
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["value"] = probe_sides(spec, _saved_cursors(spec, store_url))
        except BaseException as exc:  # handed to the caller's thread
            box["error"] = exc

    worker = threading.Thread(target=work, name=f"l2sync-probe-{spec.dagster_name}",
                              daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise ProbeFailed(f"probing took longer than {timeout:g} s (sensor.timeout); "
                          "the systems may be slow or unreachable")
    if "error" in box:
        err = box["error"]
        if isinstance(err, ProbeFailed):
            raise err
        raise ProbeFailed(scrub(f"{type(err).__name__}: {err}", spec)[:1000])
    return box["value"]


def run_key_of(fingerprints: dict[str, str]) -> str:
    """The run key of a state: a hash of both sides' fingerprints."""
    data = json.dumps(fingerprints, sort_keys=True)
    return hashlib.sha256(data.encode()).hexdigest()[:40]


def build_connection_sensor(
    spec: ConnectionSpec, job: "UnresolvedAssetJobDefinition",
    partitions_def: dg.TimeWindowPartitionsDefinition | None = None,
    store_url: str | None = None,
) -> dg.SensorDefinition | None:
    """The connection's sensor when its file has ``sensor:``."""
    if spec.sensor is None:
        return None
    from l2sync_dagster.orchestration.assets import CONNECTION_TAG

    settings = spec.sensor

    @dg.sensor(
        name=f"{spec.dagster_name}_sensor", job=job,
        minimum_interval_seconds=settings.interval,
        default_status=dg.DefaultSensorStatus.STOPPED,
        description=f"runs {spec.name} when probing its sides shows a change",
    )
    def _sensor(context: dg.SensorEvaluationContext):
        try:
            fingerprints = probe_with_timeout(spec, settings.timeout, store_url)
        except ProbeFailed as exc:
            return dg.SkipReason(mask_secrets(str(exc)))
        old = json.loads(context.cursor) if context.cursor else {}
        if old == fingerprints:
            return dg.SkipReason("no change on either side since the last run request")
        changed = [s for s in SIDES if old.get(s) != fingerprints[s]]
        context.update_cursor(json.dumps(fingerprints, sort_keys=True))
        partition_key = None
        if partitions_def is not None:
            partition_key = partitions_def.get_last_partition_key()
        return dg.RunRequest(
            run_key=run_key_of(fingerprints), partition_key=partition_key,
            tags={CONNECTION_TAG: spec.dagster_name, CHANGED_TAG: ",".join(changed)},
        )

    return _sensor


def _saved_cursors(spec: ConnectionSpec, store_url: str | None) -> dict[str, str | None]:
    """The sides' last read cursors (for providers whose probe asks "anything since?")."""
    try:
        from l2sync_dagster.state.store import StateStore, default_state_url

        store = StateStore(store_url or default_state_url(Path(spec.project_dir)))
        try:
            return store.latest_cursors(spec.name)
        finally:
            store.close()
    except Exception:  # the store is a hint here; a probe without a cursor is still correct
        return {}


def build_for_each_sensor(spec: ConnectionSpec,
                          store_url: str | None = None) -> dg.SensorDefinition | None:
    """The sensor keeping a ``for_each`` connection's dynamic partitions equal to its values:
    it adds the new ones and removes the ones gone (``on_remove: clear`` also forgets their
    state: archive, cursors, journal; the records already synced stay where they are). It
    requests no runs: a schedule, a backfill or a user does. Running by default, as the
    partitions are what the UI lists."""
    if spec.for_each is None:
        return None
    from l2sync_dagster.orchestration.assets import CONNECTION_TAG
    from l2sync_dagster.orchestration.partitions import for_each_partitions_name
    from l2sync_dagster.sync.for_each import for_each_values

    name = for_each_partitions_name(spec)

    @dg.sensor(name=f"{spec.dagster_name}_for_each_sensor", minimum_interval_seconds=60,
               default_status=dg.DefaultSensorStatus.RUNNING,
               tags={CONNECTION_TAG: spec.dagster_name},
               description=f"keeps the partitions of {spec.name} equal to its for_each values")
    def _sensor(context: dg.SensorEvaluationContext):
        try:
            found = for_each_values(spec)
        except Exception as exc:  # the partitions stay as they are until the source answers
            return dg.SkipReason(mask_secrets(f"for_each values not read: {exc}"))
        for why in found.refused[:10]:
            context.log.warning(f"for_each value refused: {why}")
        current = set(context.instance.get_dynamic_partitions(name))
        wanted = set(found.values)
        added, removed = sorted(wanted - current), sorted(current - wanted)
        if not added and not removed:
            return dg.SkipReason(f"{len(wanted)} partitions, none added or removed")
        if removed and spec.for_each.on_remove == "clear":  # type: ignore[union-attr]
            _clear_state(spec, removed, store_url)
        requests: list[Any] = []
        if added:
            requests.append(dg.AddDynamicPartitionsRequest(name, added))
        if removed:
            requests.append(dg.DeleteDynamicPartitionsRequest(name, removed))
        context.log.info(f"partitions of {spec.name}: {len(added)} added, "
                         f"{len(removed)} removed")
        return dg.SensorResult(dynamic_partitions_requests=requests)

    return _sensor


def _clear_state(spec: ConnectionSpec, values: list[str], store_url: str | None) -> None:
    """Forget the archive, cursors and journal of the partitions of ``values``."""
    from l2sync_dagster.state.store import StateStore, default_state_url

    store = StateStore(store_url or default_state_url(Path(spec.project_dir)))
    try:
        for value in values:
            store.reset(spec.for_value(value).name)
    finally:
        store.close()
