"""Tests of exchangelib's suite the EWS sandbox deliberately does not support, and why.

Keys of ``UNSUPPORTED`` are substrings of ``Class.test_name``; keys of ``OPERATIONS`` are EWS
operations the sandbox refuses (``ErrorInvalidOperation: The sandbox does not implement X``):
a failure matching either is counted as unsupported.

``CLIENT_BUGS`` are different: failures on requests exchangelib itself writes against
Microsoft's schema, which real Exchange (validating against the schema of the requested
version) refuses the same way. They count as client bugs only while they fail with exactly
that schema violation.
"""

#: pattern -> why the sandbox does not implement it (a sync tool never needs it)
UNSUPPORTED: dict[str, str] = {
    "test_send": "sending mail (SendItem, MessageDisposition Send*): a sync tool writes items, "
                 "it does not send them",
    "test_reply": "replies and forwards (ReplyToItem, ForwardItem): sending",
    "test_create_reply": "a reply to a message the test first sends and waits to receive",
    "test_create_forward": "a forward of a message the test first sends and waits to receive",
    "test_cancel": "meeting cancellations (CancelCalendarItem): scheduling, sending",
    "test_forward": "replies and forwards (ReplyToItem, ForwardItem): sending",
    "test_meeting": "meeting requests and responses (AcceptItem, DeclineItem...): scheduling, "
                    "not synchronisation",
    "test_notification": "push/pull/streaming notifications (Subscribe, GetEvents, "
                         "GetStreamingEvents): the sync tool polls SyncFolderItems",
    "test_subscribe": "subscriptions: notifications",
    "test_streaming": "streaming notifications",
    "test_pull": "pull notifications",
    "test_push": "push notifications",
    "test_persona": "personas (FindPeople, GetPersona): an Outlook people view, not items",
    "persona_failure": "personas (GetPersona): an Outlook people view, not items",
    "test_user_configuration": "user configuration objects (GetUserConfiguration): mailbox "
                               "settings, not data",
    "test_public_folder": "public folders: not mailboxes",
    "PublicFolder": "public folders: not mailboxes",
    "test_export": "ExportItems/UploadItems: bulk fidelity copies, not synchronisation",
    "test_upload": "ExportItems/UploadItems: bulk fidelity copies, not synchronisation",
    "test_archive": "ArchiveItem: online archives",
    "test_mark_as_junk": "MarkAsJunk: mail filtering",
    "test_get_user_": "availability/OOF settings (GetUserAvailability, GetUserOofSettings)",
    "test_oof": "out-of-office settings",
    "test_delegate": "delegate management (GetDelegate)",
    "test_rules": "inbox rules",
}


#: operation -> why the sandbox refuses it (a test failing on it is unsupported)
OPERATIONS: dict[str, str] = {
    "SendItem": "sending mail: a sync tool writes items, it does not send them",
    "MarkAsJunk": "mail filtering",
    "Subscribe": "notifications: the sync tool polls SyncFolderItems",
    "GetStreamingEvents": "streaming notifications",
    "GetUserConfiguration": "user configuration objects: mailbox settings, not data",
    "ExportItems": "ExportItems/UploadItems: bulk fidelity copies, not synchronisation",
    "UploadItems": "ExportItems/UploadItems: bulk fidelity copies, not synchronisation",
}


#: pattern -> (part of the failure message, why it is exchangelib's bug). exchangelib 5.6.0 sends
#: RequestServerVersion Exchange2016 to the sandbox (build 15.1); Microsoft's schemas for it are
#: the MS-OXWS* files in ../shared/ews-schema (the only version there).
CLIENT_BUGS: dict[str, tuple[str, str]] = {
    "ContactsTest.test_find_people": (
        "FindPeople', attribute 'Traversal'",
        "exchangelib writes <m:FindPeople Traversal=...>; FindPeopleType has no attributes "
        "(MS-OXWSPERS-messages.xsd lines 5-23, MS-OXWSPERS 3.1.4.1.3; Microsoft's FindPeople "
        "element reference: 'Attributes: None'), so Exchange refuses it as schema-invalid"),
    "ContactsTest.test_fetch_personas": (
        "FindPeople', attribute 'Traversal'",
        "exchangelib writes <m:FindPeople Traversal=...>; FindPeopleType has no attributes "
        "(MS-OXWSPERS-messages.xsd lines 5-23), so Exchange refuses it as schema-invalid"),
    "FolderTest.test_update": (
        "CanCreateItems': This element is not expected",
        "exchangelib writes a folder Permission as CanCreateItems, CanCreateSubfolders ... "
        "ReadItems, UserId, CalendarPermissionLevel; BasePermissionType/PermissionType want "
        "UserId first, CanCreateSubFolders and PermissionLevel (MS-OXWSFOLD-types.xsd lines "
        "67-78 and 204-216, MS-OXWSFOLD 2.2.4.7), so Exchange refuses it as schema-invalid "
        "(the sandbox also does not set folder permissions: ErrorInvalidPropertySet)"),
}


def reason_for(test: str, why: str = "") -> str | None:
    """Why ``test`` (failing with message ``why``) is deliberately unsupported, or None."""
    for pattern, reason in UNSUPPORTED.items():
        if pattern in test:
            return reason
    for operation, reason in OPERATIONS.items():
        if f"does not implement {operation}." in why:
            return f"{operation}: {reason}"
    return None


def client_bug_for(test: str, why: str) -> str | None:
    """Why ``test``'s failure ``why`` is exchangelib's own schema-invalid request, or None."""
    for pattern, (message, reason) in CLIENT_BUGS.items():
        if pattern in test and message in why:
            return reason
    return None
