"""The table, the row page and the add/edit forms, through HTTP into the real app and database."""

from __future__ import annotations

import re
from collections.abc import Callable

from flask.testing import FlaskClient
from sqlalchemy import func, select

from settings import Settings
from store.db import unit_of_work
from store.models import AuditEntry, Plan
from store.plans import record
from tests.web.conftest import VALID_PLAN

SignedIn = Callable[[str], tuple[FlaskClient, str]]


def _text(response) -> str:  # type: ignore[no-untyped-def]
    return response.get_data(as_text=True)


def test_table_shows_the_seed_columns_state_and_products(
    signed_in: SignedIn, add_plan: Callable[..., int], settings: Settings
) -> None:
    plan_id = add_plan(products=["session_replay"])
    with unit_of_work(settings.database_url) as s:
        plan = s.get(Plan, plan_id)
        assert plan is not None
        plan.stripe_customer_id, plan.invoice_id = "cus_Acme123", "in_Acme456"
        plan.subscription_schedule_id = "sub_sched_789"
    client, _ = signed_in("viewer")
    html = _text(client.get("/"))
    row = re.search(rf'<tr id="plan-{plan_id}".*?</tr>', html, re.S)
    assert row
    cells = row.group(0)
    for expected in ("Acme Analytics", "pd-acme-1", "billing@acme.example", "120,000.00 USD", "20% off",
                     "96,000.00 USD",
                     "2030-12-01", "12 mo", "org-acme", "upfront",
                     "https://dashboard.stripe.com/test/customers/cus_Acme123",
                     "https://dashboard.stripe.com/test/invoices/in_Acme456",
                     "https://dashboard.stripe.com/test/subscription_schedules/sub_sched_789",
                     'class="badge state-new"'):
        assert expected in cells, expected
    assert re.search(r'value="session_replay" checked', cells)
    assert re.search(r'value="surveys" *disabled', cells)  # a viewer cannot change products


def test_viewer_sees_no_enabled_action_and_each_disabled_button_says_why(
    signed_in: SignedIn, add_plan: Callable[..., int]
) -> None:
    plan_id = add_plan()
    client, _ = signed_in("viewer")
    html = _text(client.get("/"))
    assert f'/plans/{plan_id}/actions/' not in html  # no form posts an action
    buttons = re.findall(r'<button type="button" class="btn" aria-disabled="true" data-action="(\w+)"\s+'
                         r'title="([^"]+)" aria-describedby="(why-[^"]+)"', html)
    assert {b[0] for b in buttons} >= {"create_customer", "create_invoice", "apply_credit"}
    for _action, title, tip in buttons:
        assert re.search(rf'id="{tip}">{re.escape(title)}</span>', html)
    assert "Viewers cannot run actions; ask an operator." in html


def test_operator_sees_the_next_action_enabled(signed_in: SignedIn, add_plan: Callable[..., int]) -> None:
    plan_id = add_plan()
    client, _ = signed_in("operator")
    html = _text(client.get("/"))
    assert f'action="/plans/{plan_id}/actions/create_customer"' in html
    assert re.search(r'class="btn primary" data-action="create_customer"', html)
    # The invoice waits for the customer, and says so.
    assert re.search(r'aria-disabled="true" data-action="create_invoice"\s+title="[^"]*[Cc]ustomer', html)


def test_search_filter_and_pagination(signed_in: SignedIn, add_plan: Callable[..., int]) -> None:
    for i in range(60):
        add_plan(company_name=f"Company {i:02d}", customer_email=f"c{i}@corp{i % 3}.example", pandadoc_id=f"pd-{i}")
    add_plan(company_name="Monthly Co", pandadoc_id="pd-m", payment_schedule="monthly",
             stripe_customer_id_existing="cus_Existing1")
    client, _ = signed_in("viewer")
    first = _text(client.get("/"))
    assert "61 rows" in first and "page 1 of 2" in first
    assert first.count('<tr id="plan-') == 50
    second = _text(client.get("/?page=2"))
    assert second.count('<tr id="plan-') == 11 and "Company 00" in second
    by_company = _text(client.get("/?q=company 1"))
    assert "10 rows" in by_company  # Company 10..19
    by_email = _text(client.get("/?q=CORP2.example"))
    assert "20 rows" in by_email
    monthly = _text(client.get("/?schedule=monthly"))
    assert "1 row" in monthly and "Monthly Co" in monthly
    assert "0 rows" in _text(client.get("/?state=credit_applied"))
    assert "61 rows" in _text(client.get("/?state=new"))


def test_add_row_with_errors_keeps_everything_typed(signed_in: SignedIn, settings: Settings) -> None:
    client, token = signed_in("operator")
    typed = {**VALID_PLAN, "customer_email": "not-an-email", "discount": "120", "csrf_token": token,
             "products": ["surveys", "feature_flags"], "payment_schedule": "upfront"}
    response = client.post("/plans/new", data=typed)
    assert response.status_code == 422
    html = _text(response)
    assert "&#39;not-an-email&#39; is not an email address." in html
    assert "outside 0–100%" in html
    for name in ("company_name", "credit_amount", "price", "posthog_org_id", "pandadoc_id", "customer_email"):
        assert f'name="{name}" value="{typed[name]}"' in html, name
    assert 'value="surveys" checked' in html and 'value="feature_flags" checked' in html
    assert 'aria-invalid="true"' in html and 'aria-describedby="err-customer_email"' in html
    with unit_of_work(settings.database_url) as s:
        assert s.scalar(select(func.count()).select_from(Plan)) == 0


def test_add_row_price_warning_can_be_confirmed(signed_in: SignedIn, settings: Settings) -> None:
    client, token = signed_in("operator")
    data = {**VALID_PLAN, "price": "50000.00", "csrf_token": token}
    response = client.post("/plans/new", data=data)
    assert response.status_code == 422 and "confirm it is right" in _text(response)
    response = client.post("/plans/new", data={**data, "accept_warnings": "1"})
    assert response.status_code == 302
    plan_id = int(response.headers["Location"].rsplit("/", 1)[1])
    with unit_of_work(settings.database_url) as s:
        plan = s.get(Plan, plan_id)
        assert plan is not None and plan.price == 5_000_000 and plan.state == "new"
        entries = s.scalars(select(AuditEntry).where(AuditEntry.plan_id == plan_id)).all()
        assert [(e.actor, e.action) for e in entries] == [("operator@example.com", "create_row")]


def test_add_row_refuses_a_taken_pandadoc_id(signed_in: SignedIn, add_plan: Callable[..., int]) -> None:
    existing = add_plan()
    client, token = signed_in("operator")
    response = client.post("/plans/new", data={**VALID_PLAN, "csrf_token": token})
    assert response.status_code == 422
    assert f"Row {existing} already has the PandaDoc order form" in _text(response)


def test_edit_with_a_bad_value_shows_the_field_error_and_keeps_the_rest(
    signed_in: SignedIn, add_plan: Callable[..., int], settings: Settings
) -> None:
    plan_id = add_plan()
    client, token = signed_in("operator")
    page = _text(client.get(f"/plans/{plan_id}"))
    assert 'name="company_name" value="Acme Analytics"' in page
    response = client.post(f"/plans/{plan_id}", data={
        **VALID_PLAN, "company_name": "Acme Renamed", "term_months": "a fortnight", "csrf_token": token})
    assert response.status_code == 422
    html = _text(response)
    assert "is not a term" in html and 'id="err-term_months"' in html
    assert 'name="company_name" value="Acme Renamed"' in html
    assert 'name="term_months" value="a fortnight"' in html
    with unit_of_work(settings.database_url) as s:
        plan = s.get(Plan, plan_id)
        assert plan is not None and plan.company_name == "Acme Analytics" and plan.term_months == 12


def test_edit_saves_only_what_changed_and_records_who(
    signed_in: SignedIn, add_plan: Callable[..., int], settings: Settings
) -> None:
    plan_id = add_plan()
    client, token = signed_in("operator")
    response = client.post(f"/plans/{plan_id}", data={
        **VALID_PLAN, "term_months": "2 years", "price": "192000.00", "credit_amount": "240000.00",
        "products": ["product_analytics"], "csrf_token": token})
    assert response.status_code == 302
    with unit_of_work(settings.database_url) as s:
        plan = s.get(Plan, plan_id)
        assert plan is not None
        assert (plan.term_months, plan.price, plan.credit_amount, plan.products) == (
            24, 19_200_000, 24_000_000, ["product_analytics"])
        edit = s.scalars(select(AuditEntry).where(AuditEntry.action == "edit_row")).one()
        assert edit.actor == "operator@example.com"
        assert set(edit.input) == {"term_months", "price", "credit_amount", "products"}


def test_products_checkboxes_save_through_the_same_validation(
    signed_in: SignedIn, add_plan: Callable[..., int], settings: Settings
) -> None:
    plan_id = add_plan()
    client, token = signed_in("operator")
    response = client.post(f"/plans/{plan_id}/products",
                           data={"products": ["surveys", "session_replay"], "csrf_token": token, "next": "/?page=1"})
    assert response.headers["Location"] == f"/?page=1#plan-{plan_id}"  # back to the row
    client.post(f"/plans/{plan_id}/products", data={"products": ["made_up"], "csrf_token": token})
    with unit_of_work(settings.database_url) as s:
        plan = s.get(Plan, plan_id)
        assert plan is not None and plan.products == ["session_replay", "surveys"]


def test_row_page_shows_timeline_and_links(signed_in: SignedIn, add_plan: Callable[..., int],
                                           settings: Settings) -> None:
    plan_id = add_plan()
    with unit_of_work(settings.database_url) as s:
        plan = s.get(Plan, plan_id)
        assert plan is not None
        plan.stripe_customer_id, plan.invoice_id = "cus_T1", "in_T1"
        record(s, plan_id, actor="operator@example.com", action="create_invoice", outcome="failed",
               error="No such customer: 'cus_T1'.", result={"invoice_id": "in_T1"})
    client, _ = signed_in("viewer")
    html = _text(client.get(f"/plans/{plan_id}"))
    assert "https://dashboard.stripe.com/test/customers/cus_T1" in html
    assert "https://dashboard.stripe.com/test/invoices/in_T1" in html
    assert f"http://127.0.0.1:8233/namespaces/default/workflows/plan-{plan_id}" in html
    assert "No such customer: &#39;cus_T1&#39;." in html
    assert "operator@example.com" in html and "create invoice" in html and "test@example.com" in html
    assert "readonly" in html and "Save changes" not in html  # a viewer reads only


def test_live_endpoints_return_only_changed_rows(
    signed_in: SignedIn, add_plan: Callable[..., int], settings: Settings
) -> None:
    a, b = add_plan(), add_plan(pandadoc_id="pd-2", company_name="Beta")
    client, _ = signed_in("viewer")
    html = _text(client.get("/"))
    versions = dict(re.findall(r'data-plan="(\d+)" data-version="([^"]+)"', html))
    query = ",".join(f"{k}:{v}" for k, v in versions.items())
    assert client.get(f"/table/rows?rows={query}").get_json() == {"versions": {}, "html": "", "new_html": "",
                                                                   "newest": None}
    with unit_of_work(settings.database_url) as s:
        plan = s.get(Plan, b)
        assert plan is not None
        plan.state, plan.invoice_id = "awaiting_payment", "in_Live1"
    changed = client.get(f"/table/rows?rows={query}&back=/?page=1").get_json()
    assert list(changed["versions"]) == [str(b)] and changed["versions"][str(b)] != versions[str(b)]
    assert re.findall(r'<tr id="plan-(\d+)"', changed["html"]) == [str(b)]
    assert "in_Live1" in changed["html"] and "awaiting payment" in changed["html"].lower()
    assert 'name="next" value="/?page=1"' in changed["html"]
    page = _text(client.get(f"/plans/{a}"))
    version = re.search(r'id="live" data-live-url="[^"]+" data-version="([^"]+)"', page)
    assert version
    assert client.get(f"/plans/{a}/live?version={version.group(1)}").status_code == 204
    assert client.get(f"/plans/{b}/live?version=0").get_json()["html"].count("in_Live1") >= 1


def test_a_refused_click_shows_the_reason_and_lands_on_the_timeline(
    signed_in: SignedIn, settings: Settings
) -> None:
    with unit_of_work(settings.database_url) as s:
        from store.plans import create_plan

        plan, _ = create_plan(s, {**VALID_PLAN, "customer_email": "nobody"}, actor="pandadoc", keep_invalid=True)
        assert plan is not None and plan.state == "needs_review"
        plan_id = plan.id
    client, token = signed_in("operator")
    html = _text(client.get("/"))
    assert re.search(r'aria-disabled="true" data-action="create_customer"\s+title="Fix the row first', html)
    # Even a forced POST (a stale page) goes through plan_service and is refused with its sentence.
    response = client.post(f"/plans/{plan_id}/actions/create_customer",
                           data={"csrf_token": token, "next": "/"}, follow_redirects=True)
    page = _text(response)
    assert f"Create Stripe Customer was not done on row {plan_id}: Fix the row first" in page
    with unit_of_work(settings.database_url) as s:
        entry = s.scalars(select(AuditEntry).where(AuditEntry.action == "create_customer")).one()
        assert (entry.actor, entry.outcome) == ("operator@example.com", "rejected")


def test_search_text_is_matched_literally(signed_in: SignedIn, add_plan: Callable[..., int]) -> None:
    add_plan(company_name="100% Orange Juice", pandadoc_id="pd-oj")
    add_plan(company_name="1000 Apples", pandadoc_id="pd-ap")
    client, _ = signed_in("viewer")
    html = _text(client.get("/?q=100%25"))
    assert "1 row" in html and "Orange Juice" in html and "1000 Apples" not in html
    assert "0 rows" in _text(client.get("/?q=a_p"))


def test_a_failed_step_shows_its_error_on_the_row(
    signed_in: SignedIn, add_plan: Callable[..., int], settings: Settings
) -> None:
    plan_id = add_plan()
    with unit_of_work(settings.database_url) as s:
        plan = s.get(Plan, plan_id)
        assert plan is not None
        plan.state = "step_failed"
        plan.workflow_view = {"error": {"action": "create_invoice", "message": "No such customer: 'cus_Gone'."},
                              "progress": {"customer_id": "cus_Gone", "failed_action": "create_invoice",
                                           "failed_message": "No such customer: 'cus_Gone'."}}
    client, _ = signed_in("operator")
    row = re.search(rf'<tr id="plan-{plan_id}".*?</tr>', _text(client.get("/")), re.S)
    assert row and 'class="badge state-step_failed">A step failed<' in row.group(0)
    assert "No such customer: &#39;cus_Gone&#39;." in row.group(0)
    page = _text(client.get(f"/plans/{plan_id}"))
    assert "Create invoice failed:</strong> No such customer" in page
    # "Retry step" joins the row's buttons, first and enabled; the others say why they wait.
    assert re.search(r'class="btn primary" data-action="retry_step">Retry step<', row.group(0))
    assert re.search(r'aria-disabled="true" data-action="create_invoice"\s+title="[^"]*failed: No such customer',
                     row.group(0))
    # The customer it names was made by the workflow, not typed on the row: no field is blamed.
    assert 'id="err-stripe_customer_id_existing"' not in page


def test_a_failed_step_marks_the_field_its_message_names_once(
    signed_in: SignedIn, add_plan: Callable[..., int], settings: Settings
) -> None:
    plan_id = add_plan(stripe_customer_id_existing="cus_Gone1")
    message = "No such customer: 'cus_Gone1'."
    with unit_of_work(settings.database_url) as s:
        plan = s.get(Plan, plan_id)
        assert plan is not None
        plan.state = "step_failed"
        plan.workflow_view = {"error": {"action": "create_customer", "message": message},
                              "progress": {"failed_action": "create_customer", "failed_message": message}}
    client, _ = signed_in("operator")
    page = _text(client.get(f"/plans/{plan_id}"))
    field = re.search(r'<div class="field invalid[^"]*" id="field-stripe_customer_id_existing">.*?</div>', page, re.S)
    assert field and "&#34;Create Stripe Customer&#34; failed on this field" in field.group(0)
    assert 'aria-invalid="true"' in field.group(0)
    # The message itself once, in the status panel; the field says where to fix it, not the message again.
    assert page.count("failed:</strong> No such customer: &#39;cus_Gone1&#39;.") == 1
    assert "No such customer" not in field.group(0)


def test_the_forms_locale_reads_a_european_amount_and_a_day_first_date(
    signed_in: SignedIn, settings: Settings
) -> None:
    client, token = signed_in("operator")
    form = {**VALID_PLAN, "pandadoc_id": "pd-locale", "currency": "eur", "credit_amount": "120.000,00",
            "price": "96.000", "start_date": "01/12/2030", "_locale": "de-DE", "csrf_token": token}
    response = client.post("/plans/new", data=form)
    assert response.status_code == 302, _text(response)
    with unit_of_work(settings.database_url) as s:
        plan = s.scalar(select(Plan).where(Plan.pandadoc_id == "pd-locale"))
        assert plan is not None
        assert (plan.price, plan.credit_amount, plan.start_date.isoformat()) == (9_600_000, 12_000_000, "2030-12-01")
    # Without the browser's locale, 01/12/2030 on a EUR form could be either day: refused, not guessed.
    response = client.post("/plans/new", data={**form, "pandadoc_id": "pd-nolocale", "_locale": ""})
    assert response.status_code == 422
    assert "could be 1 December 2030 or 12 January 2030" in _text(response)


def test_a_changed_document_is_applied_or_kept_from_the_row_page(
    signed_in: SignedIn, add_plan: Callable[..., int], settings: Settings
) -> None:
    from plans.service import PlanRows

    keep_id, apply_id = add_plan(pandadoc_id="pd-keep"), add_plan(pandadoc_id="pd-apply")
    before = {**VALID_PLAN}
    after = {**VALID_PLAN, "price": "120000.00", "discount": "0"}
    with unit_of_work(settings.database_url) as s:
        for plan_id in (keep_id, apply_id):
            plan = s.get(Plan, plan_id)
            assert plan is not None
            PlanRows(s, None).note_document_change(plan, before, after, details={"date_modified": "x"})
    client, token = signed_in("operator")
    page = _text(client.get(f"/plans/{apply_id}"))
    assert "The signed document changed" in page and "96,000.00 USD" in page and "120,000.00 USD" in page
    assert "Use the new values" in page
    applied = client.post(f"/plans/{apply_id}/document-change", data={"decision": "apply", "csrf_token": token},
                          follow_redirects=True)
    assert "the document&#39;s new values are applied" in _text(applied)
    kept = client.post(f"/plans/{keep_id}/document-change", data={"decision": "keep", "csrf_token": token},
                       follow_redirects=True)
    assert "kept as it was" in _text(kept)
    with unit_of_work(settings.database_url) as s:
        applied_row, kept_row = s.get(Plan, apply_id), s.get(Plan, keep_id)
        assert applied_row is not None and kept_row is not None
        assert (applied_row.price, applied_row.state, applied_row.document_change) == (12_000_000, "new", None)
        assert (kept_row.price, kept_row.state, kept_row.document_change) == (9_600_000, "new", None)
    # Nothing is left to settle now.
    again = client.post(f"/plans/{keep_id}/document-change", data={"decision": "keep", "csrf_token": token},
                        follow_redirects=True)
    assert "has no change of its signed document to settle" in _text(again)
