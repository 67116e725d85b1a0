"""Prometheus text metrics for the web face: requests by route and status, latency histogram,
unsubscribes by channel, spool depth. A few dicts, no dependency: the hot path adds one dict
update and one bisect per request."""

from __future__ import annotations

import bisect
from collections import defaultdict

from aiohttp import web

# Seconds; the one-click target is a few milliseconds, the tail matters up to a second.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    """Counters and one histogram, rendered in the Prometheus text exposition format."""

    def __init__(self) -> None:
        self.requests: defaultdict[tuple[str, str, int], int] = defaultdict(int)
        self.unsubscribes: defaultdict[str, int] = defaultdict(int)
        # Per route: a count per bucket (the last one is +Inf), the sum and the count.
        self._buckets: dict[str, list[int]] = {}
        self._sums: defaultdict[str, float] = defaultdict(float)
        self.spool_depth = 0
        self.unparsed_bounces: int | None = None  # read from Postgres at each scrape

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests[(route, method, status)] += 1
        counts = self._buckets.get(route)
        if counts is None:
            counts = self._buckets[route] = [0] * (len(BUCKETS) + 1)
        counts[bisect.bisect_left(BUCKETS, seconds)] += 1
        self._sums[route] += seconds

    def unsubscribed(self, channel: str) -> None:
        self.unsubscribes[channel] += 1

    def render(self) -> str:
        out = [
            "# HELP optout_http_requests_total HTTP requests answered, by route and status.",
            "# TYPE optout_http_requests_total counter",
        ]
        for (route, method, status), count in sorted(self.requests.items()):
            labels = f'route="{route}",method="{method}",status="{status}"'
            out.append(f"optout_http_requests_total{{{labels}}} {count}")
        out += [
            "# HELP optout_http_request_seconds Time to answer a request, by route.",
            "# TYPE optout_http_request_seconds histogram",
        ]
        for route, counts in sorted(self._buckets.items()):
            running = 0
            for bound, count in zip((*BUCKETS, None), counts, strict=True):
                running += count
                le = "+Inf" if bound is None else repr(bound)
                out.append(
                    f'optout_http_request_seconds_bucket{{route="{route}",le="{le}"}} {running}'
                )
            out.append(f'optout_http_request_seconds_sum{{route="{route}"}} {self._sums[route]}')
            out.append(f'optout_http_request_seconds_count{{route="{route}"}} {running}')
        out += [
            "# HELP optout_unsubscribes_total Unsubscribes taken, by channel "
            "(spooled ones count when taken, not again when replayed).",
            "# TYPE optout_unsubscribes_total counter",
        ]
        for channel, count in sorted(self.unsubscribes.items()):
            out.append(f'optout_unsubscribes_total{{channel="{channel}"}} {count}')
        out += [
            "# HELP optout_spool_depth Opt-outs waiting in the local spool for Postgres.",
            "# TYPE optout_spool_depth gauge",
            f"optout_spool_depth {self.spool_depth}",
        ]
        if self.unparsed_bounces is not None:
            out += [
                "# HELP optout_unparsed_bounces Bounces to VERP addresses that no parser"
                " understood, kept until their raw message expires.",
                "# TYPE optout_unparsed_bounces gauge",
                f"optout_unparsed_bounces {self.unparsed_bounces}",
            ]
        return "\n".join(out) + "\n"


def route_name(request: web.Request) -> str:
    """The route's name as a label (bounded cardinality: never the raw path)."""
    resource = request.match_info.route.resource
    if resource is None:
        return "unmatched"
    # Names sit on the resource (GET and POST of /u/{token} share "unsubscribe").
    return resource.name or resource.canonical
