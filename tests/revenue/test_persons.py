"""Customers to PostHog persons and groups: metadata wins, else the newest tagged child."""

from __future__ import annotations

from domain.persons import Child, resolve_group, resolve_person

KEY = "posthog_person_distinct_id"


def test_metadata_on_the_customer_wins() -> None:
    children = [Child("subscription", "sub_9", 2_000_000_000, {KEY: "from-sub"})]
    r = resolve_person({KEY: "from-customer"}, children)
    assert (r.value, r.source) == ("from-customer", "customer")


def test_otherwise_the_newest_child_carrying_the_key() -> None:
    children = [
        Child("subscription", "sub_old", 100, {KEY: "old"}),
        Child("invoice", "in_newest_untagged", 400, {}),
        Child("charge", "ch_new", 300, {KEY: "new"}),
        Child("invoice", "in_mid", 200, {KEY: "mid"}),
    ]
    r = resolve_person({"other": "x"}, children)
    assert (r.value, r.source) == ("new", "charge:ch_new")


def test_blank_values_do_not_count_and_nothing_tagged_is_none() -> None:
    assert resolve_person({KEY: "  "}, [Child("invoice", "in_1", 1, {KEY: ""})]).value is None
    assert resolve_person(None, []).source is None


def test_group_key_falls_back_to_the_posthog_org_id_set_by_the_plan_workflows() -> None:
    assert resolve_group({"posthog_org_id": "org_1"}, []).value == "org_1"
    r = resolve_group({}, [Child("subscription", "sub_1", 5, {"posthog_group_key": "grp"})])
    assert (r.value, r.source) == ("grp", "subscription:sub_1")
