"""The app's routers: one module per feature, each exposing `router`."""
