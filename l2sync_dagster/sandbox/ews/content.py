"""Properties Exchange derives from an item when GetItem asks for them: ``TextBody`` (the body
as plain text) and ``MimeContent`` (the item as an RFC 5322 message, base64) when the client
never stored one."""

import base64
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime
from html.parser import HTMLParser

from lxml import etree

from l2sync_dagster.sandbox.ews.soap import t
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
