"""ConvertId (exchangelib's version probe) and ResolveNames against the demo directory."""

from lxml import etree

from l2sync_dagster.sandbox import identities
from l2sync_dagster.sandbox.ews.call import Call, EwsError, message, response
from l2sync_dagster.sandbox.ews.soap import m, sub, t

XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"


def convert_id(call: Call, req: etree._Element) -> etree._Element:
    """ConvertId: sandbox ids are the same in every format; unknown ids are malformed."""
    root, msgs = response("ConvertId")
    dest = req.get("DestinationFormat", "EwsId")
    for src in req.find(m("SourceIds")):
        try:
            object_id = src.get("Id", "")
            if call.store.mailbox_of(object_id) is None:
                raise EwsError("ErrorInvalidIdMalformed", "Id is malformed.")
            mailbox = call.open(src.get("Mailbox") or call.store.mailbox_of(object_id) or "")
        except EwsError as err:
            message(msgs, "ConvertId", err)
            continue
        msg = message(msgs, "ConvertId")
        out = sub(msg, m("AlternateId"), Format=dest, Id=object_id, Mailbox=mailbox)
        out.set(XSI_TYPE, "t:AlternateIdType")
    return root


def resolve_names(call: Call, req: etree._Element) -> etree._Element:
    """ResolveNames: prefix match on the demo users' addresses."""
    root, msgs = response("ResolveNames")
    entry = (req.findtext(m("UnresolvedEntry")) or "").strip().lower()
    entry = entry.removeprefix("smtp:")
    found = sorted(u for u in identities.USERS if u.startswith(entry) or u.split("@")[0] == entry)
    if not found:
        message(msgs, "ResolveNames", EwsError("ErrorNameResolutionNoResults",
                                               "No results were found."))
        return root
    msg = message(msgs, "ResolveNames")
    rs = sub(msg, m("ResolutionSet"), TotalItemsInView=str(len(found)),
             IncludesLastItemInRange="true")
    for user in found:
        mb = sub(sub(rs, t("Resolution")), t("Mailbox"))
        sub(mb, t("Name"), user.split("@")[0].title())
        sub(mb, t("EmailAddress"), user)
        sub(mb, t("RoutingType"), "SMTP")
        sub(mb, t("MailboxType"), "Mailbox")
    return root
