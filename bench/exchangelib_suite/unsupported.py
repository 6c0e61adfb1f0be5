"""Tests of exchangelib's suite the EWS sandbox deliberately does not support, and why.

Keys are substrings of ``Class.test_name``; a failure matching one is counted as unsupported.
"""

#: pattern -> why the sandbox does not implement it (a sync tool never needs it)
UNSUPPORTED: dict[str, str] = {
    "test_send": "sending mail (SendItem, MessageDisposition Send*): a sync tool writes items, "
                 "it does not send them",
    "test_reply": "replies and forwards (ReplyToItem, ForwardItem): sending",
    "test_forward": "replies and forwards (ReplyToItem, ForwardItem): sending",
    "test_mime": "MIME content export/import is not a synced field",
    "test_meeting": "meeting requests and responses (AcceptItem, DeclineItem...): scheduling, "
                    "not synchronisation",
    "test_notification": "push/pull/streaming notifications (Subscribe, GetEvents, "
                         "GetStreamingEvents): the sync tool polls SyncFolderItems",
    "test_subscribe": "subscriptions: notifications",
    "test_streaming": "streaming notifications",
    "test_pull": "pull notifications",
    "test_push": "push notifications",
    "test_persona": "personas (FindPeople, GetPersona): an Outlook people view, not items",
    "test_user_configuration": "user configuration objects (GetUserConfiguration): mailbox "
                               "settings, not data",
    "test_public_folder": "public folders: not mailboxes",
    "PublicFolder": "public folders: not mailboxes",
    "test_export": "ExportItems/UploadItems: bulk fidelity copies, not synchronisation",
    "test_upload": "ExportItems/UploadItems: bulk fidelity copies, not synchronisation",
    "test_archive": "ArchiveItem: online archives",
    "test_mark_as_junk": "MarkAsJunk: mail filtering",
    "test_empty": "EmptyFolder: bulk deletion of a whole folder",
    "test_get_user_": "availability/OOF settings (GetUserAvailability, GetUserOofSettings)",
    "test_oof": "out-of-office settings",
    "test_delegate": "delegate management (GetDelegate)",
    "test_rules": "inbox rules",
}


def reason_for(test: str) -> str | None:
    """Why ``test`` is deliberately unsupported, or None."""
    for pattern, why in UNSUPPORTED.items():
        if pattern in test:
            return why
    return None
