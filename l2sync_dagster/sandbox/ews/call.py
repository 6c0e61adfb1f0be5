"""One EWS request being answered: who calls, which mailbox, folder/item lookup, replies."""

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from lxml import etree

from l2sync_dagster.sandbox import identities
from l2sync_dagster.sandbox.ews.soap import M, T, m, sub, t
from l2sync_dagster.sandbox.ews.store import Folder, Item, Store
from l2sync_dagster.sandbox.tokens import Principal

if TYPE_CHECKING:
    from l2sync_dagster.sandbox.ews.endpoint import EwsService


class EwsError(Exception):
    """An error answered in one response message (ResponseClass="Error")."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class EwsFault(Exception):
    """An error answered for the whole request as a SOAP fault (HTTP 500)."""

    def __init__(self, code: str, message: str | None = None) -> None:
        super().__init__(message or code)
        self.code = code
        self.message = message


@dataclass
class Call:
    """Context of one request: the principal, the impersonated user, the store."""

    service: "EwsService"
    store: Store
    principal: Principal
    impersonated: str | None = None
    order: dict[str, list[str]] = field(default_factory=dict)

    @property
    def acting(self) -> str:
        """The user the request acts as (impersonated user, else the caller)."""
        return self.impersonated or self.principal.name

    def open(self, mailbox: str) -> str:
        """Check access to ``mailbox`` (lower-cased); EwsError when refused or unknown."""
        mailbox = mailbox.lower()
        if mailbox not in self.store.mailboxes():
            raise EwsError("ErrorNonExistentMailbox",
                           f"The SMTP address has no mailbox associated with it. ({mailbox})")
        if self.impersonated:
            ok = mailbox == self.impersonated or identities.may_open(
                self.impersonated, mailbox, impersonation=False)
        else:
            ok = identities.may_open(self.principal.name, mailbox, impersonation=False)
        if not ok:
            raise EwsError("ErrorAccessDenied", "Access is denied. Check credentials and try "
                                                "again.")
        return mailbox

    def folder(self, el: etree._Element) -> Folder:
        """Resolve ``t:FolderId`` or ``t:DistinguishedFolderId`` (with optional Mailbox)."""
        if etree.QName(el).localname == "DistinguishedFolderId":
            address = el.findtext(f"{t('Mailbox')}/{t('EmailAddress')}")
            mailbox = self.open(address or self.acting)
            folder = self.store.distinguished(mailbox, el.get("Id", ""))
            if folder is None:
                raise EwsError("ErrorFolderNotFound", "The specified folder could not be found "
                                                      "in the store.")
            return folder
        folder_id = el.get("Id", "")
        owner = self.store.mailbox_of(folder_id)
        if owner is None:
            raise EwsError("ErrorInvalidIdMalformed", "Id is malformed.")
        self.open(owner)
        folder = self.store.folders.get(folder_id)
        if folder is None:
            raise EwsError("ErrorFolderNotFound", "The specified folder could not be found in "
                                                  "the store.")
        return folder

    def item(self, el: etree._Element) -> Item:
        """Resolve a ``t:ItemId`` (a ChangeKey that is not one is ErrorInvalidChangeKey, as on
        Exchange; a stale one is the operation's business)."""
        item_id = el.get("Id", "")
        owner = self.store.mailbox_of(item_id)
        if owner is None:
            raise EwsError("ErrorInvalidIdMalformed", "Id is malformed.")
        self.open(owner)
        item = self.store.items.get(item_id)
        if item is None:
            raise EwsError("ErrorItemNotFound", "The specified object was not found in the "
                                                "store.")
        key = el.get("ChangeKey")
        if key is not None and not self.store.well_formed_change_key(key):
            raise EwsError("ErrorInvalidChangeKey", "The change key is invalid.")
        return item


def response(operation: str) -> tuple[etree._Element, etree._Element]:
    """``(m:<Op>Response, its m:ResponseMessages)``."""
    root = etree.Element(m(f"{operation}Response"), nsmap={"m": M, "t": T})
    return root, sub(root, m("ResponseMessages"))


def message(parent: etree._Element, operation: str,
            error: EwsError | None = None) -> etree._Element:
    """Append one ``m:<Op>ResponseMessage`` (success, or the error's code and text)."""
    msg = sub(parent, m(f"{operation}ResponseMessage"),
              ResponseClass="Error" if error else "Success")
    if error:
        sub(msg, m("MessageText"), error.message)
        sub(msg, m("ResponseCode"), error.code)
        sub(msg, m("DescriptiveLinkKey"), "0")
    else:
        sub(msg, m("ResponseCode"), "NoError")
    return msg
