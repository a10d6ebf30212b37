"""EventBridge Scheduler expressions: checked here, because the SDK passes any string through to the service."""

from __future__ import annotations

import re

RATE_UNITS = ("minute", "minutes", "hour", "hours", "day", "days")
VALID_FORMS = (
    "--cron 'MINUTES HOURS DAY-OF-MONTH MONTH DAY-OF-WEEK YEAR' (six fields, UTC; one of day-of-month and "
    "day-of-week must be '?'; e.g. '0 3 * * ? *' every day at 03:00, '0 8 ? * MON-FRI *' weekdays at 08:00) "
    "or --rate 'N UNIT' (UNIT: minute(s), hour(s), day(s); e.g. '1 day', '12 hours')"
)
_MONTHS = "JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC"
_DAYS = "SUN|MON|TUE|WED|THU|FRI|SAT"
# (name, lowest, highest, extra tokens allowed besides numbers, ranges, lists and steps)
_CRON_FIELDS = (
    ("minutes", 0, 59, ""),
    ("hours", 0, 23, ""),
    ("day-of-month", 1, 31, r"\?|L|W|LW|[0-9]{1,2}W"),
    ("month", 1, 12, _MONTHS),
    ("day-of-week", 1, 7, rf"\?|L|{_DAYS}|[1-7]L|[1-7]#[1-5]|(?:{_DAYS})#[1-5]"),
    ("year", 1970, 2199, ""),
)


def _cron_field_problem(value: str, name: str, low: int, high: int, extra: str) -> str | None:
    for part in value.split(","):
        if part == "*" or (extra and re.fullmatch(extra, part)):
            continue
        base, _, step = part.partition("/")
        if step and not step.isdigit():
            return f"{name} step {step!r} is not a number"
        bounds = base.split("-") if base != "*" else []
        named = re.fullmatch(f"(?:{extra})(?:-(?:{extra}))?", base) if extra else None
        if named:
            continue
        if not bounds or len(bounds) > 2 or not all(b.isdigit() for b in bounds):
            return f"{name} {part!r} is not valid"
        if not all(low <= int(b) <= high for b in bounds):
            return f"{name} {part!r} is outside {low}-{high}"
    return None


def cron_problem(expression: str) -> str | None:
    """What is wrong with a six-field EventBridge cron expression, or None."""
    fields = expression.split()
    if len(fields) != 6:
        return f"a cron expression has 6 fields, {expression!r} has {len(fields)}"
    for value, (name, low, high, extra) in zip(fields, _CRON_FIELDS, strict=True):
        problem = _cron_field_problem(value, name, low, high, extra)
        if problem:
            return problem
    if (fields[2] == "?") == (fields[4] == "?"):
        return "exactly one of day-of-month and day-of-week must be '?'"
    return None


def parse_rate(expression: str) -> tuple[int, str]:
    """`"12 hours"` -> (12, "hours"); ValueError with the reason otherwise."""
    parts = expression.split()
    if len(parts) != 2 or not parts[0].isdigit() or int(parts[0]) < 1:
        raise ValueError(f"a rate is 'N UNIT' with N a positive whole number, got {expression!r}")
    value, unit = int(parts[0]), parts[1].lower()
    if unit not in RATE_UNITS:
        raise ValueError(f"rate unit {parts[1]!r} is not one of {', '.join(RATE_UNITS)}")
    if (value == 1) != (not unit.endswith("s")):
        raise ValueError(f"say '1 {unit.rstrip('s')}' for one, '{value} {unit.rstrip('s')}s' for more")
    return value, unit
