"""Watching the running server: Prometheus metrics (`metrics`) and structured logs (`logging`).

Both are imported by the entry points and by the few call sites that report an event; neither
imports the web app or the workflows, so any process (web, worker, CLI) can use them.
"""
