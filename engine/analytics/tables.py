"""A journey report as terminal tables (``journey stats``, ``journey simulate --stats``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from engine.analytics.report import JourneyReport


def percent(rate: float | None) -> str:
    return "-" if rate is None else f"{100 * rate:.1f}%"


def _suppressed(reasons: dict[str, int]) -> str:
    return ", ".join(f"{reason} {n}" for reason, n in sorted(reasons.items())) or ""


def funnel_table(report: JourneyReport) -> Table:
    table = Table(title=f"Funnel · {report.journey}", title_justify="left")
    for column in ("step", "kind", "reached", "sent", "delivered", "failed", "suppressed"):
        justify: Any = "left" if column in ("step", "kind", "suppressed") else "right"
        table.add_column(column, justify=justify)
    table.add_row("(entered)", "", str(report.entered), "", "", "", "")
    for step in report.steps:
        m = step.messages
        send = step.kind == "send" or m.total > 0
        suppressed = m.suppressed_total
        table.add_row(
            step.name,
            step.kind + (f" ({', '.join(step.channels)})" if step.channels else ""),
            str(step.reached),
            str(m.sent) if send else "",
            str(m.delivered) if send else "",
            str(m.failed) if send else "",
            (f"{suppressed} ({_suppressed(m.suppressed)})" if suppressed else "0") if send else "",
        )
    return table


def conversion_table(report: JourneyReport) -> Table:
    c = report.conversions
    table = Table(title="Conversions", title_justify="left", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    if not c.goal:
        table.add_row("goal", "none")
        return table
    table.add_row("goal", f"{' | '.join(c.goal)} within {c.within}")
    table.add_row("entered", str(c.entered))
    table.add_row("converted", str(c.converted))
    table.add_row("conversion rate", percent(c.rate))
    table.add_row("window still open", str(c.open))
    table.add_row("rate, windows closed", percent(c.rate_decided))
    return table


def attribution_table(report: JourneyReport) -> Table:
    a = report.attribution
    table = Table(title=f"Attribution of {a.conversions} conversion(s)", title_justify="left")
    for column in ("channel", "first touch", "last touch", "linear"):
        table.add_column(column, justify="left" if column == "channel" else "right")
    for credit in a.channels:
        table.add_row(
            credit.channel, str(credit.first_touch), str(credit.last_touch), f"{credit.linear:.2f}"
        )
    if a.unattributed:
        table.add_row("(no message before)", str(a.unattributed), str(a.unattributed), "")
    return table


def split_tables(report: JourneyReport) -> list[Table]:
    tables = []
    for split in report.splits:
        verdict = (
            f"{split.leader} wins (significant)"
            if split.significant
            else "no significant difference yet"
        )
        table = Table(
            title=f"Split {split.step}: {verdict}",
            caption=f"{split.test}, alpha {split.alpha:g}"
            + (
                f" ({split.alpha_per_comparison:.3g} per comparison, Bonferroni)"
                if len(split.arms) > 2
                else ""
            )
            + f"; Wilson {100 * split.confidence:g}% intervals",
            title_justify="left",
            caption_justify="left",
        )
        for column in ("arm", "weight", "runs", "converted", "rate", "interval", "p vs leader"):
            table.add_column(column, justify="left" if column == "arm" else "right")
        for arm in split.arms:
            table.add_row(
                arm.step + (" *" if arm.step == split.leader else ""),
                str(arm.weight),
                str(arm.runs),
                str(arm.converted),
                percent(arm.rate),
                f"{percent(arm.ci_low)} – {percent(arm.ci_high)}",
                "" if arm.p_value is None else f"{arm.p_value:.3f}",
            )
        tables.append(table)
    return tables


def print_report(report: JourneyReport, console: Console) -> None:
    version = report.version or "all versions"
    console.print(f"[bold]{report.name}[/bold] ({report.journey}, {version})")
    outcomes = ", ".join(f"{k} {v}" for k, v in sorted(report.outcomes.items()))
    console.print(f"entered {report.entered}" + (f": {outcomes}" if outcomes else ""))
    console.print(funnel_table(report))
    console.print(conversion_table(report))
    if report.conversions.goal:
        console.print(attribution_table(report))
    for table in split_tables(report):
        console.print(table)
    console.print()


def summary_table(reports: Sequence[JourneyReport]) -> Table:
    table = Table(title="Journeys", title_justify="left")
    columns = ("journey", "version", "entered", "active", "sent", "suppressed", "failed")
    for column in (*columns, "converted", "rate"):
        table.add_column(column, justify="left" if column in ("journey", "version") else "right")
    for report in reports:
        line = report.summary()
        table.add_row(
            line["journey"],
            (line["version"] or "all")[:12],
            *(str(line[c]) for c in columns[2:]),
            str(line["converted"]),
            percent(line["conversion_rate"]),
        )
    return table
