"""A strict Microsoft Graph v1.0 sandbox: Outlook data (contacts, events, To Do, mail) and
SharePoint lists, served over HTTPS on a loopback port by ``l2sync sandbox``
(``graph https://127.0.0.1:P``; trust the CA printed as ``ca PATH``).

Guide for client code
=====================

Authentication: ``Authorization: Bearer <token>`` from the token service
(:mod:`l2sync_dagster.sandbox.token_service`, msal with ``authority={token url}/sandbox``).
Ask for scope ``https://127.0.0.1:P/.default`` (this server's base URL) or
``https://graph.microsoft.com/.default``. Client credentials (``l2sync-sandbox``/``sandbox``)
give an app token that may open every mailbox; ROPC (``sync@sandbox.test``/``sandbox``) gives
a user token that may open its own mailbox and those it is delegate of (``sync@`` -> ``sales@``);
``/me`` works with user tokens only. Missing/expired/wrong-audience token: 401
``InvalidAuthenticationToken``; another user's mailbox: 403 ``ErrorAccessDenied``.

Endpoints (all under ``/v1.0``; ``{u}`` = UPN or user id):

- ``/users``, ``/users/delta`` (``@removed`` ``reason: changed`` for a deleted user),
  ``/users/{u}``, ``/me``: the directory (:mod:`.directory`: the demo users, the contractor
  without a mailbox and the generated staff, with realistic profiles); an app token needs
  ``User.Read.All`` (or ``Directory.Read.All``), else 403 ``Authorization_RequestDenied``
- ``/users/{u}/contacts[/{id}|/delta]`` (default folder), ``/users/{u}/contactFolders[/{id}]``
  (the folders of the default Contacts folder; POST creates one there),
  ``/users/{u}/contactFolders/{id}/childFolders[/{id}/...]`` (GET, POST; nest at will),
  ``/users/{u}/contactFolders/{id}/contacts[/{id}|/delta]``; a sibling with the same
  display name is 409 ``ErrorFolderExists``; DELETE of a folder removes its subtree
- ``/users/{u}/events[/{id}]`` (POST/PATCH/DELETE; ``recurrence`` makes a series master),
  ``/users/{u}/calendarView?startDateTime=..&endDateTime=..`` (series expanded into
  occurrences: daily, weekly, absoluteMonthly, absoluteYearly; relative patterns yield only the
  first occurrence; occurrence ids are ``{master id}_OCCyyyymmdd``; instances carry
  ``originalStart``), ``GET|PATCH|DELETE /users/{u}/events/{occurrence id}`` (PATCH of start,
  end, subject, location, body, showAs, importance, sensitivity, reminder, categories makes it
  an ``exception``; DELETE cancels it: the master lists it in ``cancelledOccurrences``, which
  is returned only when selected; ``$expand=exceptionOccurrences`` on an event lists the
  exceptions; a PATCH of the master's recurrence, start or end drops both),
  ``/users/{u}/calendarView/delta?startDateTime=..&endDateTime=..`` (a cancelled occurrence
  is reported ``@removed``),
  ``/users/{u}/events/{id}/instances?startDateTime=..&endDateTime=..``, ``/users/{u}/calendar``
  (also ``/calendar/events``, ``/calendar/calendarView``)
- ``/users/{u}/todo/lists[/{id}]``, ``/users/{u}/todo/lists/{id}/tasks[/{id}|/delta]``;
  every mailbox has the default list "Tasks" (``wellknownListName: defaultList``, cannot be
  deleted: 400)
- ``/users/{u}/mailFolders[/{id or msgfolderroot|inbox|sentitems|drafts|deleteditems|
  archive}]`` (``/mailFolders`` lists the root's folders; POST creates one there; PATCH,
  DELETE of a folder that is not well-known: 403 ``ErrorDeleteDistinguishedFolder``),
  ``/users/{u}/mailFolders/{id}/childFolders[/{id}/...]`` (GET, POST),
  ``/users/{u}/mailFolders/{id}/messages[/{id}|/delta]``, ``/users/{u}/messages[/{id}]`` (every
  folder); ``childFolders`` is served only where the CSDL declares it
- ``/sites/{hostname}:/sites/{path}`` (also ``...:/lists/...``), ``/sites/{site-id}``,
  ``/sites/{id}/lists`` (GET, POST with ``displayName`` + ``columns``),
  ``/sites/{id}/lists/{list id or display name}``, ``.../columns`` (GET, POST),
  ``.../items`` (GET with ``expand=fields(select=A,B)``, POST ``{"fields": {...}}``),
  ``.../items/{id}`` (GET, PATCH ``{"fields": ..}``, DELETE), ``.../items/{id}/fields`` (GET,
  PATCH), ``.../items/delta`` (fields included)
- ``/groups`` (``$filter`` on ``mail`` or ``proxyAddresses/any(p: p eq 'SMTP:..')``),
  ``/groups/{id}``, ``/groups/{id}/transitiveMembers`` (users and nested groups, each once,
  typed by ``@odata.type``), ``/groups/{id}/transitiveMembers/microsoft.graph.user`` (GET only;
  see :mod:`.groups`); an app token needs the role ``GroupMember.Read.All`` (or
  ``Group.Read.All``, ``Directory.Read.All``), else 403 ``Authorization_RequestDenied``;
  an unknown group id is 404 ``Request_ResourceNotFound``
- ``POST /$batch``: at most 20 requests, relative URLs (``/users/...``), ``dependsOn`` (a failed
  dependency gives 424); a POST/PATCH without a body or an inner ``Content-Type`` header fails
  the whole batch (400, as Graph does); each inner request is counted and throttled on its own.

Query options: ``$select`` (unknown property: 400), ``$top`` (Outlook max 1000, default 10;
list items max 5000, default 200; users/sites/lists/columns max 999, default 100;
``Prefer: odata.maxpagesize=N`` sets the page size when ``$top`` is absent),
``$skip``, ``$filter`` (eq ne gt ge lt le, and/or/not, ``startswith``,
``x/any(a: a/p eq 'v')``; anything else 400), ``$orderby``,
``$expand=singleValueExtendedProperties($filter=id eq '...')``, ``$expand=exceptionOccurrences``
(events); any other ``$`` option
(``$count``, ``$search``, ...) is a 400.
Filtering list items on ``fields/X`` needs ``Prefer: HonorNonIndexedQueriesWarningMayFailRandomly``
unless column X is indexed (``City`` in the demo list is). Paging: ``@odata.nextLink`` with an
opaque ``$skiptoken``. Delta: pages by ``Prefer: odata.maxpagesize=N`` (or ``$top``), then
``@odata.deltaLink``; deletes are ``{"id", "@removed": {"reason": "deleted"}}`` (Outlook) or
``{"id", "deleted": {"state": "deleted"}}`` (list items); an expired token is 410
``syncStateNotFound`` (Outlook) or ``resyncRequired`` (list items, with ``Location``).

Prefer: ``outlook.timezone="<Windows or IANA name>"`` converts dateTimeTimeZone values
(all-day events stay floating), ``outlook.body-content-type="text"|"html"``.

Writes: bodies are checked against Microsoft's CSDL (unknown or mistyped property: 400
``invalidRequest``); server-managed properties (id, changeKey, created/lastModifiedDateTime,
parentFolderId) are ignored. dateTimeTimeZone values are stored in UTC. ``If-Match`` with a
stale ``@odata.etag``: 412 (``ErrorIrresolvableConflict`` / ``resourceModified``).
``singleValueExtendedProperties`` are writable in POST/PATCH (merged by id) and returned only
when expanded. List item ``fields`` are checked against the list's columns: unknown field ->
``Field 'X' is not recognized``; read-only (ID, Created, Modified, Author, Editor, ...) ->
``Field 'X' is read-only``; lookup and person columns are written as ``XLookupId`` (site user
ids: sync@ 7, alice@ 8, sales@ 9). Ids are opaque strings (list items: "1", "2", ...).

Faults (``POST /_sandbox/faults``): ``throttle_fraction`` -> 429 ``TooManyRequests`` with
``Retry-After`` = ceil(``throttle_ms``/1000) s (omitted when ``throttle_hint`` is false);
``expire_cursors`` -> every delta/skip token presented is 410.

Control API (``/_sandbox/graph/...``, JSON):

- ``POST seed/contacts`` ``{"user", "folder"?, "count", "prefix"?}`` -> ``{"created", "folder"}``
- ``POST seed/messages`` ``{"user", "folder": "inbox", "count"}``
- ``POST seed/items`` ``{"site"?: "host:/sites/path", "list": "Customers", "count"}``
- ``POST sites`` ``{"hostname", "path", "displayName"}``; ``POST lists`` ``{"site",
  "displayName", "columns": [{"name", "type": text|number|boolean|dateTime|choice|lookup|
  personOrGroup|currency, "choices"?, "indexed"?, "readOnly"?, "hidden"?, "required"?}]}``
- ``POST inspect`` ``{"path": "/users/sync@sandbox.test/contacts"}`` -> every entity (all
  pages), read as the app and not counted
- ``POST app-roles`` ``{"client"?: "l2sync-sandbox", "roles": [...]}``: the application
  permissions of a client id from now on (the demo app holds ``GroupMember.Read.All``; reset
  restores it)
- ``POST directory/update`` ``{"user": upn or id, "properties": {"department": ...}}`` and
  ``POST directory/delete`` ``{"user": ...}``: change or delete a directory user (the next
  ``/users/delta`` round reports it)
- ``POST expire-delta``: every delta token handed out so far answers 410

Counters (``GET /_sandbox/stats``): ``<resource>.<list|get|create|update|delete|delta>`` with
resources ``users contacts contactFolders events eventInstances calendars calendarView todoLists
todoTasks mailFolders messages sites lists columns listItems groups groupMembers``, plus
``batch``; requests refused before routing (auth, throttling) are counted under
``unauthorized`` or a guessed name.

Demo data (on start and reset): contacts in sales@ (5) and sync@ (3); events for sync@ (one
meeting, one all-day, a weekly series of 10); the default To Do list "Tasks" (empty) and a
list "Follow-ups" with 3 tasks; 3 inbox messages for sync@; mail folders Inbox/Projects/Alpha
and Inbox/Projects/Beta for sync@ and sales@ (as in the EWS demo), the message "Alpha kickoff"
in sync@'s Inbox/Projects/Alpha; site ``sandbox.sharepoint.com:/sites/sales`` with list
``Customers``
(Title, Email, Phone, City, Revenue currency, Active boolean, Since dateTime, Tier choice
Gold/Silver/Bronze, Owner personOrGroup) holding 5 items.
Groups: ``all-staff@sandbox.test`` (sync@, alice@, contractor@ (a directory user without a
mailbox: no mail) and the nested ``sales-team@sandbox.test``, which holds sales@ and alice@).
``--state DIR`` keeps the data in
``DIR/graph.json`` across restarts.

Without Microsoft's CSDL (``../shared/graph-schema``) the server runs unchecked and says so in
its start notice; under ``CI=true`` it refuses to start.
"""

from l2sync_dagster.sandbox.graph.service import GraphService

__all__ = ["GraphService"]
