"""EventBridge Scheduler expressions, checked before anything reaches AWS (the SDK passes any string through)."""

from __future__ import annotations

import re

import pytest

from pipelines.schedules import VALID_FORMS, cron_problem, parse_rate


@pytest.mark.parametrize(
    "expression",
    [
        "0 3 * * ? *",  # every day at 03:00
        "0 8 ? * MON-FRI *",  # weekdays at 08:00
        "0/15 * * * ? *",  # every 15 minutes
        "0 12 L * ? 2027",  # last day of each month in 2027
        "0 10 ? * 6#3 *",  # the third Friday of each month
        "30 0,12 1-15 JAN,JUL ? 2026-2030",  # lists, ranges and month names together
        "0 9 15W * ? *",  # the weekday nearest the 15th
        "0 18 ? * 6L *",  # the last Friday of each month
    ],
)
def test_cron_problem_accepts_valid_eventbridge_expression(expression: str) -> None:
    assert cron_problem(expression) is None


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("0 3 * * *", "a cron expression has 6 fields, '0 3 * * *' has 5"),
        ("0 3 * * ? * 1", "has 7"),
        ("0 3 ? * ? *", "exactly one of day-of-month and day-of-week must be '?'"),
        ("0 3 * * * *", "exactly one of day-of-month and day-of-week must be '?'"),
        ("60 3 * * ? *", "minutes '60' is outside 0-59"),
        ("0 24 * * ? *", "hours '24' is outside 0-23"),
        ("0 3 0 * ? *", "day-of-month '0' is outside 1-31"),
        ("0 3 * 13 ? *", "month '13' is outside 1-12"),
        ("0 3 ? * 8 *", "day-of-week '8' is outside 1-7"),
        ("0 3 * * ? 1969", "year '1969' is outside 1970-2199"),
        ("0/x 3 * * ? *", "minutes step 'x' is not a number"),
        ("every day at three", "has 4"),
        ("0 3 * * ? banana", "year 'banana' is not valid"),
        ("0 3 * FOO ? *", "month 'FOO' is not valid"),
        ("0 3 1-2-3 * ? *", "day-of-month '1-2-3' is not valid"),
    ],
)
def test_cron_problem_refuses_bad_expression_with_the_reason(expression: str, reason: str) -> None:
    problem = cron_problem(expression)
    assert problem is not None
    assert reason in problem


@pytest.mark.parametrize(
    ("expression", "expected"),
    [("1 day", (1, "day")), ("12 hours", (12, "hours")), ("1 minute", (1, "minute")), ("30 Minutes", (30, "minutes"))],
)
def test_parse_rate_accepts_n_unit(expression: str, expected: tuple[int, str]) -> None:
    assert parse_rate(expression) == expected


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("0 hours", "N a positive whole number"),
        ("-1 hours", "N a positive whole number"),
        ("1.5 hours", "N a positive whole number"),
        ("hours", "N a positive whole number"),
        ("1 hours", "say '1 hour' for one"),
        ("2 hour", "'2 hours' for more"),
        ("3 weeks", "rate unit 'weeks' is not one of minute, minutes, hour, hours, day, days"),
        ("1 day extra", "N a positive whole number"),
    ],
)
def test_parse_rate_refuses_bad_rate_with_the_reason(expression: str, reason: str) -> None:
    with pytest.raises(ValueError, match=re.escape(reason)):
        parse_rate(expression)


def test_valid_forms_show_a_cron_and_a_rate_example_that_themselves_pass() -> None:
    assert "'0 3 * * ? *'" in VALID_FORMS and "'0 8 ? * MON-FRI *'" in VALID_FORMS
    assert cron_problem("0 3 * * ? *") is None and cron_problem("0 8 ? * MON-FRI *") is None
    assert parse_rate("1 day") and parse_rate("12 hours")
