"""Tables the terminal commands print (`linli stats`, `linli demo`)."""

from __future__ import annotations

from collections.abc import Iterable

from rich import box
from rich.table import Table

from handlers.stats import Rates, percent


def rates_table(rows: Iterable[Rates], title: str) -> Table:
    """The three rates as a table that reads at 80 columns: short Chinese heads, names never cut."""
    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False,
                  caption="新单 new · 未结 open · 超时 overdue · 办结 done · 评价 ratings")
    table.add_column("", no_wrap=True)
    for column in ("新单", "未结", "超时", "办结", "评价", "响应率", "解决率", "满意率"):
        table.add_column(column, justify="right", no_wrap=True)
    for row in rows:
        table.add_row(row.name, str(row.reported), str(row.open), str(row.overdue), str(row.resolved),
                      str(row.ratings), percent(row.response_rate), percent(row.resolution_rate),
                      percent(row.satisfaction_rate))
    return table
