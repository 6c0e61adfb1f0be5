"""A strict Dataverse (Dynamics 365 Web API v9.2) sandbox server.

Endpoint: ``https://127.0.0.1:PORT/api/data/v9.2/`` (the ``dataverse`` URL ``l2sync sandbox``
prints; trust its ``ca`` file). Every request needs ``Authorization: Bearer <token>`` from the
token service for the resource = the base URL: msal scope ``https://127.0.0.1:PORT/.default``
(user tokens by ROPC and app tokens by client credentials both work). Without a valid token:
401, empty body, ``WWW-Authenticate: Bearer authorization_uri=<token url>/<tenant id>/oauth2/
authorize, resource_id=<base>/``.

Tables (``$metadata`` is the CSDL; ``EntityDefinitions(LogicalName='account')`` and
``.../Attributes`` give ``IsValidForCreate``/``IsValidForUpdate``/``AttributeType``/
``Targets``; ``$metadata?annotations=true`` adds ``Org.OData.Core.V1.Computed`` on read-only
columns and ``Org.OData.Capabilities.V1.ChangeTracking`` per entity set):

- ``accounts`` (``accountid``): name, accountnumber, telephone1, emailaddress1, websiteurl,
  address1_city, address1_country, description, revenue (money, Edm.Decimal),
  numberofemployees, creditonhold (bool), industrycode (option set 1..12), statecode (0/1),
  statuscode (1/2), ``_primarycontactid_value`` (lookup -> contact, bind
  ``primarycontactid@odata.bind: "/contacts(<guid>)"``).
- ``contacts`` (``contactid``): firstname, lastname, fullname (read-only), emailaddress1,
  telephone1, jobtitle, birthdate (Edm.Date), gendercode (1/2), donotemail,
  statecode/statuscode, ``_parentcustomerid_value`` (bind
  ``parentcustomerid_account@odata.bind: "/accounts(<guid>)"``).
- ``new_projects`` (``new_projectid``, NO change tracking): new_name, new_budget (money),
  new_startdate (date), new_status (100000000..2), ``_new_accountid_value`` (bind
  ``new_accountid@odata.bind``).
- Every table: createdon, modifiedon (Edm.DateTimeOffset, read-only), versionnumber (Int64,
  read-only). Deleting a row clears lookups pointing to it (those rows change).

Reads: ``GET <set>`` with ``$select $filter $orderby $top $count $expand`` (single-valued
navigation only, ``nav($select=...)``); ``+`` in the query decodes as a space, so send spaces
as ``%20`` and a literal plus as ``%2B``. Filter: see :mod:`.query` (eq ne gt ge lt le, and or
not, parentheses, contains/startswith/endswith, literals 'O''Brien', GUID, numbers, dates,
date-times, true/false, null); string comparisons ignore case. Paging: ``Prefer:
odata.maxpagesize=N`` (default and maximum 5000) -> ``@odata.nextLink`` (send the Prefer
header again on every page); with ``$top`` no paging. ``GET <set>(<guid>)`` -> the record and
``ETag``; ``If-None-Match: W/"v"`` -> 304. ``GET <set>/$count`` -> plain number. ``WhoAmI``.
``Prefer: odata.include-annotations="OData.Community.Display.V1.FormattedValue"`` (or ``*``)
adds ``<col>@OData.Community.Display.V1.FormattedValue`` (option labels, lookup names, money
``$1,234.50``, dates); ``*`` also ``@Microsoft.Dynamics.CRM.lookuplogicalname`` and
``associatednavigationproperty`` on lookups. Every row carries ``@odata.etag`` =
``W/"<versionnumber>"``.

Change tracking: ``Prefer: odata.track-changes`` (only ``$select`` allowed with it, else 400)
-> all rows, last page has ``@odata.deltaLink`` (``...?$select=...&$deltatoken=...``); GET
that link -> changed rows plus ``{"@odata.context": ".../$metadata#accounts/$deletedEntity",
"id": <guid>, "reason": "deleted"}``, and a new ``@odata.deltaLink``. ``new_projects`` answers
400 ``0x80072491`` "Entity new_project isn't enabled for change tracking." (fall back to
``modifiedon``). An expired token answers 400 ``0x80044352`` "Version stamp associated with the
client has expired. Please perform a full sync." (after ``faults.expire_cursors``, the
control endpoint, or a reset of the data).

Writes: ``POST <set>`` -> 204 + ``OData-EntityId: <base>/api/data/v9.2/<set>(<guid>)`` (and
``ETag``); ``Prefer: return=representation`` -> 201 + the record. A primary key in the body
creates with that id (412 ``0x80040237`` if it exists). ``PATCH <set>(<guid>)``: update
(204/200 with return=representation); without ``If-Match`` it is an upsert (creates when
missing); ``If-Match: W/"v"`` mismatch -> 412 ``0x80060882``; ``If-Match: *`` -> 404 when
missing; ``If-None-Match: *`` -> create only (412 ``0x80040237`` when it exists). ``DELETE
<set>(<guid>)`` -> 204 (``If-Match`` honoured). Strict bodies: unknown property -> 400
``0x80060888`` "The property 'x' does not exist on type 'Microsoft.Dynamics.CRM.account'...";
wrong JSON type -> 400 ``0x80060888``; read-only column -> 400 ``0x80040203``; option value
out of range -> 400 ``0x8004431A``; string too long -> 400 ``0x80044331``; ``_x_value`` in a
body -> 400 (use the ``@odata.bind``); unknown bound record -> 404 ``0x80040217``.

``POST $batch``: multipart/mixed with change sets or JSON ``{"requests": [{"id", "method",
"url", "headers", "body", "atomicityGroup", "dependsOn"}]}``; see :mod:`.batch` (max 1000
requests, atomic change sets, stops at the first error unless ``Prefer:
odata.continue-on-error``, ``$<Content-ID>`` references).

Errors: ``{"error": {"code": "0x...", "message": "..."}}``; 404 ``0x80040217`` "account With
Id = <guid> Does Not Exist". Throttling (``faults.throttle_fraction``): 429, ``Retry-After``
(whole seconds, ceil of ``throttle_ms``, at least 1), code ``0x80072322``; a ``$batch`` is
throttled as a whole.

Counters (``GET /_sandbox/stats``): ``<set>.list``, ``.track`` (first change-tracking read),
``.delta``, ``.get``, ``.create``, ``.update``, ``.upsert``, ``.delete``, ``.count``,
``metadata``, ``entitydefinitions``, ``whoami``, ``batch`` (plus one count per request inside
a batch), ``unauthorized``; ``throttled`` and ``rejected_requests`` as totals.

Control (``/_sandbox/dataverse/...``): ``POST seed {"set", "count"}``, ``GET rows/<set>``,
``GET|PATCH|DELETE rows/<set>/<id>`` (change behind the client's back),
``POST expire-delta-tokens``, ``POST token {"user"|"app"}`` (test convenience only).
Demo data on reset: 20 accounts, 30 contacts linked to them, 5 projects. ``--state`` keeps the
data in ``dataverse.json``.
"""

from l2sync_dagster.sandbox.dataverse.service import DataverseService

__all__ = ["DataverseService"]
