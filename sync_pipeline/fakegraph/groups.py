"""The groups of a generated tenant: the fixed ones every tenant has (all staff, a dynamic
group, nested engineering groups, a nesting cycle, an empty group, a distribution list,
devices and guests), many regular groups of skewed sizes, and hidden-membership groups."""

from __future__ import annotations

import random

from sync_pipeline.fakegraph.names import _GROUP_TOPICS, _GROUP_WORDS, _ascii, _timestamp, _uuid


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
