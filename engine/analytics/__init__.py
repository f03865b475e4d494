"""Journey analytics: funnels, conversions, attribution and A/B arms, from any source.

``report.build_report`` turns a journey's shape and a :class:`~engine.analytics.source.StatsSource`
into a :class:`~engine.analytics.report.JourneyReport`; sources differ only in where the
counts come from (the live database, a simulated stream, maintained counters).
"""
