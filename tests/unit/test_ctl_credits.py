"""``doractl credits`` and the credit kinds' tables, as plain strings."""

from __future__ import annotations

import datetime as dt

from dora.api import objects
from dora.api.v1 import object_pb2
from dora.ctl import columns, printers
from dora.ctl.commands import credits

NOW = dt.datetime(2024, 1, 3, 12, tzinfo=dt.UTC)
MONDAY = dt.datetime(2024, 1, 8, tzinfo=dt.UTC)


def usercredit(zone: str, *, weekly: float = 500, used: float = 0, per_hour: float = 0,
               unit: str = "€", unlimited: bool = False) -> object_pb2.Object:
    obj = objects.new("Usercredit", "amedeo.setti", zone=zone)
    obj.usercredit.spec.user = "amedeo.setti"
    status = obj.usercredit.status
    status.weekly, status.used, status.running_per_hour = weekly, used, per_hour
    status.remaining = 0 if unlimited else max(0.0, weekly - used)
    status.exhausted = not unlimited and used >= weekly
    status.unlimited = unlimited
    status.price_unit = unit
    status.week_start.FromDatetime(MONDAY - dt.timedelta(days=7))
    status.week_end.FromDatetime(MONDAY)
    obj.metadata.creation_timestamp.FromDatetime(NOW - dt.timedelta(days=2))
    return obj


def test_the_indicator_per_zone() -> None:
    rows = credits.rows([
        usercredit("dc-test-01", weekly=100, used=100.000000001, per_hour=0),
        usercredit("dc-rov-01", used=123.456, per_hour=5),
        usercredit("dc-free", weekly=0, used=7.5, unlimited=True, unit=""),
    ], now=NOW)
    assert rows == [
        ["dc-free", "7.5 / -", "-", "0/h", "-", "Mon 2024-01-08 00:00 UTC (in 4d)",
         "Unlimited"],
        ["dc-rov-01", "123.46€ / 500€", "376.54€", "5€/h", "in 3d",
         "Mon 2024-01-08 00:00 UTC (in 4d)", "OK"],
        ["dc-test-01", "100€ / 100€", "0€", "0€/h", "-", "Mon 2024-01-08 00:00 UTC (in 4d)",
         "Exhausted"],
    ]
    # A week already over (the controller has not rolled it yet): no "in".
    assert credits.rows([usercredit("z")], now=MONDAY + dt.timedelta(hours=1))[0][5] == (
        "Mon 2024-01-08 00:00 UTC")


def test_credit_amounts() -> None:
    assert [columns.credit_amount(v, "€") for v in (0, 15.0, 7.499999999, 2.5, -0.001)] == [
        "0€", "15€", "7.5€", "2.5€", "0€"]


def test_get_usercredits_and_resourcecredits_tables() -> None:
    cols = columns.columns("Usercredit")
    table = printers.plain_table([c.header for c in cols], printers.table_rows(
        [usercredit("dc-rov-01", used=15, per_hour=5)], cols, now=NOW))
    assert table.splitlines() == [
        "ZONE        NAME           WEEKLY   USED   REMAINING   PER HOUR   STATE   AGE",
        "dc-rov-01   amedeo.setti   500€     15€    485€        5€/h       OK      2d",
    ]
    wide = [c.header for c in columns.columns("Usercredit", wide=True)]
    assert wide[-2:] == ["USER", "WEEK START"]
    assert columns.row(usercredit("z"), columns.columns("Usercredit", wide=True),
                       now=NOW)[-1] == "2024-01-01 00:00 UTC"
    rc = objects.new("Resourcecredit", "Tesla V100-SXM2-16GB", zone="dc-rov-01")
    rc.resourcecredit.spec.product_name = "Tesla V100-SXM2-16GB"
    rc.resourcecredit.spec.credit.per.hour = 2.5
    rc.resourcecredit.spec.annotations["priceUnit"] = "€"
    cols = columns.columns("Resourcecredit")
    assert columns.row(rc, cols, now=NOW)[2:4] == ["Tesla V100-SXM2-16GB", "2.5€/h"]
