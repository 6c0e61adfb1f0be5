"""The environment variables the demo connection files read, for a running sandbox."""

from collections.abc import Mapping
from pathlib import Path

from l2sync_dagster.sandbox import identities

#: the SharePoint list the Dynamics demo writes to (the Graph sandbox serves this site)
DEMO_LIST_URL = "https://sandbox.sharepoint.com/sites/sales/Lists/Customers"


def sandbox_environment(urls: Mapping[str, str], ca_path: Path | str) -> dict[str, str]:
    """``L2SYNC_SANDBOX_*`` (and ``EWS_PASSWORD``) for the services in ``urls``.

    The values are the sandbox's demo credentials, which are public by design; a real
    deployment sets these variables to references of its own secrets.
    """
    env = {"L2SYNC_SANDBOX_CA": str(ca_path)}
    if "ews" in urls:
        env["L2SYNC_SANDBOX_EWS_URL"] = f"{urls['ews']}/EWS/Exchange.asmx"
        env["EWS_PASSWORD"] = identities.USERS[identities.SERVICE_USER]
    if "token" in urls:
        env["L2SYNC_SANDBOX_AUTHORITY"] = f"{urls['token']}/{identities.TENANT}"
        env["L2SYNC_SANDBOX_CLIENT_SECRET"] = identities.CLIENT_SECRET
    if "graph" in urls:
        env["L2SYNC_SANDBOX_GRAPH_URL"] = f"{urls['graph']}/v1.0"
        env["L2SYNC_SANDBOX_SP_URL"] = DEMO_LIST_URL
    if "dataverse" in urls:
        env["L2SYNC_SANDBOX_DATAVERSE_URL"] = f"{urls['dataverse']}/api/data/v9.2/accounts"
    return env
