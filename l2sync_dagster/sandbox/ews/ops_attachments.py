"""CreateAttachment, GetAttachment, DeleteAttachment: attachments of stored items (see
:mod:`l2sync_dagster.sandbox.ews.attachments`). Adding or deleting an attachment changes the
parent item's ChangeKey, as on Exchange."""

from lxml import etree

from l2sync_dagster.sandbox.ews import attachments
from l2sync_dagster.sandbox.ews.call import Call, EwsError, message, response
from l2sync_dagster.sandbox.ews.soap import m, sub


def create_attachment(call: Call, req: etree._Element) -> etree._Element:
    """CreateAttachment: one response message per attachment, each AttachmentId carrying the
    parent's id and its new ChangeKey."""
    root, msgs = response("CreateAttachment")
    specs = list(req.find(m("Attachments")))
    try:
        parent = call.item(req.find(m("ParentItemId")))
    except EwsError as err:
        for _ in specs:
            sub(message(msgs, "CreateAttachment", err), m("Attachments"))
        return root
    added = []
    for spec in specs:
        try:
            added += attachments.add(call.store, parent, [spec], call.order)
        except EwsError as err:
            added.append(err)
    if any(not isinstance(a, EwsError) for a in added):
        call.store.touch(parent)
    for att in added:
        if isinstance(att, EwsError):
            sub(message(msgs, "CreateAttachment", att), m("Attachments"))
            continue
        holder = sub(message(msgs, "CreateAttachment"), m("Attachments"))
        attachments.created(holder, att, parent)
    return root


def get_attachment(call: Call, req: etree._Element) -> etree._Element:
    """GetAttachment: whole attachments (file content, embedded item)."""
    root, msgs = response("GetAttachment")
    for ref in req.find(m("AttachmentIds")):
        try:
            item, att = attachments.find(call.store, ref.get("Id", ""))
            call.open(item.mailbox)
        except EwsError as err:
            sub(message(msgs, "GetAttachment", err), m("Attachments"))
            continue
        holder = sub(message(msgs, "GetAttachment"), m("Attachments"))
        holder.append(attachments.whole(att, call.order))
    return root


def delete_attachment(call: Call, req: etree._Element) -> etree._Element:
    """DeleteAttachment: answers the parent's id and new ChangeKey."""
    root, msgs = response("DeleteAttachment")
    for ref in req.find(m("AttachmentIds")):
        try:
            item, att = attachments.find(call.store, ref.get("Id", ""))
            call.open(item.mailbox)
        except EwsError as err:
            message(msgs, "DeleteAttachment", err)
            continue
        attachments.remove(item, att)
        call.store.touch(item)
        msg = message(msgs, "DeleteAttachment")
        sub(msg, m("RootItemId"), RootItemId=item.id, RootItemChangeKey=item.change_key)
    return root
