"""The one error tree of datavalley.

Every error a user can cause or meet is a :class:`DatavalleyError`. Each class carries the HTTP status the
API answers with and the exit code the CLI ends with; the mapping lives here and nowhere else
(``api/errors.py`` and ``cli/main.py`` read these attributes, ``client.py`` rebuilds the class from the
``error`` code of a response body).

::

    DatavalleyError                  500 / exit 1   a bug or an unexpected state
    ├── InvalidInput                 422 / exit 2   malformed or out-of-range input (names the field)
    ├── Unauthenticated              401 / exit 3   no token, unknown, expired or revoked token
    ├── Forbidden                    403 / exit 4   authenticated, but the role or owner check refused
    ├── NotFound                     404 / exit 5   an ID that names nothing (or nothing visible to you)
    ├── Conflict                     409 / exit 6   duplicate, wrong state, reused Idempotency-Key
    ├── PolicyViolation              403 / exit 7   a contract or policy forbids the request
    ├── BudgetExhausted              429 / exit 8   a usage or privacy budget would be overdrawn
    │   └── InsufficientFunds        402 / exit 12  an available balance would go below zero
    ├── IntegrityError               500 / exit 9   stored or presented evidence does not verify
    ├── SchemaError                  500 / exit 10  the database schema is newer than this code
    └── Unavailable                  503 / exit 11  a server or dependency cannot be reached

Catch :class:`DatavalleyError` at the shells; catch a subclass when you handle that case specifically.
"""

from __future__ import annotations

from typing import Any, ClassVar


class DatavalleyError(Exception):
    """Base of every datavalley error: a message that names the thing and the reason, plus details."""

    code: ClassVar[str] = "internal_error"
    http_status: ClassVar[int] = 500
    exit_code: ClassVar[int] = 1

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details

    def to_dict(self) -> dict[str, Any]:
        """The JSON body of this error on the wire: ``{error, message, details}``."""
        return {"error": self.code, "message": self.message, "details": self.details}


class InvalidInput(DatavalleyError):
    """The request is malformed or a value is out of range; ``details['field']`` names the field."""

    code = "invalid_input"
    http_status = 422
    exit_code = 2


class Unauthenticated(DatavalleyError):
    """No credentials, or the token is unknown, expired or revoked."""

    code = "unauthenticated"
    http_status = 401
    exit_code = 3


class Forbidden(DatavalleyError):
    """The caller is known but lacks the role or ownership the action needs."""

    code = "forbidden"
    http_status = 403
    exit_code = 4


class NotFound(DatavalleyError):
    """An identifier names nothing the caller may see."""

    code = "not_found"
    http_status = 404
    exit_code = 5


class Conflict(DatavalleyError):
    """The request clashes with current state: a duplicate, a wrong status, a reused Idempotency-Key."""

    code = "conflict"
    http_status = 409
    exit_code = 6


class PolicyViolation(DatavalleyError):
    """A contract's usage policy or an exchange rule forbids the request."""

    code = "policy_violation"
    http_status = 403
    exit_code = 7


class BudgetExhausted(DatavalleyError):
    """A usage count or privacy budget would be overdrawn by the request."""

    code = "budget_exhausted"
    http_status = 429
    exit_code = 8


class InsufficientFunds(BudgetExhausted):
    """Money would be overdrawn: the available balance cannot pay for the request."""

    code = "insufficient_funds"
    http_status = 402
    exit_code = 12


class IntegrityError(DatavalleyError):
    """Evidence (a proof, signature, bundle, certificate or stored ledger data) does not verify."""

    code = "integrity_error"
    http_status = 500
    exit_code = 9


class SchemaError(DatavalleyError):
    """The database schema is not one this code can use (for example newer than the code knows)."""

    code = "schema_error"
    http_status = 500
    exit_code = 10


class Unavailable(DatavalleyError):
    """A server or dependency could not be reached."""

    code = "unavailable"
    http_status = 503
    exit_code = 11


ERRORS_BY_CODE: dict[str, type[DatavalleyError]] = {
    cls.code: cls
    for cls in (
        DatavalleyError,
        InvalidInput,
        Unauthenticated,
        Forbidden,
        NotFound,
        Conflict,
        PolicyViolation,
        BudgetExhausted,
        InsufficientFunds,
        IntegrityError,
        SchemaError,
        Unavailable,
    )
}


def error_from_dict(body: dict[str, Any]) -> DatavalleyError:
    """Rebuild the error a server sent (``{error, message, details}``); unknown codes become the base."""
    cls = ERRORS_BY_CODE.get(str(body.get("error")), DatavalleyError)
    details = body.get("details") or {}
    err = cls(str(body.get("message", "unknown error")))
    err.details = dict(details) if isinstance(details, dict) else {"details": details}
    return err
