"""Pydantic models shared by the routers."""

from pydantic import BaseModel, Field, field_validator


class UserCreate(BaseModel):
    username: str = Field(min_length=3, max_length=32, pattern=r"^[a-z0-9_]+$")
    password: str = Field(min_length=8)

    @field_validator("password")
    @classmethod
    def at_most_72_bytes(cls, value: str) -> str:
        if len(value.encode()) > 72:
            raise ValueError("at most 72 bytes")
        return value


class UserOut(BaseModel):
    username: str
    role: str


class TokenPair(BaseModel):
    access_token: str
    refresh_token: str
    token_type: str = "bearer"


class AccessToken(BaseModel):
    access_token: str
    token_type: str = "bearer"


class RefreshRequest(BaseModel):
    refresh_token: str


class ItemIn(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    description: str | None = None
    price: float = Field(ge=0)


class ItemOut(ItemIn):
    id: int
    owner: str
