"""Strict Exchange Web Services sandbox that exchangelib talks to unchanged.

Endpoint: ``http://127.0.0.1:PORT/EWS/Exchange.asmx`` (plain HTTP, ``l2sync sandbox`` prints
``ews http://127.0.0.1:PORT``). Reports Exchange 2016 (``ServerVersionInfo`` 15.1, API version
``Exchange2016``). Like Exchange 2016 it accepts every ``RequestServerVersion`` from
``Exchange2007`` to ``Exchange2016`` (answered the same way); any other version gets an
``ErrorInvalidServerVersion`` fault.

Auth: ``NTLM`` (connection based, :mod:`l2sync_dagster.sandbox.ntlm`; ``user@sandbox.test``
or ``SANDBOX\\user``) or ``Basic`` for the demo users (``sync@``/``alice@``/
``sales@sandbox.test``, password ``sandbox``), or ``Bearer`` tokens from the token service for
audience ``https://outlook.office365.com`` or this server's base URL; otherwise 401 with
``WWW-Authenticate: NTLM, Bearer, Basic realm=...``. Mailbox access follows
:mod:`l2sync_dagster.sandbox.identities`: ``ExchangeImpersonation`` by a principal without the
role -> fault ``ErrorImpersonateUserDenied``; app tokens must impersonate; a mailbox the caller
may not open -> ``ErrorAccessDenied``; unknown mailbox -> ``ErrorNonExistentMailbox``.

Mailboxes: besides the standard folders (Inbox ... Journal) the folders Exchange Online makes
(Outbox, Junk Email, Conversation History, Sync Issues with Conflicts/Local Failures/Server
Failures, GAL Contacts and Recipient Cache under Contacts, and in the root Recoverable Items
with Deletions/Purges/Versions, Finder, Common Views, Reminders ...); those cannot be deleted
(``ErrorDeleteDistinguishedFolder`` / ``ErrorCannotDeleteObject``), moved or renamed.
``DeleteItem`` SoftDelete moves an item to Recoverable Items\\Deletions.

FindItem's ``QueryString`` takes a subset of AQS (:mod:`l2sync_dagster.sandbox.ews.aqs`). A
message's sender or recipient given by address only is stored with the address as its Name.
Recurring tasks: see :mod:`l2sync_dagster.sandbox.ews.tasks` (completing one splits the
occurrence off as a one-off task). A folder answers PidTagMessageSize (0x0E08).

Operations: GetFolder, FindFolder (Shallow/Deep, IndexedPageFolderView), CreateFolder,
DeleteFolder, UpdateFolder (DisplayName; a changed FolderClass is ErrorObjectTypeChanged; a
folder that is gone ErrorItemNotFound), MoveFolder (same FolderId), EmptyFolder,
SyncFolderHierarchy, GetItem, FindItem (Restriction, SortOrder,
IndexedPageItemView, CalendarView), CreateItem, UpdateItem,
DeleteItem, MoveItem (the moved item gets a new ItemId, as on Exchange; so does one moved to
Deleted Items), CopyItem, SyncFolderItems, CreateAttachment, GetAttachment, DeleteAttachment,
ConvertId, ResolveNames, FindPeople (the global address list, over the Graph sandbox's
directory users). Any other operation of the
schema is a SOAP fault ``ErrorInvalidOperation`` (not ``ErrorInvalidRequest``, which clients
take for a wrong ``RequestServerVersion`` and retry with every version). Items: Contact,
DistributionList, CalendarItem, Task, Message (notes are ``IPM.StickyNote`` messages in Notes),
PostItem, with extended properties (returned only when asked for, as Exchange does).
File and item attachments (with the item in CreateItem, or CreateAttachment) get
AttachmentIds; GetItem lists them without content and sets HasAttachments, GetAttachment
returns them whole, a removed one is ``ErrorInvalidAttachmentId``; FindItem returns none.
GetItem derives ``TextBody`` and, when none was stored, ``MimeContent``; a message created
with MimeContent takes the Subject, Body and From it lacks from the MIME message.
Booleans are answered as true/false; times to the second in UTC. A Subject longer than 255
characters is cut there; a longer GivenName/MiddleName/Surname is ``ErrorPropertyUpdate``.
A ChangeKey the sandbox could not have issued is ``ErrorInvalidChangeKey``. Restrictions on
Categories match any one category, ignoring case; sorting puts empty values first
(ascending). A ``t:Folder`` created without FolderClass has none; UnreadCount counts items
with IsRead false.

Recurring series: a CalendarView (no Restriction or SortOrder allowed: ErrorInvalidOperation)
expands each series into its occurrences, each with an ItemId of its own (CalendarItemType
Occurrence/Exception, IsRecurring true, OriginalStart, the master's UID), showing what starts
before its EndDate and ends at or after its StartDate. The master answers IsRecurring false
(as Exchange does), FirstOccurrence/LastOccurrence (GetItem) and range dates with their UTC
offset (``2016-01-01Z``). An occurrence is named by an ``OccurrenceItemId`` (RecurringMasterId
+ InstanceIndex) or its ItemId; ``RecurringMasterItemId`` names its master. ``DeleteItem`` of an
occurrence deletes it, ``UpdateItem`` moves it (Start/End only; its time zone fields and
fields left as they are are accepted, any other change is ``ErrorInvalidPropertySet``); the
master
then carries ``DeletedOccurrences`` / ``ModifiedOccurrences`` (read-only, new ChangeKey, so
SyncFolderItems reports it). An index outside the series is
``ErrorCalendarOccurrenceIndexIsOutOfRecurrenceRange``, a deleted occurrence
``ErrorCalendarOccurrenceIsDeletedFromRecurrence``. Setting the master's Recurrence, Start or
End drops its exceptions. All-day events: Start is moved back, End forward to midnight of
their time zones. Tasks answer IsRecurring and ChangeCount; calendar items a UID.

exchangelib notes: OAuth (``auth_type=OAUTH2``) over this plain-HTTP endpoint needs
``OAUTHLIB_INSECURE_TRANSPORT=1``; app tokens need ``access_type=IMPERSONATION``. A dropped
connection reaches a sequential exchangelib client as ``ErrorTimeoutExpired`` (it retries
only while it holds more than one session), so callers retry that themselves.
``ErrorServerBusy`` is retried by a ``FaultTolerance`` retry policy.

Strictness: every request's Body element and SOAP header elements are validated against
Microsoft's schemas (``../shared/ews-schema``); invalid -> HTTP 500 fault
``ErrorSchemaValidation`` with ``MessageXml`` LineNumber/LinePosition/Violation. Every response
is validated too (a failure is recorded in ``stats.invalid_responses``). Per-item codes:
``ErrorItemNotFound``, ``ErrorFolderNotFound``, ``ErrorInvalidIdMalformed``,
``ErrorIrresolvableConflict`` (stale ChangeKey with ``ConflictResolution="NeverOverwrite"``;
AutoResolve and AlwaysOverwrite apply the update), ``ErrorInvalidPropertySet`` (setting a
read-only field such as CompleteName, LastModifiedTime, DateTimeCreated),
``ErrorInvalidPropertyDelete``, ``ErrorInvalidSyncStateData``. ChangeKey changes on every
update; LastModifiedTime is maintained.

Limits: FindItem/FindFolder return at most ``find_limit`` (1000, EWSFindCountLimit) entries a
page, with ``IndexedPagingOffset``, ``TotalItemsInView``, ``IncludesLastItemInRange``;
SyncFolderItems at most 512 changes a page (opaque base64 SyncState).

Faults (``POST /_sandbox/faults``): ``throttle_fraction`` -> fault ``ErrorServerBusy`` with
``<t:Value Name="BackOffMilliseconds">throttle_ms</t:Value>`` (left out when
``throttle_hint`` is false); ``drop_after``/``drop_count``; ``latency_ms``;
``expire_cursors`` -> every SyncState issued so far answers ``ErrorInvalidSyncStateData``.

Control API (JSON, under ``/_sandbox/ews/``):

- ``POST items`` ``{"mailbox", "folder", "type": "Contact", "items": [{field: value}],
  "count": N}``: add items (``count`` generates N demo contacts); answers ``{"ids": [...]}``.
  Folder is a distinguished name (``contacts``) or a path under msgfolderroot
  (``Inbox/Projects/Alpha``). Field dicts: see :mod:`l2sync_dagster.sandbox.ews.records`.
- ``GET items?mailbox=&folder=``: every item with id, change_key, type, modified, fields.
- ``GET|PATCH|DELETE items/<id>``: one item; PATCH ``{"fields": {...}}`` changes it as
  another client would (new ChangeKey); ``DELETE items?mailbox=&folder=`` empties a folder.
- ``POST items/<id>/occurrences`` ``{"index": n, "delete": true}`` or ``{"index": n,
  "Start": iso, "End": iso}``: delete or move occurrence n of a series as Outlook does.
- ``POST folders`` ``{"mailbox", "parent", "name", "kind"}``; ``GET folders?mailbox=``.
- ``POST find-limit`` ``{"limit": N}``; ``POST expire-sync-states``.
"""

from l2sync_dagster.sandbox.ews.endpoint import EwsService

__all__ = ["EwsService"]
