"""The directory: the tenant's users as Graph ``/users`` and ``/users/delta`` serve them.

Every user is kept in the store collection :data:`DIRECTORY_KEY` (so the change log of the
store gives ``/users/delta`` its rounds, and a saved state keeps edits): the demo users,
the contractor without a mailbox and the generated staff (``identities.STAFF``), each with a
deterministic, realistic profile (:func:`person`). Reading needs ``User.Read.All`` (or a
role of :data:`READ_ROLES`) for an app token; a user token reads the directory as a
delegated ``User.ReadBasic.All``. Without it: 403 ``Authorization_RequestDenied``.

A deleted user is reported by the next delta round as
``{"id": ..., "@removed": {"reason": "changed"}}`` (Graph's soft delete: the user is in the
tenant's deleted items for 30 days). Tests change the directory through the control API
(``POST /_sandbox/graph/directory/update`` ``{"user", "properties"}``, ``.../delete``
``{"user"}``), see :func:`update_user` and :func:`delete_user`.
"""

from typing import Any

from l2sync_dagster.sandbox import identities
from l2sync_dagster.sandbox.graph.common import Ctx, GraphError, Kind, paged
from l2sync_dagster.sandbox.graph.delta import delta
from l2sync_dagster.sandbox.graph.store import Collection
from l2sync_dagster.sandbox.service import Response
from l2sync_dagster.sandbox.token_service import object_id

#: the store collection of the directory's users
DIRECTORY_KEY = "directory"
DIRECTORY = Kind("users", "user", 100, 999, removed_style="changed")
#: application permissions under which Graph lists users
READ_ROLES = frozenset({"User.Read.All", "User.ReadWrite.All", "Directory.Read.All",
                        "Directory.ReadWrite.All"})
#: a directory user without a mailbox (no mail)
CONTRACTOR = f"contractor@{identities.DOMAIN}"
COMPANY = "Sandbox Ltd"

#: the profile properties every directory user has (null when empty), besides id and UPN
PROFILE = ("displayName", "givenName", "surname", "mail", "companyName", "department",
           "jobTitle", "businessPhones", "mobilePhone", "officeLocation", "streetAddress",
           "city", "state", "postalCode", "country", "preferredLanguage")

# office name -> (street, city, state, postal code, country, phone prefix)
_OFFICES = {
    "London": ("1 Finsbury Avenue", "London", None, "EC2M 2PF", "United Kingdom",
               "+44 20 7946 "),
    "Manchester": ("3 Hardman Street", "Manchester", None, "M3 3HF", "United Kingdom",
                   "+44 161 496 "),
    "Berlin": ("Friedrichstrasse 68", "Berlin", "Berlin", "10117", "Germany",
               "+49 30 901820 "),
    "Boston": ("100 Summer Street", "Boston", "MA", "02110", "United States",
               "+1 617 555 "),
}
_GIVEN = ("Olivia", "Noah", "Amelia", "Liam", "Sophia", "Lucas", "Mia", "Elias", "Hannah",
          "Mateo", "Emma", "Leon", "Grace", "Omar", "Chloe", "Yusuf", "Isla", "Jonas", "Zara",
          "Arjun", "Freya", "Mason", "Ava", "Felix", "Leila", "Hugo", "Nora", "Samuel",
          "Ines", "Daniel", "Maya")
_SURNAMES = ("Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Johnson", "Davies",
             "Patel", "Wright", "Walker", "Thompson", "Evans", "Müller", "Schmidt", "Fischer",
             "Weber", "Meyer", "Wagner", "Becker", "Garcia", "Martinez", "Nguyen", "Kim",
             "Khan", "Hughes", "Edwards", "Green", "Hall", "Wood", "Clarke", "Lewis",
             "Robinson")
# department -> job titles
_DEPARTMENTS = {
    "Sales": ("Account Manager", "Sales Representative", "Sales Director"),
    "Finance": ("Accountant", "Financial Analyst", "Controller"),
    "Engineering": ("Software Engineer", "QA Engineer", "Engineering Manager"),
    "Marketing": ("Marketing Specialist", "Content Writer", "Marketing Manager"),
    "Support": ("Support Engineer", "Customer Success Manager", "Support Lead"),
    "Human Resources": ("HR Generalist", "Recruiter", "HR Manager"),
}
# the named demo users: upn -> (given, surname, department, job title, office)
_NAMED = {
    "sync@sandbox.test": ("Sync", "Service", "IT", "Integration service account", "London"),
    "alice@sandbox.test": ("Alice", "Martin", "Sales", "Account Manager", "London"),
    "sales@sandbox.test": ("Sales", "Desk", "Sales", "Shared sales mailbox", "Manchester"),
    CONTRACTOR: ("Casey", "Brooks", "Engineering", "Contractor", "Berlin"),
}


def person(upn: str) -> dict[str, Any]:
    """The directory entry of a tenant user as Graph returns it (deterministic)."""
    named = _NAMED.get(upn)
    if named is not None:
        given, surname, department, title, office = named
        number = list(_NAMED).index(upn) + 1
    else:
        number = int("".join(ch for ch in upn.partition("@")[0] if ch.isdigit()) or 0)
        given = _GIVEN[number % len(_GIVEN)]
        surname = _SURNAMES[(number * 7) % len(_SURNAMES)]
        department = list(_DEPARTMENTS)[number % len(_DEPARTMENTS)]
        titles = _DEPARTMENTS[department]
        title = titles[(number // len(_DEPARTMENTS)) % len(titles)]
        office = list(_OFFICES)[(number // 3) % len(_OFFICES)]
    street, city, state, postal, country, prefix = _OFFICES[office]
    mailbox = upn in identities.MAILBOXES
    display = f"{given} {surname}" + ("" if mailbox else " (no mailbox)")
    return {"id": object_id(upn), "userPrincipalName": upn, "displayName": display,
            "givenName": given, "surname": surname, "mail": upn if mailbox else None,
            "companyName": COMPANY, "department": department, "jobTitle": title,
            "businessPhones": [f"{prefix}{1000 + number:04d}"],
            "mobilePhone": f"+44 7700 9{number:05d}" if number % 2 else None,
            "officeLocation": f"{office} office", "streetAddress": street, "city": city,
            "state": state, "postalCode": postal, "country": country,
            "preferredLanguage": "de-DE" if country == "Germany" else "en-US"}


def tenant_users() -> tuple[str, ...]:
    """Every user of the tenant: the mailboxes and the contractor."""
    return (*identities.MAILBOXES, CONTRACTOR)


def users_collection(svc: Any) -> Collection:
    """The directory's collection, filled with :func:`person` of every tenant user the first
    time (a saved state from before the directory existed gets it too)."""
    store = svc.store
    with store.lock:
        coll = store.collection(DIRECTORY_KEY)
        if coll is None:
            coll = store.collection(DIRECTORY_KEY, "users")
            assert coll is not None
            for upn in tenant_users():
                store.put(coll, person(upn))
        return coll


def find(svc: Any, ref: str) -> dict[str, Any] | None:
    """A directory user by object id or user principal name (case-insensitive)."""
    coll = users_collection(svc)
    low = ref.lower()
    with svc.store.lock:
        found = coll.items.get(low)
        if found is None:
            found = next((u for u in coll.items.values()
                          if str(u.get("userPrincipalName", "")).lower() == low), None)
        return found


def may_read(ctx: Ctx) -> bool:
    """Whether the token may read the directory: a user, or an app with a role of
    :data:`READ_ROLES`."""
    if ctx.principal.kind != "app":
        return True
    return bool(ctx.service.app_roles.get(ctx.principal.name, frozenset()) & READ_ROLES)


def _check_read(ctx: Ctx) -> None:
    if ctx.method != "GET":
        raise GraphError(405, "BadRequest", "Users are read-only here.")
    if not may_read(ctx):
        raise GraphError(403, "Authorization_RequestDenied",
                         "Insufficient privileges to complete the operation.")


def route_users(ctx: Ctx, visible: Any) -> Response:
    """``GET /users`` (``visible(upn)``: whether the caller sees a user)."""
    _check_read(ctx)
    svc = ctx.service
    coll = users_collection(svc)
    with svc.store.lock:
        entities = [u for u in coll.items.values() if visible(u["userPrincipalName"])]
    return paged(ctx, DIRECTORY, entities, svc.emitter(ctx, DIRECTORY), "users")


def route_delta(ctx: Ctx) -> Response:
    """``GET /users/delta``: every user, then the changes since the round's delta link."""
    _check_read(ctx)
    svc = ctx.service
    coll = users_collection(svc)
    return delta(ctx, DIRECTORY, [coll], DIRECTORY_KEY, lambda i, e: [(i, e)],
                 svc.emitter(ctx, DIRECTORY), "users/delta")


def route_get(ctx: Ctx, entity: dict[str, Any]) -> Response:
    """``GET /users/{id}``: the user as the directory has it now."""
    _check_read(ctx)
    return Response.json(ctx.service.emitter(ctx, DIRECTORY)(entity), operation="users.get")


def update_user(svc: Any, ref: str, properties: dict[str, Any]) -> dict[str, Any]:
    """Change profile properties of a directory user (checked against the CSDL); the next
    delta round reports the user. KeyError for an unknown user, ValueError for a property
    that is not a profile property or a value of the wrong type."""
    user = find(svc, ref)
    if user is None:
        raise KeyError(f"no directory user {ref!r}")
    unknown = sorted(set(properties) - set(PROFILE))
    if unknown:
        raise ValueError(f"not a directory profile property: {unknown[0]}")
    for name, value in properties.items():
        # every profile property is a string (businessPhones: a list of them) or null
        ok = (isinstance(value, list) and all(isinstance(v, str) for v in value)
              if name == "businessPhones" else value is None or isinstance(value, str))
        if not ok:
            raise ValueError(f"{name}: {value!r} is not of the property's type")
    if svc.csdl is not None:
        problems = svc.csdl.check("user", properties)
        if problems:
            raise ValueError("; ".join(problems[:5]))
    updated = {**user, **properties}
    svc.store.put(users_collection(svc), updated)
    return updated


def delete_user(svc: Any, ref: str) -> dict[str, Any]:
    """Delete a directory user (the next delta round reports it ``@removed``); KeyError for
    an unknown user."""
    user = find(svc, ref)
    if user is None:
        raise KeyError(f"no directory user {ref!r}")
    svc.store.delete(users_collection(svc), user["id"])
    return user
