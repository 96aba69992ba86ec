"""Problem 4 — Modular application: the `app` package (reference solution)."""
