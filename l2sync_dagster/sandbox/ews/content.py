"""Properties Exchange derives from an item when GetItem asks for them: ``TextBody`` (the body
as plain text) and ``MimeContent`` (the item as an RFC 5322 message, base64) when the client
never stored one; and the other way round, the Subject, Body and From of a message created
from MimeContent alone."""

import base64
import binascii
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import SMTP, default
from email.utils import format_datetime, parseaddr
from html.parser import HTMLParser

from lxml import etree

from l2sync_dagster.sandbox.ews.fields import insert_ordered
from l2sync_dagster.sandbox.ews.soap import sub, t
from l2sync_dagster.sandbox.ews.store import Item

#: HTML elements whose end starts a new line in the text version
_BREAKS = frozenset({"br", "p", "div", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6"})


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("style", "script", "head"):
            self._skip += 1
        elif tag == "br":
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "script", "head"):
            self._skip = max(self._skip - 1, 0)
        elif tag in _BREAKS and tag != "br":
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def plain_text(item: Item) -> str | None:
    """The item's body as text (HTML bodies without their markup); None without a body."""
    body = item.element.find(t("Body"))
    if body is None:
        return None
    text = body.text or ""
    if body.get("BodyType") != "HTML":
        return text
    parser = _Text()
    parser.feed(text)
    parser.close()
    return "".join(parser.parts).strip("\n")


def text_body(item: Item) -> etree._Element | None:
    """``t:TextBody`` of ``item`` (None without a body)."""
    text = plain_text(item)
    if text is None:
        return None
    el = etree.Element(t("TextBody"), BodyType="Text")
    el.text = text
    return el


def _addresses(item: Item, name: str) -> list[str]:
    holder = item.element.find(t(name))
    if holder is None:
        return []
    return [mb.findtext(t("EmailAddress")) or "" for mb in holder.iter(t("Mailbox"))
            if mb.findtext(t("EmailAddress"))]


def mime_content(item: Item) -> etree._Element:
    """``t:MimeContent``: the stored one, else the item written out as a MIME message."""
    stored = item.element.find(t("MimeContent"))
    if stored is not None:
        return stored
    msg = EmailMessage(policy=SMTP)
    msg["Subject"] = item.element.findtext(t("Subject")) or ""
    msg["Date"] = format_datetime(item.created)
    for header, name in (("From", "From"), ("To", "ToRecipients"), ("Cc", "CcRecipients")):
        found = _addresses(item, name)
        if found:
            msg[header] = ", ".join(found)
    body = item.element.find(t("Body"))
    subtype = "html" if body is not None and body.get("BodyType") == "HTML" else "plain"
    msg.set_content((body.text or "") if body is not None else "", subtype=subtype)
    el = etree.Element(t("MimeContent"), CharacterSet="UTF-8")
    el.text = base64.b64encode(msg.as_bytes()).decode()
    return el


def fill_from_mime(item: Item, order: dict[str, list[str]]) -> None:
    """A message created with MimeContent: Subject, Body and From taken from the MIME message
    where the client did not give them (as Exchange does)."""
    stored = item.element.find(t("MimeContent"))
    if item.tag != "Message" or stored is None:
        return
    try:
        raw = base64.b64decode(stored.text or "", validate=True)
    except (ValueError, binascii.Error):
        return
    msg = message_from_bytes(raw, policy=default)
    if item.element.find(t("Subject")) is None and msg["Subject"] is not None:
        el = etree.Element(t("Subject"))
        el.text = str(msg["Subject"])
        insert_ordered(item, el, order)
    part = msg.get_body(preferencelist=("html", "plain"))
    if item.element.find(t("Body")) is None and part is not None:
        el = etree.Element(t("Body"), BodyType="HTML" if part.get_content_subtype() == "html"
                           else "Text")
        el.text = part.get_content().rstrip("\n")
        insert_ordered(item, el, order)
    sender = parseaddr(str(msg["From"] or ""))[1]
    if item.element.find(t("From")) is None and sender:
        el = etree.Element(t("From"))
        sub(sub(el, t("Mailbox")), t("EmailAddress"), sender)
        insert_ordered(item, el, order)
