"""Problem 4 — Modular application: the `app` package. Start in main.py."""
