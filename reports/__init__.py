"""Revenue reports: plain functions over the warehouse, one module per report.

Each report takes a database session, a `Range` (dates and reporting currency) and a `Converter`
(exchange rates), and returns plain data (dicts and lists of JSON-ready values). The web layer only
parses the query string, calls a report and renders it as JSON, CSV or the page; the rules behind
the figures live in `domain` (mrr, deferred, fx) and the queries in `store.revenue`.

Reports are cached in the process until the next warehouse write (`reports.cache`).
"""
