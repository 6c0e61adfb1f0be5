"""Directory groups: ``/groups`` (``$filter`` on ``mail`` or ``proxyAddresses``),
``/groups/{id}``, ``/groups/{id}/transitiveMembers[/microsoft.graph.user]`` (nested groups
flattened, each member once), read with an application permission that Graph accepts for
them (``GroupMember.Read.All``, ``Group.Read.All`` or ``Directory.Read.All``; a user token
reads them as a delegated ``.default``). Missing permission: 403
``Authorization_RequestDenied``; unknown group: 404 ``Request_ResourceNotFound``."""

from typing import Any

from l2sync_dagster.sandbox import identities
from l2sync_dagster.sandbox.graph import directory
from l2sync_dagster.sandbox.graph.common import Ctx, GraphError, Kind, paged
from l2sync_dagster.sandbox.graph.users import user_entity
from l2sync_dagster.sandbox.service import Response
from l2sync_dagster.sandbox.token_service import object_id

GROUPS = Kind("groups", "group", 100, 999)
MEMBERS = Kind("groupMembers", "directoryObject", 100, 999)
MEMBER_USERS = Kind("groupMembers", "user", 100, 999)

#: application permissions under which Graph lists groups and their members
READ_ROLES = frozenset({"GroupMember.Read.All", "Group.Read.All", "Directory.Read.All",
                        "GroupMember.ReadWrite.All", "Group.ReadWrite.All"})
#: the roles the demo app registration is granted (a test may take them away)
DEFAULT_APP_ROLES: dict[str, frozenset[str]] = {
    identities.CLIENT_ID: frozenset({"GroupMember.Read.All", "User.Read.All",
                                     "Contacts.ReadWrite", "Calendars.ReadWrite",
                                     "Tasks.ReadWrite.All", "Mail.ReadWrite",
                                     "Sites.ReadWrite.All"}),
}

ALL_STAFF = f"all-staff@{identities.DOMAIN}"
SALES_TEAM = f"sales-team@{identities.DOMAIN}"
#: the generated staff mailboxes only (none unless the tenant has them)
EMPLOYEES = f"employees@{identities.DOMAIN}"
#: a directory user without a mailbox (no mail): a member for_each has to skip
CONTRACTOR = directory.CONTRACTOR


def demo_groups() -> dict[str, dict[str, Any]]:
    """The demo groups by id: all-staff@ (sync@, alice@, the contractor, the nested group
    sales-team@ and the generated staff), sales-team@ (sales@, alice@ again) and employees@
    (the generated staff)."""
    def group(mail: str, name: str, members: list[str]) -> dict[str, Any]:
        return {"id": object_id(mail), "displayName": name, "description": None,
                "mail": mail, "mailEnabled": True, "mailNickname": mail.partition("@")[0],
                "securityEnabled": False, "groupTypes": ["Unified"],
                "proxyAddresses": [f"SMTP:{mail}"], "_members": members}

    sales = group(SALES_TEAM, "Sales team", ["sales@sandbox.test", "alice@sandbox.test"])
    staff = group(ALL_STAFF, "All staff", ["sync@sandbox.test", "alice@sandbox.test",
                                           CONTRACTOR, sales["id"], *identities.STAFF])
    employees = group(EMPLOYEES, "Employees", list(identities.STAFF))
    return {g["id"]: g for g in (staff, sales, employees)}


def _directory_user(upn: str) -> dict[str, Any]:
    # the contractor has no mailbox: no mail (directory.person)
    return user_entity(upn)


def transitive_members(groups: dict[str, dict[str, Any]], group_id: str
                       ) -> list[dict[str, Any]]:
    """Every member of a group and of the groups nested in it, once each, in the order
    met (nested groups themselves included, typed by ``@odata.type``); cycles end."""
    seen: set[str] = set()
    out: list[dict[str, Any]] = []
    pending = list(groups[group_id]["_members"])
    while pending:
        ref = pending.pop(0)
        if ref in seen:
            continue
        seen.add(ref)
        if ref in groups:
            nested = groups[ref]
            out.append({"@odata.type": "#microsoft.graph.group",
                        **{k: v for k, v in nested.items() if not k.startswith("_")}})
            pending += nested["_members"]
        else:
            out.append({"@odata.type": "#microsoft.graph.user", **_directory_user(ref)})
    return out


def may_read(ctx: Ctx) -> bool:
    """Whether the token may read groups: a user (delegated), or an app with a role of
    :data:`READ_ROLES`."""
    principal = ctx.principal
    if principal.kind != "app":
        return True
    roles = ctx.service.app_roles.get(principal.name, frozenset())
    return bool(roles & READ_ROLES)


def route_groups(ctx: Ctx, rest: list[str]) -> Response:
    """``/groups[/{id}[/transitiveMembers[/microsoft.graph.user]]]`` (GET only)."""
    svc = ctx.service
    if ctx.method != "GET":
        raise GraphError(405, "BadRequest", "Groups are read-only here.")
    if not may_read(ctx):
        raise GraphError(403, "Authorization_RequestDenied",
                         "Insufficient privileges to complete the operation.")
    groups: dict[str, dict[str, Any]] = svc.groups
    if not rest:
        return paged(ctx, GROUPS, list(groups.values()), svc.emitter(ctx, GROUPS), "groups")
    group = groups.get(rest[0].lower())
    if group is None:
        raise GraphError(404, "Request_ResourceNotFound", f"Resource '{rest[0]}' does not "
                         "exist or one of its queried reference-property objects are not "
                         "present.")
    if len(rest) == 1:
        return Response.json(svc.emitter(ctx, GROUPS)(group), operation="groups.get")
    svc.navigation_or_400("group", rest[1])
    if rest[1] != "transitiveMembers" or len(rest) > 3:
        raise GraphError(400, "BadRequest", f"Resource not found for the segment '{rest[1]}'.")
    members = transitive_members(groups, group["id"])
    if len(rest) == 3:
        if rest[2] != "microsoft.graph.user":
            raise GraphError(400, "Request_UnsupportedQuery", f"The type cast '{rest[2]}' is "
                             "not supported here (only microsoft.graph.user).")
        members = [m for m in members if m["@odata.type"] == "#microsoft.graph.user"]
        return paged(ctx, MEMBER_USERS, members, svc.emitter(ctx, MEMBER_USERS), "users")
    # a directoryObject collection: each member shaped and checked as its own type, typed
    emitters = {"#microsoft.graph.user": svc.emitter(ctx, MEMBER_USERS),
                "#microsoft.graph.group": svc.emitter(ctx, GROUPS)}

    def emit(member: dict[str, Any]) -> dict[str, Any]:
        kind = member["@odata.type"]
        return {"@odata.type": kind, **emitters[kind](member)}

    return paged(ctx, MEMBERS, members, emit, "directoryObjects")
