from fastapi import FastAPI

from .routers import admin, auth, items

app = FastAPI(title="Modular API")

for module in (auth, items, admin):
    app.include_router(module.router)
