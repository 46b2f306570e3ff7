"""Deterministic generation of fake Entra ID tenants (the `--tenant-file` format).

A tenant document is plain JSON: users and groups as Graph returns them, direct memberships
per group, non-user directory objects, managers and subscribed SKUs. Everything comes from
one `random.Random(seed)`, so the same arguments always give the same document.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import re
import uuid
from pathlib import Path
from typing import Any

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

_FIRST = (
    "James Mary Robert Patricia John Jennifer Michael Linda David Elizabeth William Barbara "
    "Richard Susan Joseph Jessica Thomas Sarah Charles Karen Christopher Lisa Daniel Nancy "
    "Matthew Betty Anthony Sandra Mark Margaret Donald Ashley Steven Kimberly Andrew Emily "
    "Paul Donna Joshua Michelle Kenneth Carol Kevin Amanda Brian Melissa George Deborah "
    "Timothy Stephanie Ronald Rebecca Jason Sharon Edward Laura Jeffrey Cynthia Ryan Amy "
    "Jacob Kathleen Gary Angela Nicholas Shirley Eric Brenda Jonathan Emma Stephen Anna "
    "Larry Pamela Justin Nicole Scott Samantha Brandon Katherine Benjamin Christine Samuel "
    "Helen Gregory Debra Alexander Rachel Patrick Carolyn Frank Janet Raymond Maria Jack "
    "Olivia Dennis Heather Jerry Diane Tyler Julie Aaron Joyce Jose Victoria Adam Ruth "
    "Nathan Virginia Henry Lauren Zachary Kelly Douglas Christina Peter Joan Kyle Evelyn "
    "Noah Judith Ethan Andrea Jeremy Hannah Walter Megan Christian Cheryl Keith Jacqueline "
    "Roger Martha Terry Madison Austin Teresa Sean Gloria Gerald Sara Carl Janice Harold "
    "Ann Dylan Kathryn Arthur Abigail Lawrence Sophia Jordan Frances Jesse Jean Bryan Alice "
    "Billy Judy Bruce Isabella Gabriel Julia Joe Grace Logan Amber Alan Denise Juan Danielle "
    "Wayne Marilyn Roy Beverly Ralph Charlotte Randy Natalie Eugene Theresa Vincent Diana "
    "Russell Brittany Louis Doris Philip Kayla Bobby Alexis Johnny Lori Bradley Marie "
    "Aisha Chen Wei Yuki Priya Arjun Fatima Omar Sofia Mateo Lucia Hiro Ingrid Lars Zoe "
    "Noor Kofi Amara Dmitri Olga Sven Freya Rafael Camila Tariq Leila Kenji Mei Ravi Ananya"
).split()

_LAST = (
    "Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez "
    "Lopez Gonzalez Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson "
    "White Harris Sanchez Clark Ramirez Lewis Robinson Walker Young Allen King Wright Scott "
    "Torres Nguyen Hill Flores Green Adams Nelson Baker Hall Rivera Campbell Mitchell Carter "
    "Roberts Gomez Phillips Evans Turner Diaz Parker Cruz Edwards Collins Reyes Stewart "
    "Morris Morales Murphy Cook Rogers Gutierrez Ortiz Morgan Cooper Peterson Bailey Reed "
    "Kelly Howard Ramos Kim Cox Ward Richardson Watson Brooks Chavez Wood James Bennett Gray "
    "Mendoza Ruiz Hughes Price Alvarez Castillo Sanders Patel Myers Long Ross Foster Jimenez "
    "Powell Jenkins Perry Russell Sullivan Bell Coleman Butler Henderson Barnes Gonzales "
    "Fisher Vasquez Simmons Romero Jordan Patterson Alexander Hamilton Graham Reynolds "
    "Griffin Wallace Moreno West Cole Hayes Bryant Herrera Gibson Ellis Tran Medina Aguilar "
    "Stevens Murray Ford Castro Marshall Owens Harrison Fernandez McDonald Woods Washington "
    "Kennedy Wells Vargas Henry Chen Freeman Webb Tucker Guzman Burns Crawford Olson Simpson "
    "Porter Hunter Gordon Mendez Silva Shaw Snyder Mason Dixon Munoz Hunt Hicks Holmes "
    "Palmer Wagner Black Robertson Boyd Rose Stone Salazar Fox Warren Mills Meyer Rice "
    "Schmidt Garza Daniels Ferguson Nichols Stephens Soto Weaver Ryan Gardner Payne Grant "
    "Okafor Nakamura Tanaka Singh Kumar Haddad Johansson Lindqvist Novak Kowalski Rossi "
    "Bianchi Muller Schneider Dubois Moreau Costa Santos Yilmaz Ivanova Petrov Osei Mensah"
).split()

_DEPARTMENTS = {
    "Engineering": (
        "Software Engineer",
        "Senior Software Engineer",
        "Engineering Manager",
        "Site Reliability Engineer",
        "QA Engineer",
        "Principal Engineer",
    ),
    "Sales": (
        "Account Executive",
        "Sales Development Rep",
        "Sales Manager",
        "Regional Sales Director",
    ),
    "Marketing": (
        "Marketing Specialist",
        "Content Strategist",
        "Marketing Manager",
        "Brand Designer",
    ),
    "Finance": ("Accountant", "Financial Analyst", "Finance Manager", "Controller"),
    "Human Resources": ("HR Generalist", "Recruiter", "HR Business Partner", "HR Manager"),
    "IT": ("IT Support Specialist", "Systems Administrator", "IT Manager", "Security Analyst"),
    "Operations": ("Operations Analyst", "Operations Manager", "Facilities Coordinator"),
    "Customer Success": ("Customer Success Manager", "Support Engineer", "Support Lead"),
    "Legal": ("Legal Counsel", "Paralegal", "Compliance Officer"),
    "Product": ("Product Manager", "Product Designer", "UX Researcher"),
}
_DEPT_NAMES = tuple(_DEPARTMENTS)
_DEPT_WEIGHTS = (22, 16, 8, 7, 5, 7, 8, 10, 3, 6)
_OFFICES = (
    "London",
    "Seattle",
    "New York",
    "Berlin",
    "Singapore",
    "Sydney",
    "Remote",
    "Paris",
    "Toronto",
    "Dublin",
)
_EXTERNAL_DOMAINS = (
    "fabrikam.com",
    "northwindtraders.com",
    "adatum.com",
    "gmail.com",
    "outlook.com",
    "litware.com",
    "tailspintoys.com",
    "wingtiptoys.com",
)
_GROUP_WORDS = (
    "Project",
    "Team",
    "Committee",
    "Guild",
    "Working Group",
    "Squad",
    "Council",
    "Club",
    "Network",
    "Taskforce",
)
_GROUP_TOPICS = (
    "Apollo",
    "Falcon",
    "Orion",
    "Phoenix",
    "Atlas",
    "Nova",
    "Zephyr",
    "Titan",
    "Aurora",
    "Helix",
    "Quasar",
    "Summit",
    "Harbor",
    "Cascade",
    "Meridian",
    "Pioneer",
    "Horizon",
    "Catalyst",
    "Beacon",
    "Vertex",
    "Wellbeing",
    "Diversity",
    "Sustainability",
    "Innovation",
    "Onboarding",
    "Security Champions",
    "Agile",
    "Data",
    "Cloud",
    "Mobile",
    "Analytics",
    "Partnerships",
    "Events",
    "Social",
)

# Service plans (real ids) and the three SKUs the generated tenants subscribe to.
_PLANS = {
    "EXCHANGE_S_ENTERPRISE": "efb87545-963c-4e0d-99df-69c6916d9eb0",
    "EXCHANGE_S_STANDARD": "9aaf7827-d63c-4b61-89c3-182f06f82e5c",
    "SHAREPOINTENTERPRISE": "5dbe027f-2339-4123-9542-606e4d348a72",
    "TEAMS1": "57ff2da0-773e-42df-b2af-ffb7a2317929",
    "OFFICESUBSCRIPTION": "43de0ff5-c92c-492b-9116-175376d08c38",
    "MCOSTANDARD": "0feaeb32-d00e-4d66-bd5a-43b5b83db82c",
    "YAMMER_ENTERPRISE": "7547a3fe-08ee-4ccb-b430-5077c5041653",
}
SKUS = (
    (
        "6fd2c87f-b296-42f0-b197-1e91e994b900",
        "ENTERPRISEPACK",
        (
            "EXCHANGE_S_ENTERPRISE",
            "SHAREPOINTENTERPRISE",
            "TEAMS1",
            "OFFICESUBSCRIPTION",
            "MCOSTANDARD",
            "YAMMER_ENTERPRISE",
        ),
    ),
    (
        "06ebc4ee-1bb5-47dd-8120-11324bc54e06",
        "SPE_E5",
        (
            "EXCHANGE_S_ENTERPRISE",
            "SHAREPOINTENTERPRISE",
            "TEAMS1",
            "OFFICESUBSCRIPTION",
            "MCOSTANDARD",
        ),
    ),
    ("4b9405b0-7788-4568-add1-99614e613b69", "EXCHANGESTANDARD", ("EXCHANGE_S_STANDARD",)),
)

_EPOCH = dt.datetime(2015, 1, 1, tzinfo=dt.UTC)
_SPAN_SECONDS = int((dt.datetime(2025, 6, 1, tzinfo=dt.UTC) - _EPOCH).total_seconds())


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _timestamp(rng: random.Random) -> str:
    moment = _EPOCH + dt.timedelta(seconds=rng.randrange(_SPAN_SECONDS))
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "", text.lower()) or "tenant"


def _ascii(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "", text)


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

    n_guests = max(1, users * 3 // 100) if users >= 20 else 0
    n_shared = max(1, users * 2 // 100) if users >= 20 else 0
    n_members = users - n_guests - n_shared
    emp_counter = 1000
    mailboxes = (
        "Reception",
        "Info",
        "Support",
        "Payroll",
        "Facilities",
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


def _groups(
    rng: random.Random,
    users: list[dict],
    kinds: list[str],
    member_idx: list[int],
    domain: str,
    contacts: list[str],
    devices: list[str],
    sps: list[str],
) -> tuple[list[dict], dict[str, list[str]]]:
    n_users = len(users)
    member_ids = [users[i]["id"] for i in member_idx] or [u["id"] for u in users]
    all_ids = [u["id"] for u in users]
    groups: list[dict] = []
    members: dict[str, list[str]] = {}
    nicks: set[str] = set()

    def add(name: str, kind: str, desc: str, ids: list[str], rule: str | None = None) -> str:
        nick = _ascii(name) or "group"
        base, k = nick, 1
        while nick.lower() in nicks:
            k += 1
            nick = f"{base}{k}"
        nicks.add(nick.lower())
        group_types = {"m365": ["Unified"], "sec": [], "mailsec": [], "dl": []}[kind]
        if rule is not None:
            group_types = [*group_types, "DynamicMembership"]
        mail_enabled = kind in ("m365", "mailsec", "dl")
        security = kind in ("sec", "mailsec") or (kind == "m365" and rng.random() < 0.25)
        gid = _uuid(rng)
        groups.append(
            {
                "id": gid,
                "displayName": name,
                "description": desc,
                "groupTypes": group_types,
                "mailEnabled": mail_enabled,
                "securityEnabled": security,
                "mail": f"{nick.lower()}@{domain}" if mail_enabled else None,
                "mailNickname": nick,
                "createdDateTime": _timestamp(rng),
                "membershipRule": rule,
            }
        )
        members[gid] = ids
        return gid

    def sample(pool: list[str], k: int) -> list[str]:
        return rng.sample(pool, max(0, min(k, len(pool))))

    enabled_members = [users[i]["id"] for i in member_idx if users[i]["accountEnabled"]]
    add("All Staff", "m365", "Everyone in the company", enabled_members or member_ids)
    sales = [users[i]["id"] for i in member_idx if users[i]["department"] == "Sales"]
    add(
        "Sales (dynamic)",
        "sec",
        "Everyone in Sales, by rule",
        sales,
        rule='(user.department -eq "Sales")',
    )
    small = max(2, min(40, n_users // 20))
    sre = add("Engineering - Platform - SRE", "sec", "On-call engineers", sample(member_ids, small))
    platform = add(
        "Engineering - Platform", "sec", "Platform team", [*sample(member_ids, small), sre]
    )
    eng = [users[i]["id"] for i in member_idx if users[i]["department"] == "Engineering"]
    add("Engineering", "sec", "All engineers", [*eng[: max(1, len(eng) // 2)], platform])
    # A nesting cycle, A -> B -> A, as real tenants sometimes have.
    cycle_a = add("Project Falcon", "m365", "Falcon programme", sample(member_ids, small))
    cycle_b = add(
        "Project Falcon Core", "sec", "Falcon core team", [*sample(member_ids, small), cycle_a]
    )
    members[cycle_a].append(cycle_b)
    add("Archived Project", "m365", "No members left", [])
    add(
        "Company Newsletter",
        "dl",
        "Distribution list for the newsletter",
        [*sample(all_ids, small), *contacts[:3]],
    )
    add(
        "Finance Approvers",
        "mailsec",
        "Mail-enabled security group for approvals",
        sample(member_ids, max(1, small // 2)),
    )
    add("Managed Laptops", "sec", "Devices and service principals", [*devices[:5], *sps[:2]])
    add(
        "External Partners",
        "m365",
        "Guests and contacts",
        [*(users[i]["id"] for i in range(n_users) if kinds[i] == "guest"), *contacts[3:6]],
    )

    target = max(len(groups) + 4, round(n_users * 0.04))
    per_user = 14.0 if n_users >= 10_000 else 2.0 + 11.0 * n_users / 10_000
    remaining = max(0, int(per_user * n_users) - sum(len(v) for v in members.values()))
    n_regular = target - len(groups)
    weights = [rng.random() ** 3 + 0.01 for _ in range(n_regular)]
    total_w = sum(weights)
    kinds_cycle = ("m365",) * 9 + ("sec",) * 7 + ("mailsec",) * 2 + ("dl",) * 2
    for j, w in enumerate(weights):
        kind = rng.choice(kinds_cycle)
        topic = rng.choice(_GROUP_TOPICS)
        word = rng.choice(_GROUP_WORDS)
        name = f"{word} {topic}" if j < 40 else f"{word} {topic} {j}"
        size = max(1, min(len(member_ids), round(remaining * w / total_w)))
        ids = sample(member_ids, size)
        if kind == "dl" and contacts and rng.random() < 0.3:
            ids.append(rng.choice(contacts))
        add(name, kind, f"{word} for {topic}", ids)
    return groups, members


def _hidden_groups(
    rng: random.Random, n: int, users: list[dict], groups: list[dict], members: dict, domain: str
) -> None:
    """Microsoft 365 groups whose membership is hidden (a board, an HR case team), each with
    a few enabled members."""
    enabled = [u["id"] for u in users if u.get("accountEnabled")] or [u["id"] for u in users]
    for i in range(n):
        gid = _uuid(rng)
        nick = f"confidential{i + 1}"
        groups.append(
            {
                "id": gid,
                "displayName": f"Confidential Board {i + 1}" if n > 1 else "Confidential Board",
                "description": "Members hidden from everyone outside the group",
                "groupTypes": ["Unified"],
                "mailEnabled": True,
                "securityEnabled": False,
                "mail": f"{nick}@{domain}",
                "mailNickname": nick,
                "createdDateTime": _timestamp(rng),
                "membershipRule": None,
                "visibility": "HiddenMembership",
            }
        )
        members[gid] = rng.sample(enabled, max(1, min(5, len(enabled))))


def load_tenant_file(path: str | Path) -> dict:
    """Read a tenant document (the `--tenant-file` format) and check its shape."""
    with open(path, encoding="utf-8") as fh:
        doc = json.load(fh)
    missing = [k for k in ("tenant_id", "client_id", "users", "groups", "members") if k not in doc]
    if missing:
        raise ValueError(f"tenant file {path}: missing keys {', '.join(missing)}")
    for key, default in (("other_objects", []), ("managers", {}), ("subscribedSkus", [])):
        doc.setdefault(key, default)
    doc.setdefault("name", Path(path).stem)
    doc.setdefault("domain", None)
    return doc


def bundled_tenant(name: str = "contoso-demo") -> dict:
    """One of the tenant documents shipped with the package (`fakegraph/tenants/*.json`)."""
    path = Path(__file__).with_name("tenants") / f"{name}.json"
    if not path.is_file():
        raise FileNotFoundError(f"no bundled tenant {name!r} at {path}")
    return load_tenant_file(path)
