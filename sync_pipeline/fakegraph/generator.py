"""Deterministic generation of fake Entra ID tenants (the `--tenant-file` format).

A tenant document is plain JSON: users and groups as Graph returns them, direct memberships
per group, non-user directory objects, managers and subscribed SKUs. Everything comes from
one `random.Random(seed)`, so the same arguments always give the same document.

A tenant's users, managers, directory objects and SKUs are made here; its groups in
`groups.py`, from word lists in `names.py`; reading tenant files in `tenantfile.py`.
"""

from __future__ import annotations

import random
from typing import Any

from sync_pipeline.fakegraph.groups import _groups, _hidden_groups
from sync_pipeline.fakegraph.names import (
    _DEPARTMENTS,
    _DEPT_NAMES,
    _DEPT_WEIGHTS,
    _EXTERNAL_DOMAINS,
    _FIRST,
    _GROUP_TOPICS,
    _LAST,
    _OFFICES,
    _PLANS,
    SKUS,
    _ascii,
    _slug,
    _timestamp,
    _uuid,
)
from sync_pipeline.fakegraph.tenantfile import bundled_tenant, load_tenant_file

# bundled_tenant and load_tenant_file: re-exported, they were defined here
__all__ = [
    "GROUP_KEYS",
    "GROUP_TYPE",
    "SKUS",
    "USER_KEYS",
    "USER_TYPE",
    "bundled_tenant",
    "generate_tenant",
    "load_tenant_file",
]

USER_KEYS = (
    "id",
    "userPrincipalName",
    "mail",
    "otherMails",
    "proxyAddresses",
    "displayName",
    "givenName",
    "surname",
    "jobTitle",
    "department",
    "officeLocation",
    "companyName",
    "employeeId",
    "accountEnabled",
    "userType",
    "assignedLicenses",
    "createdDateTime",
    "onPremisesSyncEnabled",
)

GROUP_KEYS = (
    "id",
    "displayName",
    "description",
    "groupTypes",
    "mailEnabled",
    "securityEnabled",
    "mail",
    "mailNickname",
    "createdDateTime",
    "membershipRule",
)

USER_TYPE = "#microsoft.graph.user"
GROUP_TYPE = "#microsoft.graph.group"


def generate_tenant(
    *, name: str, users: int, seed: int, domain: str | None = None, hidden_groups: int = 0
) -> dict:
    """A tenant document with `users` users, deterministic in (name, users, seed, domain,
    hidden_groups).

    `hidden_groups` adds that many Microsoft 365 groups with `visibility: HiddenMembership`
    (listing their members needs Member.Read.Hidden), drawn from a random stream of their own:
    the rest of the document is the same as without them."""
    if users < 1:
        raise ValueError(f"users must be at least 1, got {users}")
    rng = random.Random(seed)
    slug = _slug(name)
    domain = (domain or f"{slug}.com").lower()
    ms_domain = f"{slug}.onmicrosoft.com"
    company = name.replace("-", " ").title()
    tenant_id = _uuid(rng)
    client_id = _uuid(rng)

    sku_ids = [s[0] for s in SKUS]
    plan_ids = list(_PLANS.values())
    used_locals: dict[str, int] = {}
    user_list: list[dict[str, Any]] = []
    kinds: list[str] = []  # member | guest | shared
    shared: dict[str, str] = {}  # the shared kind's user ids: their label

    n_guests = max(1, users * 3 // 100) if users >= 20 else 0
    n_shared = max(1, users * 2 // 100) if users >= 20 else 0
    n_members = users - n_guests - n_shared
    emp_counter = 1000
    mailboxes = (
        "Reception",
        "Info",
        "Support",
        "Payroll",
        "Projector",
        "Boardroom",
        "Careers",
        "Accounts Payable",
        "Press",
        "Helpdesk",
    )

    for i in range(users):
        kind = "member" if i < n_members else ("guest" if i < n_members + n_guests else "shared")
        kinds.append(kind)
        uid = _uuid(rng)
        first = rng.choice(_FIRST)
        last = rng.choice(_LAST)
        dept = rng.choices(_DEPT_NAMES, _DEPT_WEIGHTS)[0] if i else "Executive"
        created = _timestamp(rng)
        if kind == "member":
            base = f"{_ascii(first)}.{_ascii(last)}".lower()
            n = used_locals.get(base, 0)
            used_locals[base] = n + 1
            local = base if n == 0 else f"{base}{n + 1}"
            roll = rng.random()
            vanity = f"{local}@{domain}"
            if roll < 0.10:  # UPN on the onmicrosoft domain, mail on the vanity domain
                upn = f"{local}@{ms_domain}"
                mail: str | None = vanity
            elif roll < 0.15:  # no mailbox
                upn, mail = vanity, None
            else:
                upn, mail = vanity, vanity
            proxies: list[str] = []
            if mail:
                primary = mail
                if rng.random() < 0.04:  # primary SMTP differs from mail
                    primary = f"{_ascii(first)[0]}{_ascii(last)}@{domain}".lower()
                proxies = [f"SMTP:{primary}", f"smtp:{local}@{ms_domain}"]
                if primary != mail:
                    proxies.append(f"smtp:{mail}")
                if rng.random() < 0.2:
                    proxies.append(f"smtp:{_ascii(first)[0]}.{_ascii(last)}@{domain}".lower())
            title = "Chief Executive Officer" if i == 0 else rng.choice(_DEPARTMENTS[dept])
            licences: list[dict[str, Any]] = []
            if rng.random() < 0.93:
                sku = rng.choices(sku_ids, (60, 25, 15))[0]
                disabled = [rng.choice(plan_ids)] if rng.random() < 0.1 else []
                licences.append({"skuId": sku, "disabledPlans": disabled})
            emp_counter += 1
            user: dict[str, Any] = {
                "id": uid,
                "userPrincipalName": upn,
                "mail": mail,
                "otherMails": [f"{local}@{rng.choice(_EXTERNAL_DOMAINS[3:5])}"]
                if rng.random() < 0.05
                else [],
                "proxyAddresses": proxies,
                "displayName": f"{first} {last}",
                "givenName": first,
                "surname": last,
                "jobTitle": title,
                "department": dept,
                "officeLocation": rng.choice(_OFFICES),
                "companyName": company if rng.random() < 0.8 else None,
                "employeeId": f"E{emp_counter:06d}" if rng.random() < 0.85 else None,
                "accountEnabled": not (i and rng.random() < 0.04),
                "userType": "Member",
                "assignedLicenses": licences,
                "createdDateTime": created,
                "onPremisesSyncEnabled": True if rng.random() < 0.6 else None,
            }
        elif kind == "guest":
            ext = rng.choice(_EXTERNAL_DOMAINS)
            local = f"{_ascii(first)}.{_ascii(last)}".lower()
            ext_mail = f"{local}@{ext}"
            user = {
                "id": uid,
                "userPrincipalName": f"{local}_{ext}#EXT#@{ms_domain}",
                "mail": ext_mail,
                "otherMails": [ext_mail],
                "proxyAddresses": [f"SMTP:{ext_mail}"],
                "displayName": f"{first} {last} (Guest)",
                "givenName": first,
                "surname": last,
                "jobTitle": None,
                "department": None,
                "officeLocation": None,
                "companyName": None,
                "employeeId": None,
                "accountEnabled": rng.random() < 0.9,
                "userType": "Guest",
                "assignedLicenses": [],
                "createdDateTime": created,
                "onPremisesSyncEnabled": None,
            }
        else:
            k = i - n_members - n_guests
            label = mailboxes[k % len(mailboxes)] + (
                f" {k // len(mailboxes) + 1}" if k >= 10 else ""
            )
            shared[uid] = mailboxes[k % len(mailboxes)]
            local = _ascii(label).lower()
            addr = f"{local}@{domain}"
            user = {
                "id": uid,
                "userPrincipalName": addr,
                "mail": addr,
                "otherMails": [],
                "proxyAddresses": [f"SMTP:{addr}", f"smtp:{local}@{ms_domain}"],
                "displayName": f"{label} Mailbox",
                "givenName": None,
                "surname": None,
                "jobTitle": None,
                "department": None,
                "officeLocation": None,
                "companyName": company,
                "employeeId": None,
                "accountEnabled": rng.random() < 0.3,
                "userType": "Member",
                "assignedLicenses": [],
                "createdDateTime": created,
                "onPremisesSyncEnabled": None,
            }
        user_list.append(user)

    # The non-person mailboxes by what Exchange calls them (mailboxSettings.userPurpose): the
    # rooms and the equipment by their label, the rest shared. Members without a mail address
    # and guests have no mailbox here (tenant.mailbox_purpose); no random draw.
    purposes = {"Boardroom": "room", "Projector": "equipment"}
    mailbox_purposes = {uid: purposes.get(label, "shared") for uid, label in shared.items()}

    member_idx = [i for i, k in enumerate(kinds) if k == "member"]
    _address_edge_cases(user_list, member_idx, rng)

    # Managers: the first user is the CEO; each later member reports to an earlier one,
    # which gives a tree several levels deep. A few members have no manager, and three
    # manage each other in a ring (`_manager_cycle`).
    managers: dict[str, str] = {}
    for pos in range(1, len(member_idx)):
        if rng.random() < 0.03:
            continue
        boss = member_idx[rng.randrange(max(1, pos // 3))]
        managers[user_list[member_idx[pos]]["id"]] = user_list[boss]["id"]
    _manager_cycle(user_list, member_idx, managers)

    # Non-user directory objects that can be group members.
    n_other = max(2, users // 200)
    other_objects: list[dict[str, Any]] = []
    for j in range(n_other):
        other_objects.append(
            {
                "id": _uuid(rng),
                "@odata.type": "#microsoft.graph.orgContact",
                "displayName": f"{rng.choice(_FIRST)} {rng.choice(_LAST)} (Contact)",
            }
        )
        other_objects.append(
            {
                "id": _uuid(rng),
                "@odata.type": "#microsoft.graph.device",
                "displayName": f"LAPTOP-{rng.getrandbits(28):07X}",
            }
        )
        if j < max(2, n_other // 3):
            other_objects.append(
                {
                    "id": _uuid(rng),
                    "@odata.type": "#microsoft.graph.servicePrincipal",
                    "displayName": f"{rng.choice(_GROUP_TOPICS)} Connector",
                }
            )
    contacts = [o["id"] for o in other_objects if o["@odata.type"].endswith("orgContact")]
    devices = [o["id"] for o in other_objects if o["@odata.type"].endswith("device")]
    sps = [o["id"] for o in other_objects if o["@odata.type"].endswith("servicePrincipal")]

    groups, members = _groups(rng, user_list, kinds, member_idx, domain, contacts, devices, sps)
    if hidden_groups:
        hidden_rng = random.Random(f"{seed}:hidden")
        _hidden_groups(hidden_rng, hidden_groups, user_list, groups, members, domain)

    consumed = dict.fromkeys(sku_ids, 0)
    for user in user_list:
        for lic in user["assignedLicenses"]:
            consumed[lic["skuId"]] += 1
    skus = []
    for sku_id, part, plans in SKUS:
        used = consumed[sku_id]
        skus.append(
            {
                "id": f"{tenant_id}_{sku_id}",
                "skuId": sku_id,
                "skuPartNumber": part,
                "appliesTo": "User",
                "capabilityStatus": "Enabled",
                "consumedUnits": used,
                "prepaidUnits": {
                    "enabled": used + rng.randrange(0, max(5, used // 10) + 1),
                    "suspended": 0,
                    "warning": 0,
                    "lockedOut": 0,
                },
                "servicePlans": [
                    {
                        "servicePlanId": _PLANS[p],
                        "servicePlanName": p,
                        "provisioningStatus": "Success",
                        "appliesTo": "User",
                    }
                    for p in plans
                ],
            }
        )

    return {
        "name": name,
        "tenant_id": tenant_id,
        "client_id": client_id,
        "domain": domain,
        "users": user_list,
        "groups": groups,
        "members": members,
        "other_objects": other_objects,
        "managers": managers,
        "mailbox_purposes": mailbox_purposes,
        "subscribedSkus": skus,
    }


def _address_edge_cases(users: list[dict], member_idx: list[int], rng: random.Random) -> None:
    """Duplicate addresses (case-insensitive) and untidy addresses, as real tenants have."""
    if len(member_idx) < 12:
        return
    picks = member_idx[-6:]
    a, b, c, d, e, _ = (users[i] for i in picks)
    # Two UPNs that differ only by case.
    b["userPrincipalName"] = a["userPrincipalName"].upper()
    b["mail"] = None
    b["proxyAddresses"] = []
    # A mail address colliding (case-insensitively) with another user's UPN.
    d["mail"] = c["userPrincipalName"].title()
    d["proxyAddresses"] = [f"SMTP:{d['mail']}"]
    # An address with surrounding whitespace and mixed case.
    if e["mail"]:
        e["mail"] = f" {e['mail'][:1].upper()}{e['mail'][1:]} "


def _manager_cycle(users: list[dict], member_idx: list[int], managers: dict[str, str]) -> None:
    """Three members who manage each other in a ring (A -> B -> C -> A), as real directories
    sometimes have: enabled members just before `_address_edge_cases`' picks, so that the
    default settings import all three. Draws nothing from the generator's random stream, so
    every other part of a tenant stays what it was."""
    if len(member_idx) < 12:
        return
    ring = [i for i in reversed(member_idx[:-6]) if i and users[i]["accountEnabled"]][:3]
    if len(ring) < 3:
        return
    ids = [users[i]["id"] for i in ring]
    managers.update(zip(ids, ids[1:] + ids[:1], strict=True))
