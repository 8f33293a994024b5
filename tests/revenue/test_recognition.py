"""Prepaid credit recognised once, under both policies: the worked examples of docs/revenue.md,
every figure computed by hand here (issue 18, "What it must show" #1)."""

from __future__ import annotations

from datetime import UTC, date, datetime

from domain.recognition import (
    OPEN_ENDED,
    Booking,
    Charge,
    Credit,
    CustomerBooks,
    Invoice,
    InvoiceLine,
    Plan,
    Reduction,
    by_month,
    deferred_on,
    recognise_customer,
    recognised_through,
)

PLAN = "revops:7"
TERM_START, TERM_END = date(2027, 1, 1), date(2028, 1, 1)


def at(y: int, m: int, d: int, hour: int = 12) -> datetime:
    return datetime(y, m, d, hour, tzinfo=UTC)


def upfront(paid: datetime, *, price: int = 1_200_000, plan: str = PLAN, start: date = TERM_START,
            end: date = TERM_END, reductions: tuple[Reduction, ...] = (), invoice_id: str = "in_upfront") -> Invoice:
    return Invoice(invoice_id, "usd", paid, price, 0, price, 0, (InvoiceLine(f"il_{invoice_id}", price, start, end),),
                   plan=plan, reductions=reductions)


def usage(invoice_id: str, paid: datetime, start: date, end: date, amount: int = 100_000, *,
          tax: int = 0) -> Invoice:
    """A usage invoice paid entirely from the customer balance (amount_paid 0)."""
    return Invoice(invoice_id, "usd", paid, amount + tax, tax, 0, amount + tax,
                   (InvoiceLine(f"il_{invoice_id}", amount, start, end),))


def plan_credit(granted: datetime, amount: int = 1_500_000, plan: str = PLAN, txn: str = "cbtxn_plan") -> Credit:
    return Credit(txn, "usd", granted, amount, "plan", plan)


def three_months() -> tuple[Invoice, ...]:
    return (usage("in_jan", at(2027, 1, 1), date(2027, 1, 1), date(2027, 2, 1)),
            usage("in_feb", at(2027, 2, 1), date(2027, 2, 1), date(2027, 3, 1)),
            usage("in_mar", at(2027, 3, 1), date(2027, 3, 1), date(2027, 4, 1)))


def books(*invoices: Invoice, credits: tuple[Credit, ...] = (), plans: tuple[Plan, ...] = (Plan(PLAN, TERM_END),),
          charges: tuple[Charge, ...] = ()) -> CustomerBooks:
    return CustomerBooks("cus_1", tuple(invoices), charges, credits, plans)


def money_total(bookings: list[Booking]) -> int:
    return sum(b.net for b in bookings)


def test_12000_paid_for_15000_of_credit_then_three_months_of_1000_usage_consumption() -> None:
    b = recognise_customer(books(upfront(at(2026, 12, 20)), *three_months(),
                                 credits=(plan_credit(at(2026, 12, 21)),)), "consumption")
    # 1,000.00 of credit used is worth 1,000.00 × 12,000.00 ÷ 15,000.00 = 800.00 of revenue.
    # The 9,600.00 of credit value left at the end of the term is breakage in December 2027.
    assert by_month(b) == {date(2027, 1, 1): 80_000, date(2027, 2, 1): 80_000, date(2027, 3, 1): 80_000,
                           date(2027, 12, 1): 1_200_000 - 3 * 80_000}
    assert recognised_through(b, date(2026, 12, 31)) == 0
    expected_deferred = {date(2026, 12, 31): 1_200_000, date(2027, 1, 31): 1_120_000,
                         date(2027, 2, 28): 1_040_000, date(2027, 3, 31): 960_000, date(2027, 11, 30): 960_000,
                         date(2027, 12, 31): 0}
    for day, deferred in expected_deferred.items():
        assert deferred_on(b, day) == deferred, day
        # Recognised + deferred = the 12,000.00 received, on every day after the payment.
        assert recognised_through(b, day) + deferred_on(b, day) == 1_200_000, day


def test_12000_paid_for_15000_of_credit_then_three_months_of_1000_usage_ratable() -> None:
    b = recognise_customer(books(upfront(at(2026, 12, 20)), *three_months(),
                                 credits=(plan_credit(at(2026, 12, 21)),)), "ratable")
    # 1,200,000 cents over the 365 days of 2027: a 31-day month is 101,917.81, a 30-day month
    # 98,630.14, February 92,054.79. Rounded down they add up to 1,199,993; the 7 cents left go
    # to the largest fractions, the seven 31-day months (.81 beats February's .79).
    long, short, february = 101_918, 98_630, 92_054
    expected = {date(2027, m, 1): long if m in (1, 3, 5, 7, 8, 10, 12) else short for m in range(1, 13)}
    expected[date(2027, 2, 1)] = february
    assert by_month(b) == expected
    assert sum(expected.values()) == 1_200_000
    # Usage paid from the balance adds nothing: the payment was already revenue over the term.
    assert deferred_on(b, date(2027, 3, 31)) == 1_200_000 - 2 * long - february
    assert recognised_through(b, date(2027, 3, 31)) == 2 * long + february


def test_a_partial_refund_of_the_upfront_invoice_is_booked_in_its_own_month() -> None:
    refund = Reduction(at(2027, 4, 15), 300_000)
    may = usage("in_may", at(2027, 5, 1), date(2027, 5, 1), date(2027, 6, 1))
    before = recognise_customer(books(upfront(at(2026, 12, 20)), *three_months(),
                                      credits=(plan_credit(at(2026, 12, 21)),)), "consumption")
    b = recognise_customer(books(upfront(at(2026, 12, 20), reductions=(refund,)), *three_months(), may,
                                 credits=(plan_credit(at(2026, 12, 21)),)), "consumption")
    months = by_month(b)
    # January to March are over: unchanged. The refund comes out of the 9,600.00 still deferred
    # (it leaves 6,600.00), so April shows no negative revenue. May's 1,000.00 of usage is worth
    # 6,600.00 × 1,000.00 ÷ 12,000.00 of credit left = 550.00; breakage 6,600.00 − 550.00.
    for month in (date(2027, 1, 1), date(2027, 2, 1), date(2027, 3, 1)):
        assert months[month] == by_month(before)[month] == 80_000
    assert date(2027, 4, 1) not in months
    assert months[date(2027, 5, 1)] == 55_000
    assert months[date(2027, 12, 1)] == 660_000 - 55_000
    assert deferred_on(b, date(2027, 4, 30)) == 660_000
    assert recognised_through(b, date(2027, 12, 31)) == 1_200_000 - 300_000


def test_a_refund_larger_than_what_is_deferred_is_a_negative_adjustment_in_its_month() -> None:
    # A 1,200.00 one-year invoice for 2027 paid in January, 1,000.00 refunded in November. By then
    # January–October are over: 304 of 365 days, 99,945.2 cents, 99,946 as the spread rounded.
    # November and December still hold 20,054. The refund takes those and the remaining 79,946
    # is negative November revenue: November = 20,000 − 99,946.
    line = InvoiceLine("il_y", 120_000, date(2027, 1, 1), date(2028, 1, 1))
    inv = Invoice("in_y", "usd", at(2027, 1, 2), 120_000, 0, 120_000, 0, (line,),
                  reductions=(Reduction(at(2027, 11, 10), 100_000),))
    b = recognise_customer(books(inv, plans=()), "consumption")
    months = by_month(b)
    through_october = sum(v for m, v in months.items() if m < date(2027, 11, 1))
    # Months that were over before the refund keep their figures (10,192 for a 31-day month).
    assert months[date(2027, 1, 1)] == 10_192 and months[date(2027, 10, 1)] == 10_192
    assert date(2027, 12, 1) not in months
    assert through_october == 99_946
    assert months[date(2027, 11, 1)] == 20_000 - through_october
    assert money_total(b) == 20_000


def test_a_renewal_draws_the_new_plan_once_the_old_term_is_over() -> None:
    renewal = "revops:8"
    plans = (Plan(PLAN, TERM_END), Plan(renewal, date(2029, 1, 1)))
    jan_2028 = usage("in_jan28", at(2028, 1, 1), date(2028, 1, 1), date(2028, 2, 1))
    b = recognise_customer(books(
        upfront(at(2026, 12, 20)), *three_months(),
        upfront(at(2027, 12, 15), plan=renewal, start=date(2028, 1, 1), end=date(2029, 1, 1), invoice_id="in_renew"),
        jan_2028,
        credits=(plan_credit(at(2026, 12, 21)), plan_credit(at(2027, 12, 16), plan=renewal, txn="cbtxn_renew")),
        plans=plans), "consumption")
    months = by_month(b)
    # The first plan: 3 × 800.00 used, 9,600.00 breakage in December 2027, although 12,000.00 of
    # its credit is still on the Stripe balance. January 2028's usage draws the renewal's credit
    # (the old one expired): 800.00. The renewal's remaining 11,200.00 waits in December 2028.
    assert months[date(2027, 12, 1)] == 960_000
    assert months[date(2028, 1, 1)] == 80_000
    assert months[date(2028, 12, 1)] == 1_200_000 - 80_000
    assert deferred_on(b, date(2028, 1, 31)) == 1_120_000
    assert money_total(b) == 2_400_000


def test_a_monthly_installment_plan_released_per_installment() -> None:
    # 1,200.00 for 1,500.00 of credit over 12 months: 100.00 a month, a credit share of 125.00
    # released when each installment is paid, 50.00 of credit used each month.
    installments, credits, uses = [], [], []
    for month in range(1, 13):
        start = date(2027, month, 1)
        end = date(2028, 1, 1) if month == 12 else date(2027, month + 1, 1)
        installments.append(Invoice(f"in_i{month}", "usd", at(2027, month, 1), 10_000, 0, 10_000, 0,
                                    (InvoiceLine(f"il_i{month}", 10_000, start, end),), plan=PLAN))
        credits.append(Credit(f"cbtxn_s{month}", "usd", at(2027, month, 1, 13), 12_500, "plan", PLAN))
        uses.append(usage(f"in_u{month}", at(2027, month, 15), start, end, 5_000))
    consumption = by_month(recognise_customer(books(*installments, *uses, credits=tuple(credits)), "consumption"))
    # Each month: 50.00 of credit × (money in the pool ÷ credit left) = 50.00 × 0.8 = 40.00, the
    # same every month because money and credit arrive together; December adds the breakage:
    # 1,200.00 − 12 × 40.00 = 720.00.
    assert consumption == {**{date(2027, m, 1): 4_000 for m in range(1, 12)}, date(2027, 12, 1): 4_000 + 72_000}
    ratable = by_month(recognise_customer(books(*installments, *uses, credits=tuple(credits)), "ratable"))
    # Ratable: each installment over its own month; the credit-paid usage adds nothing.
    assert ratable == {date(2027, m, 1): 10_000 for m in range(1, 13)}


def test_money_paid_from_the_balance_is_never_revenue_twice() -> None:
    # The probe: 12,000.00 paid, 3,000.00 of usage from the balance → 15,000.00 of
    # revenue on main. Here the total can never exceed the 12,000.00 received.
    b = recognise_customer(books(upfront(at(2026, 12, 20)), *three_months(),
                                 credits=(plan_credit(at(2026, 12, 21)),)), "consumption")
    assert money_total(b) == 1_200_000
    assert sum(b.net for b in b if b.source_type == "invoice") == 0


def test_a_late_payment_catches_up_in_the_month_it_arrives() -> None:
    line = InvoiceLine("il_late", 120_000, date(2027, 1, 1), date(2028, 1, 1))
    b = recognise_customer(books(Invoice("in_late", "usd", at(2027, 3, 10), 120_000, 0, 120_000, 0, (line,)),
                                 plans=()), "consumption")
    months = by_month(b)
    # January and February were over when the money came: their days land in March.
    assert date(2027, 1, 1) not in months and date(2027, 2, 1) not in months
    assert months[date(2027, 3, 1)] == 10_192 + 9_205 + 10_192  # 31 + 28 + 31 days, as spread


def test_tax_is_never_revenue() -> None:
    # 100.00 + 20.00 VAT paid; half the invoice (60.00 with its tax) refunded → 50.00 revenue.
    line = InvoiceLine("il_t", 10_000)
    inv = Invoice("in_t", "usd", at(2027, 5, 3), 12_000, 2_000, 12_000, 0, (line,),
                  reductions=(Reduction(at(2027, 5, 20), 6_000),))
    assert by_month(recognise_customer(books(inv, plans=()), "consumption")) == {date(2027, 5, 1): 5_000}


def test_credit_from_a_credit_note_is_recognised_one_for_one_and_a_gift_not_at_all() -> None:
    returned = Credit("cbtxn_cn", "usd", at(2027, 2, 1), 30_000, "money")
    gift = Credit("cbtxn_gift", "usd", at(2027, 2, 2), 50_000, "gift")
    feb = usage("in_f", at(2027, 2, 10), date(2027, 2, 1), date(2027, 3, 1), 40_000)
    b = recognise_customer(books(feb, credits=(returned, gift), plans=()), "consumption")
    # 300.00 of money-backed credit used first (oldest), the other 100.00 came from the gift.
    assert by_month(b) == {date(2027, 2, 1): 30_000}
    assert deferred_on(b, date(2027, 1, 31)) == 0 and OPEN_ENDED not in by_month(b)
    assert deferred_on(b, date(2027, 2, 5)) == 30_000  # the returned money waits until it is used
