"""Items as plain JSON dicts (control API) <-> stored item XML.

A dict maps element names to values: a string is the element's text; a list of strings is an
array of ``t:String`` (Categories); ``EmailAddresses`` / ``PhoneNumbers`` / ``ImAddresses`` are
``{Key: text}``, ``PhysicalAddresses`` ``{Key: {Street: ...}}``; ``Body`` is a string (HTML) or
``{"BodyType": "Text", "text": ...}``; ``ExtendedProperty`` is a list of
``{"uri": {attribute: value}, "value": text}``; other dicts are nested elements.
"""

from typing import Any

from lxml import etree

from l2sync_dagster.sandbox.ews.fields import ITEM_TYPES, local
from l2sync_dagster.sandbox.ews.soap import sub, t
from l2sync_dagster.sandbox.ews.store import type_element

ENTRY_CONTAINERS = {"EmailAddresses", "PhoneNumbers", "ImAddresses", "PhysicalAddresses"}
STRING_ARRAYS = {"Categories", "Companies", "Children"}


def from_dict(tag: str, fields: dict[str, Any], order: dict[str, list[str]]) -> etree._Element:
    """A storable ``t:<tag>`` element from a JSON dict (ValueError on unknown fields)."""
    if tag not in ITEM_TYPES:
        raise ValueError(f"unknown item type {tag!r}; known: {sorted(ITEM_TYPES)}")
    el = type_element(tag)
    type_order = order.get(ITEM_TYPES[tag], [])
    names = sorted(fields, key=lambda n: type_order.index(n) if n in type_order else 999)
    for name in names:
        if type_order and name not in type_order:
            raise ValueError(f"{tag} has no field {name!r}")
        value = fields[name]
        if name == "ExtendedProperty":
            for prop in value:
                p = sub(el, t("ExtendedProperty"))
                sub(p, t("ExtendedFieldURI"), **{k: str(v) for k, v in prop["uri"].items()})
                sub(p, t("Value"), str(prop["value"]))
        elif name == "Body":
            body = value if isinstance(value, dict) else {"BodyType": "HTML", "text": value}
            sub(el, t("Body"), body.get("text", ""), BodyType=body.get("BodyType", "HTML"))
        elif name in ENTRY_CONTAINERS:
            c = sub(el, t(name))
            for key, v in value.items():
                if isinstance(v, dict):
                    e = sub(c, t("Entry"), Key=key)
                    for part in ("Street", "City", "State", "CountryOrRegion", "PostalCode"):
                        if part in v:
                            sub(e, t(part), str(v[part]))
                else:
                    sub(c, t("Entry"), str(v), Key=key)
        elif name in STRING_ARRAYS:
            c = sub(el, t(name))
            for v in value:
                sub(c, t("String"), str(v))
        else:
            _nested(sub(el, t(name)), value)
    return el


def _nested(el: etree._Element, value: Any) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            for one in v if isinstance(v, list) else [v]:
                _nested(sub(el, t(k)), one)
    elif isinstance(value, bool):
        el.text = "true" if value else "false"
    elif value is not None:
        el.text = str(value)


def to_dict(el: etree._Element) -> dict[str, Any]:
    """The inverse of :func:`from_dict`, for inspection."""
    out: dict[str, Any] = {}
    for child in el:
        name = local(child)
        if name == "ExtendedProperty":
            uri = child.find(t("ExtendedFieldURI"))
            out.setdefault(name, []).append(
                {"uri": dict(uri.attrib) if uri is not None else {},
                 "value": child.findtext(t("Value"))})
        elif name == "Body":
            out[name] = {"BodyType": child.get("BodyType"), "text": child.text or ""}
        elif name in ENTRY_CONTAINERS:
            out[name] = {e.get("Key"): (_plain(e) if len(e) else e.text) for e in child}
        elif name in STRING_ARRAYS:
            out[name] = [s.text for s in child]
        else:
            out[name] = _plain(child)
    return out


def _plain(el: etree._Element) -> Any:
    if not len(el):
        return el.text
    result: dict[str, Any] = {}
    for child in el:
        name = local(child)
        value = _plain(child)
        if name in result:
            if not isinstance(result[name], list):
                result[name] = [result[name]]
            result[name].append(value)
        else:
            result[name] = value
    return result
