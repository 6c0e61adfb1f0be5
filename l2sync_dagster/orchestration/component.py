"""``L2SyncConnections``: the connection factory as a Dagster Component for ``dg`` projects.

A thin layer over :func:`~l2sync_dagster.orchestration.definitions.build_definitions`, as
dagster-sling and dagster-dlt wrap their factories: ``defs.yaml`` names a folder of connection
files and a few overrides; the asset graphs, jobs and schedules are exactly the ones
``definitions.py`` builds from the same folder. Unlike the plain factory (which logs a broken
file and loads the rest), the component refuses to load while any connection file is broken, so
``dg check defs`` fails and prints every problem with its file and line.

.. code-block:: yaml

    # <project>/defs/connections/defs.yaml
    type: l2sync_dagster.orchestration.component.L2SyncConnections
    attributes:
      path: "{{ context.project_root }}/connections"   # relative paths: from this folder
      exclude: [nightly_export]
      schedules: false
      tags: {team: crm}
"""

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Annotated, Any

import dagster as dg

from l2sync_dagster.orchestration.assets import CONNECTION_TAG, FOR_EACH_TAG
from l2sync_dagster.orchestration.component_scaffold import L2SyncConnectionsScaffolder
from l2sync_dagster.orchestration.definitions import build_definitions
from l2sync_dagster.spec.loader import ConnectionFileError, load_connections
from l2sync_dagster.spec.model import ConnectionSpec, dagster_name_of, display_path_of


class ConnectionFilesError(dg.DagsterInvalidDefinitionError):
    """Connection files that do not load, or include/exclude names that match no file.

    The message holds one line per problem: ``<file> line <n>: <message>``.
    """

    def __init__(self, folder: Path, problems: Sequence[str]) -> None:
        self.folder = folder
        self.problems = tuple(problems)
        count = len(self.problems)
        head = (f"L2SyncConnections: {count} problem{'s' if count != 1 else ''} in "
                f"{display_path_of(folder)}:")
        super().__init__("\n".join([head, *(f"  {p}" for p in self.problems)]))


@dg.scaffold_with(L2SyncConnectionsScaffolder)
class L2SyncConnections(dg.Component, dg.Model, dg.Resolvable):
    """Every connection file of a folder as an asset graph and a job, plus the schedule and
    sensor the file declares.

    The same graphs as ``build_definitions(path)``; a broken connection file fails the load
    with its file and line (``dg check defs`` reports it).
    """

    path: Annotated[str, dg.Resolver.default(
        description="Folder of connection files (*.yaml). A relative path starts at the folder "
        "of this defs.yaml; '{{ context.project_root }}/connections' names the project's.",
    )]
    include: Annotated[list[str] | None, dg.Resolver.default(
        description="Only these connections (file names without .yaml, or their Dagster "
        "names); default: all of them.",
    )] = None
    exclude: Annotated[list[str], dg.Resolver.default(
        description="Connections to leave out (applied after include).",
    )] = []
    state_url: Annotated[str | None, dg.Resolver.default(
        description="SQLAlchemy URL of the state store (the archive). Default: "
        "$L2SYNC_STATE_URL, else .l2sync/state.db next to the connections folder. Give a "
        "password through the environment ('{{ env.L2SYNC_STATE_URL }}'), never literally.",
    )] = None
    schedules: Annotated[bool, dg.Resolver.default(
        description="false: leave out the schedules the connection files declare.",
    )] = True
    tags: Annotated[dict[str, str], dg.Resolver.default(
        description="Tags added to every asset of every connection.",
    )] = {}

    def folder(self, context: dg.ComponentLoadContext) -> Path:
        """The connections folder, relative paths resolved against the component's folder."""
        path = Path(self.path).expanduser()
        return path if path.is_absolute() else (context.path / path).resolve()

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        """The factory's definitions for the selected connections, with the overrides."""
        folder = self.folder(context)
        specs, errors = load_connections(folder)
        problems = [line for err in errors for line in _problem_lines(err)]
        chosen = self._select(specs, problems)
        if problems:
            raise ConnectionFilesError(folder, problems)
        defs = build_definitions(folder, store_url=self.state_url)
        keep = {spec.dagster_name for spec in chosen}
        if keep != {spec.dagster_name for spec in specs}:
            defs = _only_connections(defs, keep)
        if not self.schedules:
            defs = _rebuild(defs, schedules=[])
        if self.tags:
            extra = dict(self.tags)
            defs = defs.map_asset_specs(func=lambda s: s.merge_attributes(tags=extra))
        return defs

    def _select(self, specs: list[ConnectionSpec], problems: list[str]) -> list[ConnectionSpec]:
        """The specs include/exclude keep; a name matching no connection is a problem."""
        def matches(spec: ConnectionSpec, name: str) -> bool:
            return name == spec.name or dagster_name_of(name) == spec.dagster_name

        known = sorted(spec.name for spec in specs)
        for field, names in (("include", self.include or []), ("exclude", self.exclude)):
            for name in names:
                if not any(matches(spec, name) for spec in specs):
                    problems.append(f"{field}: no connection named {name!r}; available: "
                                    f"{', '.join(known) or 'none'}")
        chosen = specs
        if self.include is not None:
            chosen = [s for s in chosen if any(matches(s, n) for n in self.include)]
        return [s for s in chosen if not any(matches(s, n) for n in self.exclude)]


def _problem_lines(err: ConnectionFileError) -> list[str]:
    return [problem.format(err.path) for problem in err.problems]


def _connection_of(obj: Any, job_owners: dict[str, str | None]) -> str | None:
    """The connection a definition belongs to (its l2sync/connection tag, or for a sensor or
    schedule the tag of the job it targets); None when it belongs to none (kept)."""
    if isinstance(obj, dg.AssetsDefinition):
        names = {spec.tags.get(CONNECTION_TAG) for spec in obj.specs}
        return names.pop() if len(names) == 1 else None
    if isinstance(obj, dg.AssetSpec):
        return obj.tags.get(CONNECTION_TAG)
    tags = getattr(obj, "tags", None) or {}
    for tag in (CONNECTION_TAG, FOR_EACH_TAG):
        if tag in tags:
            return tags[tag]
    if isinstance(obj, dg.SensorDefinition | dg.ScheduleDefinition):
        owners = {job_owners.get(t.job_name) for t in obj.targets if t.job_name in job_owners}
        return owners.pop() if len(owners) == 1 else None
    return None


def _only_connections(defs: dg.Definitions, keep: set[str]) -> dg.Definitions:
    """``defs`` without the definitions that belong to a connection outside ``keep``."""
    job_owners = {job.name: _connection_of(job, {}) for job in defs.jobs or ()}

    def kept(items: Iterable[Any] | None) -> list[Any]:
        return [o for o in items or ()
                if (owner := _connection_of(o, job_owners)) is None or owner in keep]

    return _rebuild(defs, assets=kept(defs.assets), jobs=kept(defs.jobs),
                    schedules=kept(defs.schedules), sensors=kept(defs.sensors),
                    asset_checks=kept(defs.asset_checks))


def _rebuild(defs: dg.Definitions, **changes: Any) -> dg.Definitions:
    """A copy of ``defs`` with some of its fields replaced."""
    fields: dict[str, Any] = dict(
        assets=defs.assets, schedules=defs.schedules, sensors=defs.sensors, jobs=defs.jobs,
        resources=defs.resources, executor=defs.executor, loggers=defs.loggers,
        asset_checks=defs.asset_checks, metadata=defs.metadata,
    )
    fields.update(changes)
    return dg.Definitions(**fields)
