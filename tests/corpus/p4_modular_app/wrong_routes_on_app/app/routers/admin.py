"""admin: the router is here, but the routes ended up in main.py."""

from fastapi import APIRouter

router = APIRouter(prefix="/admin", tags=["admin"])
