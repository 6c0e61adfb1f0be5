"""The stamp: an id the sync stores, hidden, in every Exchange item it creates.

Crash recovery must find an item a killed run created even after a user edited every field
Outlook shows (issue #11, defect 4). The stamp lives in a named MAPI extended property of our
own property set, :data:`PROPERTY_SET` / :data:`PROPERTY_NAME`: Outlook shows no form field
for it (user-defined fields live in ``PSETID_PublicStrings``, which this is not), edits of
visible fields leave it alone, and both EWS (``ExtendedFieldURI``) and Graph
(``singleValueExtendedProperties``, id :data:`GRAPH_ID`) can write it and find items by it.
"""

from l2sync_dagster.providers.exchange.select import ExtendedProperty

#: the property set of l2sync's own properties (a fixed GUID, never reuse it for anything else)
PROPERTY_SET = "9FE0F16D-B123-40E7-B39E-C4422A6345A8"
#: the named property holding the engine's pair id
PROPERTY_NAME = "l2sync.pair"
#: the stamp as a declared extended property (never a column of a RecordFrame)
STAMP = ExtendedProperty(column="_l2sync_stamp", ews_type="String", type="string",
                         property_set=PROPERTY_SET, name=PROPERTY_NAME)
#: Graph's id of the property
GRAPH_ID = f"String {{{PROPERTY_SET}}} Name {PROPERTY_NAME}"
#: stamps looked for per request (an EWS restriction with this many alternatives)
FIND_BATCH = 50


def check_stamp(stamp: object) -> str:
    """The stamp as text; ValueError when it cannot be one (empty, too long, not text)."""
    if not isinstance(stamp, str) or not stamp.strip() or len(stamp) > 255:
        raise ValueError(f"invalid stamp {stamp!r}: expected 1 to 255 characters of text")
    return stamp
