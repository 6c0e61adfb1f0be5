"""File and item attachments, kept inside their item's stored element (``t:Attachments``).

Each attachment gets an ``AttachmentId`` (an opaque id like every other), a ``Size`` and a
``LastModifiedTime`` when it is stored. GetItem answers a summary of each (no ``Content``, no
embedded item), as Exchange does; GetAttachment answers the whole attachment. An attachment
that is not (or no longer) on any item is ``ErrorInvalidAttachmentId``.
"""

import base64
import copy

from lxml import etree

from l2sync_dagster.sandbox.ews.call import EwsError
from l2sync_dagster.sandbox.ews.fields import ITEM_TYPES, insert_ordered, local, normalise
from l2sync_dagster.sandbox.ews.soap import sub, t
from l2sync_dagster.sandbox.ews.store import Item, Store, iso, now

KINDS = frozenset({"FileAttachment", "ItemAttachment"})
#: what GetItem leaves out of an attachment (GetAttachment returns it)
_CONTENT = frozenset({"Content", *ITEM_TYPES})
_ATTACHMENT_ORDER = ("AttachmentId", "Name", "ContentType", "ContentId", "ContentLocation",
                     "Size", "LastModifiedTime", "IsInline", "IsContactPhoto", "Content")


def of(item: Item) -> list[etree._Element]:
    """The stored attachments of ``item`` (in the order they were added)."""
    holder = item.element.find(t("Attachments"))
    return list(holder) if holder is not None else []


def _embedded(att: etree._Element) -> etree._Element | None:
    return next((c for c in att if local(c) in ITEM_TYPES), None)


def _size(att: etree._Element) -> int:
    if local(att) == "FileAttachment":
        try:
            return len(base64.b64decode(att.findtext(t("Content")) or ""))
        except ValueError:
            return 0
    inner = _embedded(att)
    return len(etree.tostring(inner)) if inner is not None else 0


def _set(att: etree._Element, name: str, value: str) -> None:
    el = att.find(t(name))
    if el is None:
        el = etree.Element(t(name))
        att.append(el)
    el.text = value
    _order(att)


def _order(att: etree._Element) -> None:
    end = len(_ATTACHMENT_ORDER)
    children = sorted(att, key=lambda c: _ATTACHMENT_ORDER.index(local(c))
                      if local(c) in _ATTACHMENT_ORDER else end)
    for c in children:
        att.append(c)


def check(specs: list[etree._Element]) -> None:
    """Refuse attachments the sandbox cannot store (EwsError)."""
    for spec in specs:
        if local(spec) not in KINDS:
            raise EwsError("ErrorInvalidAttachmentType",
                           f"The sandbox does not store {local(spec)} attachments.")
        if not (spec.findtext(t("Name")) or "").strip():
            raise EwsError("ErrorRequiredPropertyMissing",
                           "Required property is missing. (Name)")


def take(element: etree._Element) -> list[etree._Element]:
    """Remove the ``t:Attachments`` of a client's item element; returns its attachments."""
    holder = element.find(t("Attachments"))
    if holder is None:
        return []
    element.remove(holder)
    return list(holder)


def summaries(item: Item) -> etree._Element | None:
    """The ``t:Attachments`` GetItem answers for ``item`` (None without attachments)."""
    stored = of(item)
    if not stored:
        return None
    out = etree.Element(t("Attachments"))
    for att in stored:
        out.append(summary(att))
    return out


def add(store: Store, item: Item, specs: list[etree._Element],
        order: dict[str, list[str]]) -> list[etree._Element]:
    """Store copies of the client's ``t:FileAttachment`` / ``t:ItemAttachment`` elements on
    ``item`` with new AttachmentIds; returns the stored attachments."""
    holder = item.element.find(t("Attachments"))
    if holder is None:
        holder = etree.Element(t("Attachments"))
        insert_ordered(item, holder, order)
    check(specs)
    added = []
    for spec in specs:
        att = normalise(copy.deepcopy(spec))
        old = att.find(t("AttachmentId"))
        if old is not None:
            att.remove(old)
        att.insert(0, etree.Element(t("AttachmentId"), Id=store.new_id("A", item.mailbox)))
        _set(att, "Size", str(_size(att)))
        _set(att, "LastModifiedTime", iso(now()))
        if local(att) == "FileAttachment" and att.find(t("Content")) is None:
            _set(att, "Content", "")
        holder.append(att)
        added.append(att)
    return added


def renew_ids(store: Store, item: Item) -> None:
    """New AttachmentIds for the attachments of a copied item."""
    for att in of(item):
        att.find(t("AttachmentId")).set("Id", store.new_id("A", item.mailbox))


def created(parent: etree._Element, att: etree._Element, root: Item | None = None) -> None:
    """``<t:FileAttachment><t:AttachmentId Id=.../></t:FileAttachment>`` under ``parent``
    (with the root item's id and new change key when ``root`` is given: CreateAttachment)."""
    out = sub(parent, att.tag)
    ident = att.find(t("AttachmentId"))
    attrs = {"Id": ident.get("Id", "")}
    if root is not None:
        attrs |= {"RootItemId": root.id, "RootItemChangeKey": root.change_key}
    sub(out, t("AttachmentId"), **attrs)


def summary(att: etree._Element) -> etree._Element:
    """An attachment as GetItem returns it: everything but its content."""
    out = etree.Element(att.tag)
    for child in att:
        if local(child) not in _CONTENT:
            out.append(copy.deepcopy(child))
    if local(att) == "FileAttachment" and out.find(t("IsContactPhoto")) is None:
        _set(out, "IsContactPhoto", "false")
    if out.find(t("IsInline")) is None:
        _set(out, "IsInline", "false")
    return out


def whole(att: etree._Element, order: dict[str, list[str]]) -> etree._Element:
    """An attachment as GetAttachment returns it (the embedded item in schema order)."""
    out = summary(att)
    if local(att) == "FileAttachment":
        sub(out, t("Content"), att.findtext(t("Content")) or "")
        return out
    inner = _embedded(att)
    if inner is not None:
        rank = {n: i for i, n in enumerate(order.get(ITEM_TYPES[local(inner)], []))}
        item_el = sub(out, inner.tag)
        for child in sorted(inner, key=lambda c: rank.get(local(c), len(rank))):
            if not rank or local(child) in rank:
                item_el.append(copy.deepcopy(child))
    return out


def find(store: Store, attachment_id: str) -> tuple[Item, etree._Element]:
    """The item holding attachment ``attachment_id`` and the attachment."""
    mailbox = store.mailbox_of(attachment_id)
    if mailbox is None:
        raise EwsError("ErrorInvalidIdMalformed", "Id is malformed.")
    for item in store.items.values():
        if item.mailbox != mailbox:
            continue
        for att in of(item):
            ident = att.find(t("AttachmentId"))
            if ident is not None and ident.get("Id") == attachment_id:
                return item, att
    raise EwsError("ErrorInvalidAttachmentId", "The attachment ID was invalid.")


def remove(item: Item, att: etree._Element) -> None:
    """Take ``att`` off ``item`` (the Attachments element goes with the last one)."""
    holder = att.getparent()
    holder.remove(att)
    if not len(holder):
        item.element.remove(holder)
