"""Dataverse's error shape and the error codes the sandbox answers with.

Dataverse answers every failure as ``{"error": {"code": "0x8004...", "message": "..."}}``; the
HTTP status follows from the code (the Web API's code-to-status map: 0x80040217 -> 404,
0x80060882/0x80040237 -> 412, 0x80072322 -> 429, most others 400).
"""

from typing import Any

#: name -> (hex code, HTTP status) of every error the sandbox produces
CODES: dict[str, tuple[str, int]] = {
    "ObjectDoesNotExist": ("0x80040217", 404),
    "ConcurrencyVersionMismatch": ("0x80060882", 412),
    "DuplicateRecord": ("0x80040237", 412),
    "ODataError": ("0x80060888", 400),  # bad URL, query option, property or literal
    "InvalidArgument": ("0x80040203", 400),
    "PicklistValueOutOfRange": ("0x8004431A", 400),
    "StringLengthTooLong": ("0x80044331", 400),
    "ChangeTrackingNotEnabledForEntity": ("0x80072491", 400),
    "ExpiredVersionStamp": ("0x80044352", 400),
    "ThrottlingRequests": ("0x80072322", 429),
    "MethodNotAllowed": ("0x80060888", 405),
    "ResourceNotFound": ("0x80060888", 404),
}


class DataverseError(Exception):
    """A request Dataverse refuses; turned into its error response by the service."""

    def __init__(self, name: str, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.name = name
        self.code, self.status = CODES[name]
        self.message = message
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        """The JSON error body."""
        return {"error": {"code": self.code, "message": self.message}}


def odata_error(message: str) -> DataverseError:
    """A 400 for a malformed URL, query option, property name or literal."""
    return DataverseError("ODataError", message)


def no_property(name: str, logical: str) -> DataverseError:
    """An unknown property in a request body."""
    return odata_error(f"The property '{name}' does not exist on type "
                       f"'Microsoft.Dynamics.CRM.{logical}'. Make sure to only use property "
                       "names that are defined by the type.")


def no_query_property(name: str, logical: str) -> DataverseError:
    """An unknown property in $select, $filter, $orderby."""
    return odata_error(f"Could not find a property named '{name}' on type "
                       f"'Microsoft.Dynamics.CRM.{logical}'.")


def not_found(logical: str, key: str) -> DataverseError:
    """A record that does not exist."""
    return DataverseError("ObjectDoesNotExist", f"{logical} With Id = {key} Does Not Exist")
