"""SOAP envelopes and faults the way Exchange 2016 writes them."""

from lxml import etree

SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
M = "http://schemas.microsoft.com/exchange/services/2006/messages"
T = "http://schemas.microsoft.com/exchange/services/2006/types"
E = "http://schemas.microsoft.com/exchange/services/2006/errors"
NSMAP = {"s": SOAP, "m": M, "t": T}

#: what the sandbox reports in ServerVersionInfo: Exchange 2016 CU (build 15.1)
SERVER_VERSION = {"MajorVersion": "15", "MinorVersion": "1", "MajorBuildNumber": "2507",
                  "MinorBuildNumber": "6", "Version": "V2017_07_11"}
#: the RequestServerVersion the schemas accept (fixed="Exchange2016")
API_VERSION = "Exchange2016"
#: every RequestServerVersion an Exchange 2016 server accepts (ExchangeVersionType); a request
#: naming an older one is answered like one naming Exchange2016
ACCEPTED_VERSIONS = frozenset({
    "Exchange2007", "Exchange2007_SP1", "Exchange2010", "Exchange2010_SP1", "Exchange2010_SP2",
    "Exchange2013", "Exchange2013_SP1", API_VERSION,
})

FAULT_TEXT = {
    "ErrorServerBusy": "The server cannot service this request right now. Try again later.",
    "ErrorSchemaValidation": "The request failed schema validation.",
    "ErrorInvalidServerVersion": "The specified server version is invalid.",
    "ErrorImpersonateUserDenied": "The account does not have permission to impersonate the "
                                  "requested user.",
    "ErrorNonExistentMailbox": "The SMTP address has no mailbox associated with it.",
    "ErrorInvalidRequest": "The request is invalid.",
    "ErrorInvalidOperation": "The operation is not valid.",
}


def t(name: str) -> str:
    """Clark name in the types namespace."""
    return f"{{{T}}}{name}"


def m(name: str) -> str:
    """Clark name in the messages namespace."""
    return f"{{{M}}}{name}"


def sub(parent: etree._Element, tag: str, text: str | None = None,
        **attrs: str) -> etree._Element:
    """Append a child element (``tag`` in Clark notation) with optional text and attributes."""
    el = etree.SubElement(parent, tag, {k: v for k, v in attrs.items() if v is not None})
    if text is not None:
        el.text = text
    return el


def parse_envelope(body: bytes) -> tuple[etree._Element | None, etree._Element]:
    """``(Header or None, the single Body child)``; ValueError when not a SOAP envelope."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True,
                             remove_comments=True, remove_pis=True)
    try:
        root = etree.fromstring(body, parser)
    except etree.XMLSyntaxError as exc:
        raise ValueError(f"the request is not well-formed XML: {exc}") from exc
    if root.tag != f"{{{SOAP}}}Envelope":
        raise ValueError(f"the root element is {root.tag}, not a SOAP 1.1 Envelope")
    header = root.find(f"{{{SOAP}}}Header")
    bodies = root.find(f"{{{SOAP}}}Body")
    if bodies is None or len(bodies) != 1:
        raise ValueError("the SOAP Body must hold exactly one element")
    return header, bodies[0]


def envelope(body: etree._Element) -> etree._Element:
    """A response envelope with the ServerVersionInfo header around ``body``."""
    env = etree.Element(f"{{{SOAP}}}Envelope", nsmap={"s": SOAP})
    header = sub(env, f"{{{SOAP}}}Header")
    etree.SubElement(header, t("ServerVersionInfo"), SERVER_VERSION,
                     nsmap={"h": T})
    sub(env, f"{{{SOAP}}}Body").append(body)
    return env


def to_bytes(env: etree._Element) -> bytes:
    """Serialise with an XML declaration, as Exchange does."""
    return etree.tostring(env, xml_declaration=True, encoding="utf-8")


def fault(code: str, message: str | None = None, *, values: dict[str, str] | None = None,
          violation: tuple[str, str, str] | None = None) -> bytes:
    """A SOAP fault (HTTP 500) as Exchange sends it: ``faultcode`` in the types namespace,
    ``detail`` with ``e:ResponseCode``, ``e:Message`` and ``t:MessageXml`` (back-off values or
    the schema violation's line, position and text)."""
    message = message or FAULT_TEXT.get(code, code)
    env = etree.Element(f"{{{SOAP}}}Envelope", nsmap={"s": SOAP})
    body = sub(env, f"{{{SOAP}}}Body")
    f = sub(body, f"{{{SOAP}}}Fault")
    fc = etree.SubElement(f, "faultcode", nsmap={"a": T})
    fc.text = f"a:{code}"
    fs = sub(f, "faultstring", message if violation is None else
             f"{message} {violation[2]}")
    fs.set("{http://www.w3.org/XML/1998/namespace}lang", "en-US")
    detail = sub(f, "detail")
    etree.SubElement(detail, f"{{{E}}}ResponseCode", nsmap={"e": E}).text = code
    etree.SubElement(detail, f"{{{E}}}Message", nsmap={"e": E}).text = message
    if values or violation:
        mx = etree.SubElement(detail, t("MessageXml"), nsmap={"t": T})
        for name, value in (values or {}).items():
            sub(mx, t("Value"), value, Name=name)
        if violation:
            sub(mx, t("LineNumber"), violation[0])
            sub(mx, t("LinePosition"), violation[1])
            sub(mx, t("Violation"), violation[2])
    return to_bytes(env)
