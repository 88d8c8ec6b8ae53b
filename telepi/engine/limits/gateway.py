"""The account's gateway: every Telegram call of a session passes here (``GatedClient.middleware``).

- A flood wait on any method is waited out and the same call made again, per method, never counted
  as an attempt — topic creation, ``uploadMedia``, a file-reference refresh, an edit, a username look-up
  included. Calls already made under :meth:`AccountLimiter.call` (the sends) are waited there instead.
- An account-level refusal (a revoked login, a ban, a freeze, PEER_FLOOD; see
  ``telepi.telegram.errors``) is reported once (the session releases every lease and records the
  state) and every call from then on fails at once with the same :class:`SessionStopped`, so no task
  goes on to skip or fail messages because of it.
- File parts travel on the transfer's own connections (``engine/transfer/``), which pace them there.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from telepi.engine.limits.account import GOVERNED, AccountLimiter
from telepi.errors import SessionStopped
from telepi.telegram.errors import Classified, ErrorKind, classify, request_name


class AccountProblem(SessionStopped):
    """The account itself is refused by Telegram (revoked, banned, frozen, limited)."""

    def __init__(self, problem: Classified, sentence: str) -> None:
        super().__init__(sentence)
        self.problem = problem

    def again(self) -> AccountProblem:
        """A fresh copy for each later call: one exception object raised by every task would gather a
        traceback without end."""
        return AccountProblem(self.problem, str(self))


class Gateway:
    """Installed as the client's middleware for the whole run; the limiter joins once the route is known."""

    def __init__(self, session: str, login_command: str, on_problem: Callable[[AccountProblem], None]) -> None:
        self.session = session
        self.login_command = login_command
        self.on_problem = on_problem
        self.limiter: AccountLimiter | None = None
        self.problem: AccountProblem | None = None

    async def __call__(self, request: Any, call: Callable[[], Awaitable[Any]]) -> Any:
        if self.problem is not None:
            raise self.problem.again()
        method = request_name(request)
        try:
            if self.limiter is None or GOVERNED.get():
                return await call()
            return await self.limiter.call(method, call)
        except SessionStopped:
            raise
        except Exception as exc:
            found = classify(exc)
            if found.kind is ErrorKind.ACCOUNT:
                first = self.problem is None
                problem = self.account_problem(found)
                raise (problem if first else problem.again()) from exc
            raise

    def account_problem(self, found: Classified) -> AccountProblem:
        """The first account-level refusal stops the session; later ones repeat it."""
        if self.problem is None:
            fix = found.fix.replace("{login}", self.login_command)
            self.problem = AccountProblem(found, f"session {self.session}: Telegram answered {found.name}: {fix}.")
            self.on_problem(self.problem)
        return self.problem
