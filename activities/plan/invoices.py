"""The upfront invoice (draft, checks, send with the old credit set aside, reads) and the payment
checks every credit waits on: paid in money for the whole total, and not taken back since."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import stripe
from temporalio import activity

from activities.plan.common import PlanActivityBase, stripe_errors, ts
from activities.plan.credits import balance_transaction_once, customer_balance, find_balance_transaction
from activities.plan.identity import create_once
from domain.billing_config import load_billing_config
from domain.money import display
from domain.plan_rules import (
    CUSTOMER_CHECKS,
    StepInput,
    StepOutput,
    end_of_day,
    invoice_due_date,
    term_end,
)


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


class InvoiceActivities(PlanActivityBase):
    @activity.defn(name="plan_create_invoice")
    def create_invoice(self, step: StepInput) -> StepOutput:
        facts, p = step.facts, step.progress
        assert p.customer_id and facts.start is not None  # the rule allows this step only then
        customer_id, start = p.customer_id, facts.start
        ident = self.identity(facts, p)
        config = load_billing_config(self.settings.billing_config)
        due = invoice_due_date(start, facts.payment_terms_days)
        end = term_end(start, facts.term_months)
        description = (f"Annual plan: {facts.term_months} months of credits from {facts.start.isoformat()}; credit "
                       f"{display(facts.credit_amount, facts.currency)}, discount {facts.discount}%.")
        meta = ident.metadata("upfront_invoice", credit_amount=str(facts.credit_amount),
                              discount_percent=facts.discount)
        with stripe_errors():
            def find() -> Any | None:
                listed = self.client.v1.invoices.list({"customer": customer_id, "limit": 100})
                return next((inv for inv in listed.auto_paging_iter()
                             if ident.made_by(inv, "upfront_invoice") and inv.status != "void"), None)

            invoice = create_once("upfront invoice", ident.key("create-invoice"), find, lambda: (
                self.client.v1.invoices.create(
                    {"customer": customer_id, "collection_method": "send_invoice",
                     "due_date": int(end_of_day(due).timestamp()), "auto_advance": False,
                     "currency": facts.currency, "description": description, "metadata": meta,
                     "pending_invoice_items_behavior": "exclude"},
                    {"idempotency_key": ident.key("create-invoice")})))
            assert invoice.id is not None
            invoice_id = invoice.id
            lines = invoice.lines.data if invoice.lines else []
            if not any(ident.made_by(line, "upfront_invoice") for line in lines):
                def find_line() -> Any | None:
                    fresh = self.client.v1.invoices.retrieve(invoice_id)
                    return next((ln for ln in (fresh.lines.data if fresh.lines else [])
                                 if ident.made_by(ln, "upfront_invoice")), None)

                create_once("invoice line", ident.key("create-invoice-item"), find_line, lambda: (
                    self.client.v1.invoice_items.create(
                        {"customer": customer_id, "invoice": invoice_id, "currency": facts.currency,
                         "price_data": {"currency": facts.currency, "product": config.credit_product,
                                        "unit_amount": facts.price},
                         "quantity": 1,
                         "period": {"start": ts(start), "end": ts(end)},
                         "description": description, "metadata": meta},
                        {"idempotency_key": ident.key("create-invoice-item")})))
            checks = self._customer_checks(customer_id)
        progress = replace(p, invoice_id=invoice_id, invoice_status="draft", invoice_due_date=due.isoformat(),
                           checks=checks)
        return StepOutput(progress, {"invoice": invoice_id, "due_date": due.isoformat(),
                                     "amount": display(facts.price, facts.currency),
                                     "message": f"Draft invoice {invoice_id} is ready to verify."})

    def _customer_checks(self, customer_id: str) -> list[dict[str, str]]:
        customer = self.client.v1.customers.retrieve(customer_id)
        present: dict[str, bool | None] = {
            "address": bool(getattr(customer, "address", None)),
            "shipping": bool(getattr(customer, "shipping", None)),
            "tax_ids": self._has_tax_ids(customer_id),
        }
        return [{"check": key, "label": label,
                 "status": "unknown" if present[key] is None else "present" if present[key] else "missing"}
                for key, label in CUSTOMER_CHECKS]

    def _has_tax_ids(self, customer_id: str) -> bool | None:
        try:
            return bool(self.client.v1.customers.tax_ids.list(customer_id, {"limit": 1}).data)
        except stripe.InvalidRequestError:
            return None  # a person checks it in the dashboard; the row says "unknown"

    @activity.defn(name="plan_send_invoice")
    def send_invoice(self, step: StepInput) -> StepOutput:
        """Finalize and send. Stripe pays a finalized invoice from the customer's credit balance
        first, so a renewing customer's unused credit would pay the new plan and the new credit
        would then be given for no money. Unless the operator chose to let the old credit pay it
        (`use_existing_credit`), the balance is set aside first (one balance transaction that
        cancels it), and given back once the invoice is paid or voided."""
        facts, p = step.facts, step.progress
        assert p.invoice_id and p.customer_id
        ident = self.identity(facts, p)
        use_credit = _truthy(step.params.get("use_existing_credit"))
        result: dict[str, str] = {"invoice": p.invoice_id}
        held, held_txn = p.held_balance, p.held_balance_txn
        with stripe_errors():
            invoice = self.client.v1.invoices.retrieve(p.invoice_id)
            if not use_credit:
                found = find_balance_transaction(self.client, ident, p.customer_id, "held_balance",
                                                 invoice=p.invoice_id)
                if found is not None:
                    held, held_txn = int(found.amount), found.id
                elif invoice.status == "draft":
                    customer = self.client.v1.customers.retrieve(p.customer_id)
                    balance = customer_balance(customer, facts.currency)
                    if balance < 0:
                        held = -balance
                        held_txn = balance_transaction_once(
                            self.client, ident, p.customer_id, held, "held_balance", "hold-balance",
                            f"Credit balance set aside while invoice {p.invoice_id} is open, so it cannot pay "
                            f"it; given back once it is paid or voided (row {facts.plan_id}).",
                            invoice=p.invoice_id)
            if invoice.status == "draft":
                invoice = self.client.v1.invoices.finalize_invoice(
                    p.invoice_id, {"auto_advance": False}, {"idempotency_key": ident.key("finalize-invoice")})
            if invoice.status == "open":
                invoice = self.client.v1.invoices.send_invoice(
                    p.invoice_id, {}, {"idempotency_key": ident.key("send-invoice")})
        used = p.existing_credit_used
        if use_credit:
            used = max(int(invoice.total or 0) - int(invoice.amount_due or 0), 0)
            result["existing_credit_used"] = display(used, facts.currency)
            result["use_existing_credit"] = "true"
        if held:
            result["held_balance"] = display(held, facts.currency)
            result["held_balance_transaction"] = held_txn or ""
            result["held_until"] = "the invoice is paid or voided"
        message = f"Invoice {p.invoice_id} was sent."
        if held:
            message += (f" The customer's credit balance of {display(held, facts.currency)} is held until it is "
                        f"paid or voided.")
        if use_credit:
            message += f" The operator let the old credit pay {display(used, facts.currency)} of it."
        result["status"] = str(invoice.status)
        result["message"] = message
        return StepOutput(replace(p, invoice_status=invoice.status, held_balance=held, held_balance_txn=held_txn,
                                  existing_credit_used=used), result)

    @activity.defn(name="plan_read_invoice")
    def read_invoice(self, step: StepInput) -> StepOutput:
        assert step.progress.invoice_id
        with stripe_errors():
            invoice = self.client.v1.invoices.retrieve(step.progress.invoice_id)
        return StepOutput(replace(step.progress, invoice_status=invoice.status), {"status": str(invoice.status)})

    @activity.defn(name="plan_list_paid_installments")
    def list_paid_installments(self, step: StepInput) -> StepOutput:
        p = step.progress
        assert p.customer_id
        with stripe_errors():
            # A $0 invoice (the subscription's first, covered month) is no installment.
            paid = [inv.id for inv in self.client.v1.invoices.list(
                {"customer": p.customer_id, "status": "paid", "limit": 100}).auto_paging_iter()
                if inv.id and inv.total > 0]
        known = list(p.installments_paid)
        return StepOutput(replace(p, installments_paid=known + [i for i in reversed(paid) if i not in known]))

    # ------------------------------------------------------------------ the payment check
    @activity.defn(name="plan_verify_payment")
    def verify_payment(self, step: StepInput) -> StepOutput:
        """Right before a credit is released: was its invoice paid in money for its whole total,
        and has none of it been taken back since (refund, credit note, dispute)? Otherwise the
        credit is held and the row says why."""
        facts, p = step.facts, step.progress
        if facts.payment_schedule == "monthly":
            invoice_id = p.installments_paid[step.share_index]
            allowed_credit = 0
        else:
            assert p.invoice_id
            invoice_id = p.invoice_id
            allowed_credit = p.existing_credit_used
        with stripe_errors():
            net, detail = self._money_kept(invoice_id)
            invoice = self.client.v1.invoices.retrieve(invoice_id)
        total = int(invoice.total or 0)
        required = total - allowed_credit
        result = {"invoice": invoice_id, "status": str(invoice.status), "total": display(total, facts.currency),
                  "money_kept": display(net, facts.currency), **detail}
        if invoice.status != "paid":
            hold: str | None = f"Invoice {invoice_id} is {invoice.status}, not paid; the credit is held."
        elif net < required:
            parts = "; ".join(f"{k} {v}" for k, v in detail.items())
            hold = (f"Invoice {invoice_id} was paid {display(net, facts.currency)} in money of the "
                    f"{display(required, facts.currency)} it must bring ({parts}); the credit is held. "
                    f"Check the payment in Stripe, then use \"Retry step\".")
        else:
            hold = None
        result["message"] = hold or f"Invoice {invoice_id} was paid in money for its whole total."
        return StepOutput(replace(p, credit_hold=hold), result)

    def _money_kept(self, invoice_id: str) -> tuple[int, dict[str, str]]:
        """What the customer paid for the invoice in money and still has not got back, in minor
        units, with the parts that were taken back."""
        invoice = self.client.v1.invoices.retrieve(invoice_id, {"expand": ["payments"]})
        currency = invoice.currency
        paid = int(invoice.amount_paid or 0)
        credited = int(getattr(invoice, "post_payment_credit_notes_amount", 0) or 0)
        note_refunds = 0
        for note in self.client.v1.credit_notes.list({"invoice": invoice_id, "limit": 100}).auto_paging_iter():
            note_refunds += sum(int(r.amount_refunded or 0) for r in (note.refunds or []))
        refunded = disputed = 0
        for charge_id in self._charges_of(invoice):
            charge = self.client.v1.charges.retrieve(charge_id)
            refunded += int(charge.amount_refunded or 0)
            if charge.disputed:
                for dispute in self.client.v1.disputes.list({"charge": charge_id, "limit": 100}).auto_paging_iter():
                    if dispute.status != "won":
                        disputed += int(dispute.amount or 0)
        # A credit note's refund is also a refund on the charge: count it once.
        refunded = max(refunded - note_refunds, 0)
        detail = {k: display(v, currency) for k, v in
                  (("credit_notes", credited), ("refunded", refunded), ("disputed", disputed)) if v}
        detail["amount_paid"] = display(paid, currency)
        return paid - credited - refunded - disputed, detail

    def _charges_of(self, invoice: Any) -> list[str]:
        charges: list[str] = []
        payments = getattr(invoice, "payments", None)
        for payment in (payments.data if payments else []):
            ref = payment.payment
            charge = getattr(ref, "charge", None)
            if charge is None and getattr(ref, "payment_intent", None):
                intent_id = ref.payment_intent if isinstance(ref.payment_intent, str) else ref.payment_intent.id
                intent = self.client.v1.payment_intents.retrieve(intent_id)
                charge = intent.latest_charge
            if charge:
                charges.append(charge if isinstance(charge, str) else charge.id)
        return charges


