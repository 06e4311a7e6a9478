"""olcAccess rules as slapd.access(5) defines them: parsed, and evaluated in first-match
order for each kind of subject."""

from __future__ import annotations

import pytest

from lockstep.paths.ldap_acl import (
    AclSyntaxError,
    Entry,
    Subject,
    norm_dn,
    parse_access,
    parse_rules,
    rights,
)

BASE = "dc=example,dc=test"
SVC = norm_dn(f"uid=svc,ou=people,{BASE}")
HELPDESK = norm_dn(f"uid=helpdesk,ou=people,{BASE}")
ADMINS = norm_dn(f"cn=admins,ou=groups,{BASE}")


def entry_subject(dn, *groups) -> Subject:
    return Subject("entry", dn, frozenset(groups))


def can(rules: list[str], who: Subject, attribute: str = "userPassword", on=SVC) -> str:
    return "".join(sorted(rights(parse_rules(rules), Entry(on), attribute, who).privileges))


def test_dns_compare_folded() -> None:
    assert norm_dn("UID= Svc ,OU=People,DC=Example,DC=Test") == SVC


def test_the_first_matching_to_decides() -> None:
    rules = [
        f"{{0}}to dn.exact=uid=svc,ou=people,{BASE} attrs=userPassword by self write by * none",
        f'{{1}}to attrs=userPassword by dn.exact="uid=helpdesk,ou=people,{BASE}" write',
    ]
    assert "w" not in can(rules, entry_subject(HELPDESK))
    other = norm_dn(f"uid=other,ou=people,{BASE}")
    assert "w" in can(rules, entry_subject(HELPDESK), on=other)


def test_the_first_matching_by_decides_and_no_match_is_none() -> None:
    rules = ["to attrs=userPassword by anonymous auth by users read by * none"]
    assert can(rules, Subject("anonymous")) == "dx"
    assert "r" in can(rules, Subject("bound"))
    assert can(["to attrs=cn by * read"], Subject("bound")) == ""


def test_continue_accumulates_and_break_tries_the_next_rule() -> None:
    rules = [
        f"{{0}}to attrs=userPassword by users +r continue by group=cn=admins,ou=groups,{BASE} +w",
        "{1}to * by * none",
    ]
    assert can(rules, entry_subject(HELPDESK, ADMINS)) == "rw"
    assert can(rules, entry_subject(HELPDESK)) == "r"
    broken = ["{0}to attrs=userPassword by users break", "{1}to * by users write"]
    assert "w" in can(broken, Subject("bound"))


def test_groups_self_and_dnattr() -> None:
    group = f"group.exact=cn=admins,ou=groups,{BASE}"
    assert "w" in can([f"to * by {group} write"], Subject("group", ADMINS))
    assert "w" not in can([f"to * by {group} write"], Subject("bound"))
    assert "w" in can(["to * by self write"], entry_subject(SVC))
    members = Entry(ADMINS, members=frozenset({HELPDESK}))
    found = rights(parse_rules(["to * by dnattr=member write"]), members, "member",
                   entry_subject(HELPDESK))  # fmt: skip
    assert "w" in found.privileges


def test_selfwrite_lets_a_subject_add_only_itself() -> None:
    found = can(["to attrs=member by users selfwrite"], Subject("bound"), "member", ADMINS)
    assert "W" in found and "w" not in found


def test_no_rules_is_slapd_s_default_read_for_everyone() -> None:
    assert "r" in can([], Subject("anonymous"))


def test_what_lockstep_cannot_decide_is_a_condition_not_dropped() -> None:
    found = rights(
        parse_rules(["to attrs=userPassword by users ssf=128 write", "to * by * none"]),
        Entry(SVC),
        "userPassword",
        Subject("bound"),
    )
    assert "w" in found.privileges and found.conditions == ("the bind meets ssf=128",)


def test_scopes_of_dn() -> None:
    people = f"ou=people,{BASE}"
    assert can([f"to dn.one={people} by * write"], Subject("bound"))
    assert can([f"to dn.children={BASE} by * write"], Subject("bound"))
    assert not can([f"to dn.exact={people} by * write"], Subject("bound"))
    assert can(["to dn.regex=^uid=[^,]+,ou=people,.*$ by * write"], Subject("bound"))


@pytest.mark.parametrize(
    "text",
    ["by * read", "to * by", "to frobnicate=x by * read", "to * by elephants read", 'to "x'],
)
def test_a_rule_lockstep_cannot_read_is_an_error(text: str) -> None:
    with pytest.raises(AclSyntaxError):
        parse_access(text)
