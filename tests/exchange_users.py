"""Users of the sandbox mailboxes, acting as Outlook would: through the sandbox's own store
(EWS control API) or raw Graph requests, never through the exchange provider."""

from typing import Any

import msal
import requests
from msal_helpers import sandbox_session
from sandbox_process import SandboxProcess

from l2sync_dagster.sandbox import identities

MAILBOX = "sales@sandbox.test"
EWS_PASSWORD_ENV = "EWS_TEST_PASSWORD"
GRAPH_SECRET_ENV = "EXO_GRAPH_TEST_SECRET"


def ews_cs(sandbox: SandboxProcess, **extra: str) -> str:
    """An EWS connection string for the sales mailbox (password in EWS_TEST_PASSWORD)."""
    keys = {"URL": f"{sandbox.urls['ews']}/EWS/Exchange.asmx", "User": "sync@sandbox.test",
            "Password": f"env:{EWS_PASSWORD_ENV}", "Email": MAILBOX,
            "Authentication": "Basic", "MaxRetryWait": "20", **extra}
    return ";".join(f"{k}={v}" for k, v in keys.items())


def graph_cs(sandbox: SandboxProcess, email: str = MAILBOX) -> str:
    """A Graph connection string for a mailbox (secret in EXO_GRAPH_TEST_SECRET)."""
    return (f"Backend=graph;URL={sandbox.urls['graph']}/v1.0;"
            f"Authority={sandbox.urls['token']}/sandbox;ClientId=l2sync-sandbox;"
            f"ClientSecret=env:{GRAPH_SECRET_ENV};CABundle={sandbox.ca_path};Email={email}")


class EwsUser:
    """Contacts of the Contacts folder edited in the EWS sandbox's own store."""

    def __init__(self, sandbox: SandboxProcess, folder: str = "contacts",
                 mailbox: str = MAILBOX) -> None:
        self.control = sandbox.control("ews")
        self.folder = folder
        self.mailbox = mailbox

    def empty(self) -> None:
        """Remove every item of the folder."""
        self.control.request("DELETE", f"ews/items?mailbox={self.mailbox}&folder={self.folder}")

    def create(self, name: str, city: str, **fields: Any) -> str:
        """A new contact (as Outlook saves it: with a DisplayName)."""
        spec = {"GivenName": name, "DisplayName": name, **fields}
        if city is not None:
            spec["CompanyName"] = city
        out = self.control.call("POST", "items", {"mailbox": self.mailbox, "folder": self.folder,
                                                  "type": "Contact", "items": [spec]})
        return str(out["ids"][0])

    def update(self, key: str, *, name: str | None = None, city: str | None = None) -> None:
        """Change the given name and/or the company."""
        fields: dict[str, Any] = {}
        if name is not None:
            fields.update(GivenName=name, DisplayName=name)
        if city is not None:
            fields["CompanyName"] = city
        self.control.call("PATCH", f"items/{key}", {"fields": fields})

    def edit_everything(self, key: str) -> None:
        """Overwrite every field Outlook shows (hidden extended properties stay, as in
        Outlook)."""
        current = self.control.call("GET", f"items/{key}")["fields"]
        fields: dict[str, Any] = {k: None for k in current if k != "ExtendedProperty"}
        fields.update(GivenName="Edited", Surname="Everywhere", DisplayName="Edited Everywhere",
                      CompanyName="Elsewhere Ltd", JobTitle="Editor",
                      EmailAddresses={"EmailAddress1": "edited@example.test"})
        self.control.call("PATCH", f"items/{key}", {"fields": fields})

    def delete(self, key: str) -> None:
        """Delete as Outlook does: move to Deleted Items."""
        self.control.call("POST", f"items/{key}/move", {"folder": "deleteditems"})

    def records(self) -> dict[str, tuple[str | None, str | None]]:
        """Every contact of the folder: key -> (GivenName, CompanyName)."""
        got = self.control.call("GET", f"items?mailbox={self.mailbox}&folder={self.folder}")
        return {i["id"]: (i["fields"].get("GivenName"), i["fields"].get("CompanyName"))
                for i in got["items"] if i["type"] == "Contact"}


class GraphUser:
    """Contacts of the default contacts folder edited with raw Graph requests."""

    def __init__(self, sandbox: SandboxProcess, mailbox: str = MAILBOX) -> None:
        app = msal.ConfidentialClientApplication(
            identities.CLIENT_ID, client_credential=identities.CLIENT_SECRET,
            authority=f"{sandbox.urls['token']}/{identities.TENANT}",
            instance_discovery=False, http_client=sandbox_session(sandbox))
        token = app.acquire_token_for_client([f"{sandbox.urls['graph']}/.default"])
        assert "access_token" in token, token
        self.base = f"{sandbox.urls['graph']}/v1.0/users/{mailbox}/contacts"
        self.session = requests.Session()
        self.session.verify = str(sandbox.ca_path)
        self.session.trust_env = False
        self.session.headers["Authorization"] = f"Bearer {token['access_token']}"

    def _ok(self, method: str, url: str, **kw: Any) -> Any:
        resp = self.session.request(method, url, timeout=30, **kw)
        assert resp.status_code < 300, (resp.status_code, resp.text[:500])
        return resp.json() if resp.content else None

    def _all(self) -> list[dict[str, Any]]:
        out, link = [], f"{self.base}?$top=100"
        while link:
            page = self._ok("GET", link)
            out += page["value"]
            link = page.get("@odata.nextLink")
        return out

    def empty(self) -> None:
        """Delete every contact of the default folder."""
        for c in self._all():
            self._ok("DELETE", f"{self.base}/{c['id']}")

    def create(self, name: str, city: str | None, **props: Any) -> str:
        """A new contact."""
        body = {"givenName": name, "displayName": name, **props}
        if city is not None:
            body["companyName"] = city
        return str(self._ok("POST", self.base, json=body)["id"])

    def update(self, key: str, *, name: str | None = None, city: str | None = None) -> None:
        """Change the given name and/or the company."""
        body: dict[str, Any] = {}
        if name is not None:
            body.update(givenName=name, displayName=name)
        if city is not None:
            body["companyName"] = city
        self._ok("PATCH", f"{self.base}/{key}", json=body)

    def edit_everything(self, key: str) -> None:
        """Overwrite every property Outlook on the web shows."""
        self._ok("PATCH", f"{self.base}/{key}", json={
            "givenName": "Edited", "surname": "Everywhere", "displayName": "Edited Everywhere",
            "companyName": "Elsewhere Ltd", "jobTitle": "Editor", "middleName": None,
            "emailAddresses": [{"address": "edited@example.test", "name": "Edited"}],
            "businessPhones": ["+1 555 0100"], "mobilePhone": "+1 555 0101",
            "businessAddress": {"city": "Nowhere"}, "personalNotes": "edited",
            "categories": ["Edited"]})

    def delete(self, key: str) -> None:
        """Delete the contact."""
        self._ok("DELETE", f"{self.base}/{key}")

    def records(self) -> dict[str, tuple[str | None, str | None]]:
        """Every contact of the default folder: key -> (givenName, companyName)."""
        return {c["id"]: (c.get("givenName") or None, c.get("companyName") or None)
                for c in self._all()}
