"""The shared OData v4 client and the ``odata`` provider (any OData v4 service).

``select`` translates select statements to query options, ``client`` speaks HTTP (throttling,
paging, ``$batch``), ``metadata`` reads ``$metadata``, ``provider`` holds :class:`ODataProvider`,
which the ``dataverse`` provider extends.
"""

from l2sync_dagster.providers.odata.provider import ODataProvider

__all__ = ["ODataProvider"]
