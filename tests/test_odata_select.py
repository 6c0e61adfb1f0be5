"""The select-statement translator: OData options from SQL-like text, hostile inputs refused or
escaped, and the $batch body codec (pure functions, no server)."""

import json

import pytest

from l2sync_dagster.providers.odata.batch import (
    BatchItem,
    align_multipart,
    build_json,
    build_multipart,
    parse_json,
    parse_multipart,
    relative_url,
)
from l2sync_dagster.providers.odata.select import (
    FieldResolver,
    QueryError,
    encode_options,
    literal,
    translate,
)

ACCOUNT = FieldResolver(
    {"accountid": "guid", "name": "string", "telephone1": "string", "statecode": "integer",
     "revenue": "decimal", "creditonhold": "boolean", "modifiedon": "datetime",
     "birthdate": "date", "_primarycontactid_value": "guid"},
    {"primarycontactid": "_primarycontactid_value"},
)


def opts(text: str, resolver: FieldResolver = ACCOUNT) -> dict[str, str]:
    return dict(translate(text, resolver).options())


def test_the_issue_example_translates_to_options():
    q = translate("SELECT TOP 5 name, telephone1 FROM accounts WHERE statecode = 0 ORDER BY name",
                  ACCOUNT)
    assert q.entity_set == "accounts"
    assert q.options() == [("$select", "name,telephone1"), ("$filter", "statecode eq 0"),
                           ("$orderby", "name"), ("$top", "5")]
    assert q.query_string() == ("$select=name,telephone1&$filter=statecode%20eq%200"
                                "&$orderby=name&$top=5")


@pytest.mark.parametrize("where, expected", [
    ("name = 'Contoso' AND statecode <> 1", "name eq 'Contoso' and statecode ne 1"),
    ("(statecode = 0 OR statecode = 1) AND NOT creditonhold = TRUE",
     "(statecode eq 0 or statecode eq 1) and not (creditonhold eq true)"),
    ("name LIKE 'Con%'", "startswith(name,'Con')"),
    ("name LIKE '%soft'", "endswith(name,'soft')"),
    ("name LIKE '%ont%'", "contains(name,'ont')"),
    ("telephone1 IS NULL", "telephone1 eq null"),
    ("telephone1 IS NOT NULL", "telephone1 ne null"),
    ("statecode IN (0, 1)", "(statecode eq 0 or statecode eq 1)"),
    ("statecode NOT IN (2)", "not ((statecode eq 2))"),
    ("revenue BETWEEN 10.5 AND 20", "(revenue ge 10.5 and revenue le 20)"),
    ("modifiedon >= '2024-05-01T10:00:00+02:00'", "modifiedon ge 2024-05-01T08:00:00Z"),
    ("birthdate < '1990-01-31'", "birthdate lt 1990-01-31"),
    ("primarycontactid = '5A1E2B3C-0000-4000-8000-00000000000A'",
     "_primarycontactid_value eq 5a1e2b3c-0000-4000-8000-00000000000a"),
    ("NAME = 'x'", "name eq 'x'"),  # field names are matched case-insensitively
    ("telephone1 = 12", "telephone1 eq '12'"),  # a number compared with text is text
])
def test_where_clauses(where, expected):
    assert opts(f"SELECT name FROM accounts WHERE {where}")["$filter"] == expected


@pytest.mark.parametrize("value, escaped", [
    ("O'Brien", "'O''Brien'"),
    ("x' or 1 eq 1 or name eq 'y", "'x'' or 1 eq 1 or name eq ''y'"),
    ("'); DELETE FROM accounts; --", "'''); DELETE FROM accounts; --'"),
    ("a&$top=1000000", "'a&$top=1000000'"),
    ("100% + more #1", "'100% + more #1'"),
])
def test_hostile_values_are_escaped_and_stay_one_literal(value, escaped):
    sql_value = value.replace("'", "''")
    q = translate(f"SELECT name FROM accounts WHERE name = '{sql_value}'", ACCOUNT)
    assert q.filter == f"name eq {escaped}"
    encoded = q.query_string()
    # the value cannot add query options or break out of the $filter parameter
    assert encoded.count("&") == 1 and "+" not in encoded and " " not in encoded and "#" not in \
        encoded
    params = dict(p.split("=", 1) for p in encoded.split("&"))
    assert set(params) == {"$select", "$filter"}


@pytest.mark.parametrize("text, message", [
    ("SELECT nmae FROM accounts", "unknown field 'nmae'; did you mean name?"),
    ("SELECT name FROM accounts WHERE phone = '1'", "unknown WHERE field 'phone'"),
    ("SELECT name FROM accounts ORDER BY secret", "unknown ORDER BY field 'secret'"),
    ("SELECT name FROM accounts WHERE name = 'x", "unclosed text value"),
    ("SELECT name FROM accounts; DROP TABLE accounts", "unexpected character ';'"),
    ("SELECT name FROM accounts WHERE name = 'a' -- comment", "unexpected character '-'"),
    ("SELECT name FROM accounts WHERE name = name", "comparing two fields is not supported"),
    ("SELECT name FROM accounts WHERE statecode = 'zero'", "'zero' is not a number"),
    ("SELECT name FROM accounts WHERE statecode = 1.5", "is not a whole number"),
    ("SELECT name FROM accounts WHERE accountid = 'not-a-guid'", "is not a GUID"),
    ("SELECT name FROM accounts WHERE modifiedon > 'yesterday'", "is not a date and time"),
    ("SELECT name FROM accounts WHERE creditonhold = 'maybe'", "is not true or false"),
    ("SELECT name FROM accounts WHERE name = NULL", "IS NULL"),
    ("SELECT name FROM accounts WHERE name LIKE 'a%b'", "only % at the start and/or end"),
    ("SELECT name FROM accounts WHERE name LIKE 'a_b'", "only % at the start and/or end"),
    ("SELECT TOP -1 name FROM accounts", "TOP must be a whole number"),
    ("SELECT TOP x name FROM accounts", "TOP must be a whole number"),
    ("SELECT name FROM accounts WHERE (name = 'a'", "')' was expected"),
    ("SELECT name FROM accounts WHERE", "the WHERE clause ends"),
    ("SELECT DISTINCT name FROM accounts", "DISTINCT is not supported"),
    ("SELECT name FROM accounts LIMIT 5 OFFSET 3", "unexpected 'OFFSET'"),
    ("SELECT name FROM acc'ounts", "unclosed text value"),
    ("SELECT name FROM [accounts)] ", "not a valid field name"),
    ("SELECT from FROM accounts", "found the keyword FROM"),
    ("SELECT name FROM accounts WHERE name = 'a\x00b'", "NUL"),
])
def test_bad_statements_get_clear_errors(text, message):
    with pytest.raises(QueryError, match=None) as info:
        translate(text, ACCOUNT)
    assert message in str(info.value)


def test_without_known_fields_any_identifier_is_accepted_but_not_syntax():
    q = translate("SELECT Name, Age FROM People WHERE Age > 30")
    assert q.options() == [("$select", "Name,Age"), ("$filter", "Age gt 30")]
    with pytest.raises(QueryError):
        translate("SELECT Name FROM People WHERE Name = 'x' OR 1 = 1")


def test_raw_options_are_checked_and_reencoded():
    q = translate("$select=name,telephone1&$filter=name eq 'a b+c'&$top=3", ACCOUNT)
    assert q.select == ("name", "telephone1") and q.top == 3
    assert q.query_string() == ("$select=name,telephone1&$filter=name%20eq%20'a%20b%2Bc'"
                                "&$top=3")
    # percent-encoded input is decoded once, never twice
    assert translate("$filter=name%20eq%20'100%2525'", ACCOUNT).filter == "name eq '100%25'"


@pytest.mark.parametrize("text, message", [
    ("$select=nmae", "unknown $select field 'nmae'"),
    ("$filter=name eq 'x", "unclosed text value"),
    ("$filter=(name eq 'x'", "'(' without ')'"),
    ("$format=xml", "unsupported query option '$format'"),
    ("$top=ten", "$top must be a whole number"),
    ("$top=1&$top=2", "given twice"),
    ("$orderby=name sideways", "must be 'field' or 'field asc|desc'"),
    ("$select", "has no value"),
])
def test_bad_raw_options(text, message):
    with pytest.raises(QueryError) as info:
        translate(text, ACCOUNT)
    assert message in str(info.value)


def test_an_empty_query_or_a_set_name_reads_everything():
    assert translate("", ACCOUNT).options() == []
    assert translate("accounts", ACCOUNT).entity_set == "accounts"
    with pytest.raises(QueryError, match="must be a SELECT statement"):
        translate("accounts where x", ACCOUNT)


def test_literals_by_type():
    assert literal("it's", "string") == "'it''s'"
    assert literal(5, None) == "5"
    assert literal("5", "integer") == "5"
    assert literal(True) == "true"
    assert literal(None) == "null"
    assert literal("2024-01-02", "date") == "2024-01-02"
    assert literal("2024-01-02T03:04:05.120Z", "datetime") == "2024-01-02T03:04:05.12Z"
    with pytest.raises(QueryError):
        literal(float("nan"), "float")
    assert encode_options([("$filter", "a eq 'x y'")]) == "$filter=a%20eq%20'x%20y'"


# --- $batch bodies --------------------------------------------------------------------------
ITEMS = [BatchItem("POST", "accounts", {"Prefer": "return=representation"}, {"name": "a"}, "g"),
         BatchItem("PATCH", "accounts(1)", {"If-Match": 'W/"3"'}, {"name": "b"}, "g"),
         BatchItem("DELETE", "accounts(2)", {}, None, None)]


def test_multipart_request_has_one_change_set_and_urls_relative_to_the_service_root():
    # third-party servers read an absolute URL inside a batch as a resource path (issue #12)
    ctype, body = build_multipart(ITEMS, "https://h/api/data/v9.2")
    boundary = ctype.split("boundary=")[1]
    text = body.decode()
    assert text.startswith(f"--{boundary}\r\n") and text.endswith(f"--{boundary}--\r\n")
    assert text.count("Content-Type: multipart/mixed; boundary=changeset_") == 1
    assert "\r\nPOST accounts HTTP/1.1\r\n" in text
    assert "\r\nPATCH accounts(1) HTTP/1.1\r\n" in text
    assert "\r\nDELETE accounts(2) HTTP/1.1\r\n" in text
    assert "https://" not in text and "/api/data" not in text
    assert 'If-Match: W/"3"' in text and '{"name": "a"}' in text
    assert [line for line in text.split("\r\n") if line.startswith("Content-ID")] == [
        "Content-ID: 1", "Content-ID: 2", "Content-ID: 3"]


def test_json_batch_urls_are_relative_and_keep_if_match_and_content_id_references():
    items = [*ITEMS, BatchItem("PATCH", "$1", {"If-Match": "*"}, {"name": "c"}, "g"),
             BatchItem("GET", "https://h/api/data/v9.2/accounts(3)?$select=name", {}, None)]
    _, body = build_json(items, "https://h/api/data/v9.2/")
    reqs = json.loads(body)["requests"]
    assert [r["url"] for r in reqs] == ["accounts", "accounts(1)", "accounts(2)", "$1",
                                        "accounts(3)?$select=name"]
    # header names in lower case (SAP CAP ignores "If-Match" inside a JSON batch)
    assert reqs[1]["headers"]["if-match"] == 'W/"3"' and reqs[3]["headers"]["if-match"] == "*"
    assert reqs[0]["headers"] == {"prefer": "return=representation",
                                  "content-type": "application/json"}
    assert [r.get("atomicityGroup") for r in reqs] == ["g", "g", None, "g", None]


@pytest.mark.parametrize(("url", "expected"), [
    ("People(1)", "People(1)"),
    ("/svc/v1/People(1)", "People(1)"),
    ("http://h:8/svc/v1/People?$top=1", "People?$top=1"),
    ("HTTP://H:8/svc/v1/People", "People"),
    ("$2", "$2"),
])
def test_relative_url(url, expected):
    assert relative_url(url, "http://h:8/svc/v1") == expected


@pytest.mark.parametrize("url", ["http://other:8/svc/v1/People", "/elsewhere/People",
                                 "https://h:8/svc/v1/People"])
def test_relative_url_refuses_another_service(url):
    with pytest.raises(ValueError):
        relative_url(url, "http://h:8/svc/v1")


def test_multipart_response_parsing_and_change_set_errors():
    response = (
        "--batchresponse_1\r\nContent-Type: multipart/mixed; boundary=changesetresponse_2\r\n\r\n"
        "--changesetresponse_2\r\nContent-Type: application/http\r\n"
        "Content-Transfer-Encoding: binary\r\nContent-ID: 1\r\n\r\n"
        "HTTP/1.1 204 No Content\r\nOData-EntityId: https://h/accounts(abc)\r\n\r\n\r\n"
        "--changesetresponse_2\r\nContent-Type: application/http\r\n"
        "Content-Transfer-Encoding: binary\r\nContent-ID: 2\r\n\r\n"
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n"
        '{"@odata.etag":"W/\\"4\\"","name":"b"}\r\n'
        "--changesetresponse_2--\r\n"
        "--batchresponse_1\r\nContent-Type: application/http\r\n"
        "Content-Transfer-Encoding: binary\r\n\r\n"
        "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n\r\n"
        '{"error":{"code":"0x80040217","message":"missing"}}\r\n'
        "--batchresponse_1--\r\n")
    parts = parse_multipart("multipart/mixed; boundary=batchresponse_1", response.encode())
    replies = align_multipart(ITEMS, parts)
    assert [r.status for r in replies] == [204, 200, 404]
    assert replies[0].header("odata-entityid") == "https://h/accounts(abc)"
    assert replies[1].body == {"@odata.etag": 'W/"4"', "name": "b"}
    # a failed change set answers once for all of its requests
    failed = ("--b\r\nContent-Type: application/http\r\n\r\nHTTP/1.1 412 Precondition Failed\r\n"
              "Content-Type: application/json\r\n\r\n{\"error\":{\"message\":\"x\"}}\r\n--b--\r\n")
    replies = align_multipart(ITEMS[:2], parse_multipart("multipart/mixed; boundary=b",
                                                         failed.encode()))
    assert [r.status for r in replies] == [412, 412]


def test_json_batch_round_trip_matches_ids_in_any_order():
    ctype, body = build_json(ITEMS, "http://h/svc")
    data = json.loads(body)
    assert ctype == "application/json"
    assert [r["atomicityGroup"] for r in data["requests"][:2]] == ["g", "g"]
    assert "atomicityGroup" not in data["requests"][2]
    assert data["requests"][1]["url"] == "accounts(1)"
    replies = parse_json(ITEMS, {"responses": [{"id": "3", "status": 204},
                                               {"id": "1", "status": 201, "body": {"x": 1}},
                                               {"id": "2", "status": 412}]})
    assert [r.status for r in replies] == [201, 412, 204]
