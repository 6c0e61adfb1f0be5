"""``$batch`` on the Dataverse sandbox: multipart change sets and JSON atomicity groups."""

import email.parser
import email.policy
import json
from typing import Any

import requests
import test_sandbox_dataverse as common
from test_sandbox_dataverse import Dv, _error

# the fixtures of the main Dataverse test module (reset data, check responses)
dv_session = common.dv_session
dv = common.dv


def _part(method: str, url: str, body: Any = None, content_id: str | None = None) -> str:
    head = "Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n"
    if content_id:
        head += f"Content-ID: {content_id}\r\n"
    request = f"{method} {url} HTTP/1.1\r\n"
    if body is not None:
        request += f"Content-Type: application/json\r\n\r\n{json.dumps(body)}\r\n"
    else:
        request += "Accept: application/json\r\n\r\n"
    return f"{head}\r\n{request}"


def _changeset(name: str, parts: list[str]) -> str:
    inner = "".join(f"--{name}\r\n{p}" for p in parts)
    return f"Content-Type: multipart/mixed; boundary={name}\r\n\r\n{inner}--{name}--\r\n"


def _batch(dv: Dv, items: list[str], **headers: str) -> requests.Response:
    body = "".join(f"--batch_AAA\r\n{i}" for i in items) + "--batch_AAA--\r\n"
    return dv.session.post(f"{dv.api}/$batch", data=body.encode(), timeout=30, headers={
        "Content-Type": "multipart/mixed; boundary=batch_AAA", **headers})


def _responses(resp: requests.Response) -> list[tuple[int, dict[str, str], str, str | None]]:
    """(status, headers, body, Content-ID) of every response, change sets flattened; parsed by
    the standard library's MIME parser."""
    assert resp.status_code == 200, resp.text
    raw = f"Content-Type: {resp.headers['Content-Type']}\r\n\r\n".encode() + resp.content
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(raw)
    out = []
    for part in message.walk():
        if part.get_content_type() != "application/http":
            continue
        text = part.get_payload(decode=True).decode()
        head, _, body = text.partition("\r\n\r\n")
        lines = head.split("\r\n")
        status = int(lines[0].split()[1])
        headers = dict(line.split(": ", 1) for line in lines[1:])
        out.append((status, headers, body.strip(), part.get("Content-ID")))
    return out


def test_multipart_batch_with_change_sets(dv: Dv) -> None:
    api = dv.api
    ok = _changeset("changeset_BBB", [
        _part("POST", f"{api}/accounts", {"name": "Batch Co"}, "1"),
        _part("POST", "contacts", {"lastname": "Batch",
                                   "parentcustomerid_account@odata.bind": "$1"}, "2"),
        _part("PATCH", "$1", {"telephone1": "+1 555 0000"}, "3"),
    ])
    read = _part("GET", f"{api}/accounts?$select=name&$filter=name%20eq%20'Batch%20Co'")
    failing = _changeset("changeset_CCC", [
        _part("POST", "accounts", {"name": "Rolled back"}, "1"),
        _part("POST", "accounts", {"bogus": 1}, "2"),
    ])
    after = _part("POST", "/api/data/v9.2/accounts", {"name": "Never"})
    replies = _responses(_batch(dv, [ok, read, failing, after]))
    assert [r[0] for r in replies] == [204, 204, 204, 200, 400]
    assert [r[3] for r in replies[:3]] == ["1", "2", "3"]
    account = replies[0][1]["OData-EntityId"].split("(")[1].rstrip(")")
    assert json.loads(replies[3][2])["value"][0]["accountid"] == account
    assert json.loads(replies[4][2])["error"]["code"] == "0x80060888"
    names = {a["name"]: a for a in dv.rows("accounts")}
    assert "Rolled back" not in names and "Never" not in names
    assert names["Batch Co"]["telephone1"] == "+1 555 0000"
    contact = next(c for c in dv.rows("contacts") if c["lastname"] == "Batch")
    assert contact["_parentcustomerid_value"] == account
    stats = dv.control.stats()["requests"]
    assert stats["batch"] == 1 and stats["accounts.create"] == 3 and stats["accounts.list"] == 1
    # with continue-on-error the request after the failed change set runs
    replies = _responses(_batch(dv, [failing, after], Prefer="odata.continue-on-error"))
    assert [r[0] for r in replies] == [400, 204]
    names = {a["name"] for a in dv.rows("accounts")}
    assert "Never" in names and "Rolled back" not in names


def test_multipart_refusals(dv: Dv) -> None:
    get_in_changeset = _changeset("changeset_X", [_part("GET", "accounts")])
    _error(_batch(dv, [get_in_changeset]), 400, "0x80060888")
    resp = dv.session.post(f"{dv.api}/$batch", data=b"x", timeout=30,
                           headers={"Content-Type": "text/plain"})
    _error(resp, 400, "0x80060888")


def test_json_batch_with_atomicity_groups(dv: Dv) -> None:
    requests_ = [
        {"id": "1", "method": "POST", "url": "accounts", "atomicityGroup": "g1",
         "headers": {"Content-Type": "application/json"}, "body": {"name": "Json Co"}},
        {"id": "2", "method": "POST", "url": "contacts", "atomicityGroup": "g1",
         "body": {"lastname": "Json", "parentcustomerid_account@odata.bind": "$1"}},
        {"id": "3", "method": "GET", "url": "accounts?$select=name&$filter=name eq 'Json Co'",
         "dependsOn": ["1"]},
        {"id": "4", "method": "POST", "url": "accounts", "atomicityGroup": "g2",
         "body": {"name": "Undone"}},
        {"id": "5", "method": "POST", "url": "accounts", "atomicityGroup": "g2",
         "body": {"name": "Bad", "industrycode": 1234}},
        {"id": "6", "method": "POST", "url": "accounts", "body": {"name": "After"}},
    ]
    resp = dv.session.post(f"{dv.api}/$batch", json={"requests": requests_}, timeout=30,
                           headers={"Prefer": "odata.continue-on-error"})
    assert resp.status_code == 200, resp.text
    out = {r["id"]: r for r in resp.json()["responses"]}
    assert [out[i]["status"] for i in "123456"] == [204, 204, 200, 424, 400, 204]
    assert out["5"]["body"]["error"]["code"] == "0x8004431A"
    assert out["3"]["body"]["value"][0]["name"] == "Json Co"
    names = {a["name"] for a in dv.rows("accounts")}
    assert {"Json Co", "After"} <= names and not {"Undone", "Bad"} & names
    # without continue-on-error the batch stops at the failed group
    resp = dv.session.post(f"{dv.api}/$batch", json={"requests": requests_[3:]}, timeout=30)
    assert [r["id"] for r in resp.json()["responses"]] == ["4", "5"]


def test_batch_limit_of_1000_requests(dv: Dv) -> None:
    many = [{"id": str(i), "method": "POST", "url": "accounts", "body": {"name": f"N{i}"}}
            for i in range(1001)]
    message = _error(dv.session.post(f"{dv.api}/$batch", json={"requests": many}, timeout=60),
                     400, "0x80060888")
    assert "1000" in message
    assert len(dv.rows("accounts")) == 20
    resp = dv.session.post(f"{dv.api}/$batch", json={"requests": many[:1000]}, timeout=60)
    assert resp.status_code == 200 and len(resp.json()["responses"]) == 1000
    assert len(dv.rows("accounts")) == 1020
