"""Telegram accounts and users: phone, login code, 2FA password, username, premium, home DC
(https://core.telegram.org/api/auth, https://core.telegram.org/api/premium)."""

from __future__ import annotations

from collections.abc import Iterable

from telepi.sandbox.world.records import User
from telepi.sandbox.world.store import USER_COLS, Store, user_row

USER_ID_BASE = 100_000_000


def normalize_phone(phone: str) -> str:
    """Digits only, as Telethon's ``utils.parse_phone`` sends them."""
    return "".join(ch for ch in str(phone) if ch.isdigit())


class Accounts(Store):
    # ---- users

    def create_user(
        self,
        name: str,
        *,
        first_name: str | None = None,
        last_name: str = "",
        username: str | None = None,
        phone: str | None = None,
        code: str | None = None,
        password: str | None = None,
        premium: bool = False,
        dc: int = 2,
    ) -> User:
        with self._tx() as db:
            user_id = self._next_id("next_user_id", USER_ID_BASE)
            db.execute(
                "INSERT INTO users (id, access_hash, name, first_name, last_name, username, phone, code,"
                " password, premium, dc) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    user_id,
                    self.random_long(),
                    name,
                    first_name if first_name is not None else name.capitalize(),
                    last_name,
                    username,
                    normalize_phone(phone) if phone else None,
                    code,
                    password,
                    int(premium),
                    dc,
                ),
            )
        return self.user(user_id)

    def user(self, user_id: int) -> User:
        row = self._db.execute(f"SELECT {USER_COLS} FROM users WHERE id = ?", (user_id,)).fetchone()
        if row is None:
            raise KeyError(f"no user {user_id}")
        return user_row(row)

    def find_user(self, user_id: int) -> User | None:
        row = self._db.execute(f"SELECT {USER_COLS} FROM users WHERE id = ?", (user_id,)).fetchone()
        return None if row is None else user_row(row)

    def users(self, ids: Iterable[int]) -> list[User]:
        wanted = sorted(set(ids))
        out: list[User] = []
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(f"SELECT {USER_COLS} FROM users WHERE id IN ({marks})", chunk)
            out.extend(user_row(row) for row in rows)
        return out

    def user_by_phone(self, phone: str) -> User | None:
        row = self._db.execute(f"SELECT {USER_COLS} FROM users WHERE phone = ?", (normalize_phone(phone),)).fetchone()
        return None if row is None else user_row(row)

    def user_by_name(self, name: str) -> User | None:
        row = self._db.execute(f"SELECT {USER_COLS} FROM users WHERE name = ?", (name,)).fetchone()
        return None if row is None else user_row(row)

    def user_by_username(self, username: str) -> User | None:
        row = self._db.execute(f"SELECT {USER_COLS} FROM users WHERE username = ?", (username.lstrip("@"),)).fetchone()
        return None if row is None else user_row(row)

    def accounts(self) -> list[User]:
        rows = self._db.execute(f"SELECT {USER_COLS} FROM users WHERE phone IS NOT NULL ORDER BY id")
        return [user_row(row) for row in rows]

    def account(self, ref: str | int) -> User:
        """An account by name, phone, username or id."""
        user: User | None = None
        if isinstance(ref, int):
            user = self.find_user(ref)
        else:
            user = self.user_by_name(ref) or self.user_by_username(ref)
            if user is None and normalize_phone(ref):
                user = self.user_by_phone(ref)
        if user is None:
            raise KeyError(f"no user {ref!r}")
        return user

    def set_premium(self, user_id: int, premium: bool) -> None:
        with self._tx() as db:
            db.execute("UPDATE users SET premium = ? WHERE id = ?", (int(premium), user_id))
