"""The Microsoft Graph client shared by the Graph-based providers (sharepoint, exchange/graph).

``GraphClient`` (client.py) does authentication (msal through :mod:`..msauth`), retries with
throttling (throttle.py), ``@odata.nextLink`` paging, delta queries (delta.py) and JSON
``$batch`` writes (batch.py).
"""

from l2sync_dagster.providers.graph.batch import BatchRequest, BatchResult
from l2sync_dagster.providers.graph.client import GRAPH_KEYS, GraphClient, GraphError
from l2sync_dagster.providers.graph.delta import DeltaResult

__all__ = ["GRAPH_KEYS", "BatchRequest", "BatchResult", "DeltaResult", "GraphClient",
           "GraphError"]
