"""The error tree maps each class to one HTTP status and exit code, and round-trips over the wire."""

from __future__ import annotations

from datavalley.errors import ERRORS_BY_CODE, Conflict, DatavalleyError, error_from_dict


def test_codes_and_exit_codes_are_unique() -> None:
    """No two error classes share a wire code or a CLI exit code."""
    classes = list(ERRORS_BY_CODE.values())
    assert len({c.code for c in classes}) == len(classes)
    assert len({c.exit_code for c in classes}) == len(classes)
    assert all(c.exit_code != 0 for c in classes)


def test_round_trip_keeps_class_message_and_details() -> None:
    """error_from_dict(to_dict()) rebuilds the same class, message and details."""
    err = Conflict("participant p_1 is already verified", participant_id="p_1")
    back = error_from_dict(err.to_dict())
    assert type(back) is Conflict and back.message == err.message and back.details == err.details
    assert type(error_from_dict({"error": "nonsense", "message": "m"})) is DatavalleyError
