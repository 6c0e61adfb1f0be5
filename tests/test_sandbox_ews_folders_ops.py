"""EWS sandbox folder and copy operations as Exchange does them: UpdateFolder (rename; the
class of a folder cannot change), MoveFolder (same FolderId), EmptyFolder (with or without
subfolders), CopyItem (a new item), and a moved item's new ItemId."""

import pytest
from exchangelib import Folder, Message
from exchangelib.errors import ErrorFolderExists, ErrorItemNotFound, ErrorObjectTypeChanged
from exchangelib.folders import Messages
from sandbox_process import SandboxProcess
from test_sandbox_ews import account, ews  # noqa: F401  (ews is a fixture)

from l2sync_dagster.sandbox.control import SandboxControl


def test_update_folder(sandbox: SandboxProcess, ews: SandboxControl) -> None:  # noqa: F811
    acc = account(sandbox, "sync@sandbox.test")
    f = Messages(parent=acc.inbox, name="Before").save()
    Messages(parent=acc.inbox, name="Taken").save()
    key = f.changekey
    f.name = "After"
    f.save()  # UpdateFolder (exchangelib also deletes the unset PermissionSet)
    assert f.changekey != key
    f.refresh()
    assert f.name == "After"
    f.name = "taken"
    with pytest.raises(ErrorFolderExists):
        f.save(update_fields=["name"])
    f.folder_class = "IPF.Other"
    with pytest.raises(ErrorObjectTypeChanged):
        f.save(update_fields=["folder_class"])
    gone_id, gone_key = f.id, f.changekey
    f.delete()
    f.id, f.changekey = gone_id, gone_key
    f.name = "Again"
    with pytest.raises(ErrorItemNotFound):
        f.save(update_fields=["name"])


def test_move_and_empty_folder(sandbox: SandboxProcess,
                               ews: SandboxControl) -> None:  # noqa: F811
    acc = account(sandbox, "sync@sandbox.test")
    f1 = Folder(parent=acc.inbox, name="One").save()
    f2 = Folder(parent=acc.inbox, name="Two").save()
    f1_id, f1_key = f1.id, f1.changekey
    f1.move(f2)
    assert f1.id == f1_id and f1.changekey != f1_key
    f1.refresh()
    assert f1.parent == f2
    Message(account=acc, folder=f2, subject="in two").save()
    Folder(parent=f2, name="Child").save()  # f2 now has One and Child
    f2.empty()
    f2.refresh()
    assert (f2.total_count, f2.child_folder_count) == (0, 2)
    f2.empty(delete_sub_folders=True)
    f2.refresh()
    assert f2.child_folder_count == 0


def test_copy_and_move_item(sandbox: SandboxProcess, ews: SandboxControl) -> None:  # noqa: F811
    acc = account(sandbox, "sync@sandbox.test")
    msg = Message(account=acc, folder=acc.drafts, subject="original")
    msg.save()
    copied_id, _ = msg.copy(to_folder=acc.inbox)
    assert copied_id != msg.id
    assert acc.inbox.get(id=copied_id).subject == "original"
    old_id = msg.id
    msg.move(to_folder=acc.trash)  # MoveItem: the moved item has a new ItemId
    assert msg.id != old_id
    assert isinstance(list(acc.fetch(ids=[(old_id, None)]))[0], ErrorItemNotFound)
    assert acc.trash.get(id=msg.id).subject == "original"


def test_mailbox_has_exchanges_own_folders(sandbox: SandboxProcess,
                                           ews: SandboxControl) -> None:  # noqa: F811
    """Besides the standard folders a mailbox has Exchange's others (Outbox, Junk Email,
    Recoverable Items, Common Views ...), which cannot be deleted; children are found by their
    ParentFolderId (which carries the parent's real ChangeKey)."""
    from exchangelib.errors import ErrorCannotDeleteObject, ErrorDeleteDistinguishedFolder
    from exchangelib.folders import CommonViews, JunkEmail, Outbox, RecoverableItemsDeletions

    acc = account(sandbox, "sync@sandbox.test")
    assert isinstance(acc.outbox, Outbox) and isinstance(acc.junk, JunkEmail)
    assert isinstance(acc.recoverable_items_deletions, RecoverableItemsDeletions)
    views = acc.root / "Common Views"
    assert isinstance(views, CommonViews)
    assert len(list(acc.root.walk())) >= 20
    assert [f.name for f in acc.contacts.glob("gal*")] == ["GAL Contacts"]
    with pytest.raises(ErrorCannotDeleteObject):
        views.delete()
    with pytest.raises(ErrorDeleteDistinguishedFolder):
        acc.outbox.delete()


def test_soft_delete_goes_to_recoverable_items(sandbox: SandboxProcess,
                                               ews: SandboxControl) -> None:  # noqa: F811
    acc = account(sandbox, "sync@sandbox.test")
    msg = Message(account=acc, folder=acc.drafts, subject="soft")
    msg.save()
    old_id = msg.id
    msg.soft_delete()
    assert isinstance(list(acc.fetch(ids=[(old_id, None)]))[0], ErrorItemNotFound)
    assert acc.drafts.filter(subject="soft").count() == 0
    assert acc.trash.filter(subject="soft").count() == 0
    assert acc.recoverable_items_deletions.filter(subject="soft").count() == 1


def test_folder_message_size_property(sandbox: SandboxProcess,
                                      ews: SandboxControl) -> None:  # noqa: F811
    """PidTagMessageSize (0x0E08) of a folder: the bytes of its items and its subfolders'."""
    from exchangelib import ExtendedProperty

    class FolderSize(ExtendedProperty):
        property_tag = 0x0E08
        property_type = "Long"

    acc = account(sandbox, "sync@sandbox.test")
    Folder.register("size", FolderSize)
    try:
        f = Folder(parent=acc.inbox, name="Sized").save()
        f.refresh()
        assert f.size == 0
        Message(account=acc, folder=f, subject="weight").save()
        f.refresh()
        grown = f.size
        acc.inbox.refresh()
        assert grown > 0 and acc.inbox.size >= grown
    finally:
        Folder.deregister("size")
