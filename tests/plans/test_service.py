"""`plans.service`: the one door into a plan row (issue 11). The rules every door relies on,
tested on the service itself against a real migrated database:

- whatever JSON a caller sends, the answer is a stored row or a 422 naming fields — never another
  exception (hypothesis explores the values);
- a stored row reads back as valid input and fits its columns;
- locks, the PandaDoc id's uniqueness and the keep-policy of each door (API, CSV, intake);
- a row whose projection cannot be read is described, never raised.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from domain.plan_input import INPUT_FIELDS
from plans.service import (
    MAX_MINOR_UNITS,
    DocumentTaken,
    Keep,
    PlanRejected,
    PlanService,
    check_input,
    plan_json,
    row_view,
)
from settings import Settings
from store.accounts import Principal
from store.models import AuditEntry, Plan
from store.plans import plan_input_text

PLAN = {
    "company_name": "Acme Inc", "customer_email": "ap@acme.test", "credit_amount": "120000.00",
    "discount": "20", "price": "96000.00", "start_date": "2030-12-01", "term_months": 12,
    "products": ["product_analytics"],
}


class NoTemporal:
    def run(self, *_: Any, **__: Any) -> Any:
        raise AssertionError("this test must not reach Temporal")


@pytest.fixture
def service(settings: Settings) -> PlanService:
    return PlanService.for_settings(settings, NoTemporal())


def _count(service: PlanService) -> int:
    with service.unit_of_work() as session:
        return session.scalar(select(func.count()).select_from(Plan)) or 0


# --------------------------------------------------------------------------- any JSON, one answer

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats(allow_nan=False) | st.text(max_size=30)
    | st.sampled_from(["NaN", "-0", "1e400", "96,000.00", "9999-12-25", "0001-01-01", "12 months", "usd",
                       "jpy", "monthly", "cus_X1", "product_analytics", "\x00", "  ", "100%", "١٢"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)
changes = st.dictionaries(st.sampled_from([*INPUT_FIELDS, "accept_warnings"]), json_values, max_size=4)


@hypothesis_settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(change=changes)
def test_any_json_is_a_stored_valid_row_or_a_422_naming_fields(service: PlanService, change: dict[str, Any]) -> None:
    for attempt in ("create", "edit"):
        try:
            if attempt == "create":
                body = service.create({**PLAN, **change}, actor="hypothesis")
            else:
                plan_id = service.create(dict(PLAN), actor="hypothesis")["id"]
                body = service.edit(plan_id, change, actor="hypothesis")
        except DocumentTaken:
            continue  # a pandadoc_id an earlier example stored: refused, as it must be
        except PlanRejected as refused:
            assert refused.status == 422
            named = set(refused.errors) | set(refused.warnings)
            assert named and named <= {*INPUT_FIELDS, "row"}, named
            continue
        with service.unit_of_work() as session:
            plan = session.get(Plan, body["id"])
            assert plan is not None
            assert 0 < plan.price <= MAX_MINOR_UNITS and 0 < plan.credit_amount <= MAX_MINOR_UNITS
            # What was stored reads back as input every door accepts.
            again = check_input(plan_input_text(plan), existing=None, known_products=None, accept_warnings=True)
            assert not again.errors, (change, again.errors)


# --------------------------------------------------------------------------- the doors' policies

def test_a_person_confirms_warnings_csv_keeps_them_for_review_intake_keeps_everything(service: PlanService) -> None:
    cheap = {**PLAN, "price": "50000.00"}
    with pytest.raises(PlanRejected) as refused:
        service.create(cheap, actor="api")
    assert refused.value.status == 422 and set(refused.value.warnings) == {"price"}
    assert service.create({**cheap, "accept_warnings": True}, actor="api")["state"] == "new"

    with service.batch() as rows:
        kept = rows.create({**cheap, "pandadoc_id": "pd-csv-1"}, actor="csv", source="csv", keep=Keep.WARNINGS)
        assert kept.state == "needs_review" and "price" in kept.warnings
        with pytest.raises(PlanRejected):
            rows.create({**PLAN, "customer_email": "nope", "pandadoc_id": "pd-csv-2"}, actor="csv",
                        keep=Keep.WARNINGS)

    stored = service.create({**PLAN, "customer_email": "nope", "price": [1], "pandadoc_id": "pd-intake-1"},
                            actor="pandadoc", source="pandadoc", keep=Keep.EVERYTHING)
    assert stored["state"] == "needs_review" and stored["pandadoc_id"] == "pd-intake-1"
    assert {"customer_email", "price"} <= set(stored["errors"])
    assert stored["errors"]["_raw"]["price"] == [1]  # nothing a webhook sent is lost


def test_a_pandadoc_id_has_one_row_whichever_door(service: PlanService) -> None:
    first = service.create({**PLAN, "pandadoc_id": "pd-1"}, actor="api")
    for keep in Keep:
        with pytest.raises(DocumentTaken) as taken:
            service.create({**PLAN, "pandadoc_id": "pd-1"}, actor="x", keep=keep)
        assert taken.value.existing_id == first["id"]
        assert taken.value.errors["pandadoc_id"].startswith(f"Row {first['id']} already has")
    other = service.create({**PLAN, "pandadoc_id": "pd-2"}, actor="api")
    with pytest.raises(PlanRejected) as refused:
        service.edit(other["id"], {"pandadoc_id": "pd-1"}, actor="api")
    assert "already has the PandaDoc order form" in refused.value.errors["pandadoc_id"]
    assert _count(service) == 2


def test_locks_hold_for_every_change_and_the_sentence_is_the_same(service: PlanService) -> None:
    plan_id = service.create(dict(PLAN), actor="api")["id"]
    with service.unit_of_work() as session:
        plan = session.get(Plan, plan_id)
        assert plan is not None
        plan.workflow_view = {"progress": {"customer_id": "cus_1", "invoice_id": "in_1", "invoice_status": "open",
                                           "credit": "armed", "schedule_id": "sub_sched_1"}}
    for name, value in [("price", "1.00"), ("currency", "eur"), ("start_date", "2031-01-01"), ("term_months", 24),
                        ("payment_terms_days", 10), ("credit_amount", "1.00"), ("credit_start", "next_billing_cycle"),
                        ("payment_schedule", "monthly"), ("stripe_customer_id_existing", "cus_Z9"),
                        ("products", ["surveys"])]:
        with pytest.raises(PlanRejected) as refused:
            service.edit(plan_id, {name: value, "accept_warnings": True}, actor="api")
        assert refused.value.errors[name].startswith(f"{name.replace('_', ' ').capitalize()} cannot change any more: ")
    with pytest.raises(PlanRejected):
        service.set_products(plan_id, ["surveys"], actor="table")
    # Sending a locked field unchanged is no change, and other fields still save.
    body = service.edit(plan_id, {"price": "96000.00", "company_name": "Acme Renamed"}, actor="api")
    assert body["company_name"] == "Acme Renamed" and body["price"] == "96000.00"
    with service.unit_of_work() as session:
        edits = session.scalars(select(AuditEntry.input).where(AuditEntry.action == "edit_row")).all()
    assert edits == [{"price": "96000.00", "company_name": "Acme Renamed"}]


def test_an_unreadable_projection_locks_everything_stripe_could_hold(service: PlanService) -> None:
    plan_id = service.create(dict(PLAN), actor="api")["id"]
    with service.unit_of_work() as session:
        plan = session.get(Plan, plan_id)
        assert plan is not None
        plan.workflow_view = {"progress": {"invoice_id": ["not", "an", "id"]}}
    with pytest.raises(PlanRejected) as refused:
        service.edit(plan_id, {"price": "1.00", "accept_warnings": True}, actor="api")
    assert "cannot be read" in refused.value.errors["price"]
    assert service.edit(plan_id, {"company_name": "Still editable"}, actor="api")["company_name"] == "Still editable"


def test_a_needs_review_row_leaves_review_once_every_field_validates(service: PlanService) -> None:
    stored = service.create({**PLAN, "customer_email": "nope", "start_date": "someday", "pandadoc_id": "pd-r"},
                            actor="pandadoc", keep=Keep.EVERYTHING)
    assert stored["state"] == "needs_review"
    half = service.edit(stored["id"], {"customer_email": "ap@acme.test"}, actor="api")
    assert half["state"] == "needs_review"  # the start date is still missing
    fixed = service.edit(stored["id"], {"start_date": "2030-12-01"}, actor="api")
    assert fixed["state"] == "new" and fixed["errors"] == {}


def test_clicks_are_refused_here_for_rows_that_need_review_or_cannot_be_read(service: PlanService) -> None:
    operator = Principal(1, "op@example.com", "operator")
    stored = service.create({**PLAN, "customer_email": "nope", "pandadoc_id": "pd-c"}, actor="pandadoc",
                            keep=Keep.EVERYTHING)
    with pytest.raises(PlanRejected) as refused:
        service.perform_action(stored["id"], "create_customer", operator)
    assert refused.value.status == 409 and refused.value.message.startswith("Fix the row first")
    with pytest.raises(PlanRejected) as viewer:
        service.perform_action(stored["id"], "create_customer", Principal(2, "v@example.com", "viewer"))
    assert viewer.value.status == 403
    with pytest.raises(PlanRejected) as missing:
        service.perform_action(999, "create_customer", operator)
    assert missing.value.status == 404 and missing.value.message == "There is no plan with id 999."


def test_row_view_never_raises(settings: Settings, service: PlanService) -> None:
    plan_id = service.create(dict(PLAN), actor="api")["id"]
    junk: list[Any] = [None, "x", 5, [1], {"progress": 5}, {"progress": {"credit_released": "lots"}},
                       {"progress": {"failed_action": "nope", "failed_message": "x"}}, {"seq": "x"}]
    with service.unit_of_work() as session:
        plan = session.get(Plan, plan_id)
        assert plan is not None
        for view in junk:
            plan.workflow_view = view
            seen = row_view(plan, today=date(2030, 1, 1))
            body = plan_json(plan)
            assert set(body["actions"]) == set(seen.actions)
            if seen.problem:
                assert body["projection_error"] == seen.problem
                assert not any(a["allowed"] for a in seen.actions.values())


def test_a_document_stored_by_a_concurrent_door_is_reported_as_taken(service: PlanService,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The look-up and the INSERT are two statements: a webhook retry and a CSV import can both
    pass the look-up. The unique column decides, and the loser hears which row won."""
    from plans.service import PlanRows

    first = service.create({**PLAN, "pandadoc_id": "pd-race"}, actor="pandadoc", keep=Keep.EVERYTHING)
    monkeypatch.setattr(PlanRows, "_claim_document", lambda *_: None)  # both passed the look-up
    with pytest.raises(DocumentTaken) as taken:
        service.create({**PLAN, "pandadoc_id": "pd-race"}, actor="csv", keep=Keep.WARNINGS)
    assert taken.value.existing_id == first["id"]
    assert _count(service) == 1


# Fields that fail on intake, the unreadable text the order form had, and a good value for each.
FAILING = {
    "currency": ("Euro", "usd"),
    "term_months": ("forever", "12 months"),
    "discount": ("twenty", "20"),
    "payment_terms_days": ("net thirty", "30"),
    "credit_start": ("whenever", "immediately"),
}
GOOD_VALUES = {"currency": "usd", "term_months": 12, "discount": 20, "payment_terms_days": 30,
               "credit_start": "immediately"}


@hypothesis_settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(failed=st.sets(st.sampled_from(sorted(FAILING)), min_size=1),
       fixes=st.lists(st.sets(st.sampled_from(sorted(FAILING)), max_size=2), max_size=4))
def test_issue17_7_failed_fields_stay_empty_until_filled_and_the_row_leaves_review_only_when_all_are(
        service: PlanService, failed: set[str], fixes: list[set[str]]) -> None:
    """Whatever failed and whichever fields a person fixes, in any order: a field that failed is
    empty (never its default) until it is filled, and the row leaves review exactly when none is left."""
    data = {**PLAN, **{name: FAILING[name][0] for name in failed}}
    plan_id = service.create(data, actor="pandadoc", source="pandadoc", keep=Keep.EVERYTHING)["id"]
    open_fields = set(failed)
    # An amount cannot be read without its currency: it failed with it and is filled with it.
    if "currency" in failed:
        open_fields |= {"price", "credit_amount"}
    for fix in fixes:
        change = {name: FAILING[name][1] for name in fix}
        if "currency" in fix:
            change.update(price="96000.00", credit_amount="120000.00")
        body = service.edit(plan_id, change, actor="operator@example.com")
        open_fields -= set(change)
        assert sorted(body["failed"]) == sorted(open_fields)
        assert body["state"] == ("needs_review" if open_fields else "new")
    with service.unit_of_work() as session:
        plan = session.get(Plan, plan_id)
        assert plan is not None
        for name in open_fields:
            assert getattr(plan, name) is None, (name, getattr(plan, name))
        for name in set(FAILING) - open_fields:
            assert getattr(plan, name) == GOOD_VALUES[name]
    if open_fields:  # the last ones, all at once: out of review
        change = {name: FAILING[name][1] for name in open_fields if name in FAILING}
        if "price" in open_fields:
            change.update(price="96000.00", credit_amount="120000.00", currency="usd")
        assert service.edit(plan_id, change, actor="operator@example.com")["state"] == "new"
