"""Passwords and tokens."""

import time

from jose import JWTError, jwt
from passlib.context import CryptContext

SECRET = "another-secret-for-the-alternative"
pwd = CryptContext(schemes=["bcrypt"])
LIFETIMES = {"access": 15 * 60, "refresh": 7 * 24 * 3600}


def make_token(username: str, kind: str) -> str:
    return jwt.encode({"sub": username, "type": kind, "exp": int(time.time()) + LIFETIMES[kind]}, SECRET, "HS256")


def read_token(token: str, kind: str) -> str | None:
    try:
        claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    except JWTError:
        return None
    subject = claims.get("sub")
    return subject if claims.get("type") == kind and isinstance(subject, str) else None
