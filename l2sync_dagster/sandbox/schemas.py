"""Where Microsoft's schema files are: the sandbox validates against them when it finds them.

They are never part of the repository. Looked up, in order: the folder named by
``L2SYNC_EWS_SCHEMA`` / ``L2SYNC_GRAPH_SCHEMA``; ``<L2SYNC_SHARED>/ews-schema`` ...;
``../shared/...`` from the current directory and from the project checkout. Under ``CI=true``
a missing folder is an error, elsewhere a one-line notice.
"""

import os
from pathlib import Path

_PROJECT = Path(__file__).resolve().parents[2]

#: kind -> (environment variable, folder name under shared/, file that must exist)
KINDS: dict[str, tuple[str, str, str]] = {
    "ews": ("L2SYNC_EWS_SCHEMA", "ews-schema", "ews-all.xsd"),
    "graph": ("L2SYNC_GRAPH_SCHEMA", "graph-schema", "graph-v1.0-csdl.xml"),
}


class SchemaMissing(RuntimeError):
    """The schema files are required (CI) but were not found."""


def find_schema_dir(kind: str) -> Path | None:
    """The folder holding the ``kind`` schema files, or None."""
    env, folder, marker = KINDS[kind]
    candidates: list[Path] = []
    if os.environ.get(env):
        candidates.append(Path(os.environ[env]))
    if os.environ.get("L2SYNC_SHARED"):
        candidates.append(Path(os.environ["L2SYNC_SHARED"]) / folder)
    candidates += [Path.cwd().parent / "shared" / folder, _PROJECT.parent / "shared" / folder]
    for c in candidates:
        if (c / marker).is_file():
            return c
    return None


def schema_dir_or_notice(kind: str) -> tuple[Path | None, str]:
    """``(folder, one-line notice)``; raises :class:`SchemaMissing` under ``CI=true``."""
    found = find_schema_dir(kind)
    env, folder, _ = KINDS[kind]
    if found is not None:
        return found, f"{kind}: validating against {found}"
    message = (f"{kind}: Microsoft's schema files not found (set {env} or put them in "
               f"../shared/{folder}); serving without validation")
    if os.environ.get("CI", "").lower() == "true":
        raise SchemaMissing(message)
    return None, message
