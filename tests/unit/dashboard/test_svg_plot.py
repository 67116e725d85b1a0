"""The dashboard's SVG bar charts: well-formed XML whatever the labels say, one bar per point,
hover text and a text alternative, and nothing that a strict CSP would block."""

from __future__ import annotations

import datetime as dt
import re
import xml.etree.ElementTree as ET

import pytest
from hypothesis import given
from hypothesis import strategies as st

from unsubscribe_web.dashboard.svg_plot import bar_chart, nice_ceiling

SVG = "{http://www.w3.org/2000/svg}"
# What XML 1.0 can carry: anything else in a label becomes U+FFFD.
NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def bars(svg: str) -> list[ET.Element]:
    root = ET.fromstring(svg)
    return [e for e in root.iter(f"{SVG}rect") if e.get("class") == "bar"]


def bar_title(rect: ET.Element) -> str:
    title = rect.find(f"{SVG}title")
    assert title is not None and title.text is not None
    return title.text


@given(
    st.lists(
        st.tuples(
            st.text(max_size=40),
            st.one_of(
                st.integers(min_value=0, max_value=10**9),
                st.floats(min_value=0, max_value=1e9, allow_nan=False, allow_infinity=False),
            ),
        ),
        max_size=70,
    ),
    st.text(max_size=60),
)
def test_any_labels_and_values_give_well_formed_svg_with_one_bar_per_point(points, title):
    svg = bar_chart(points, title=title, unit="sends")
    root = ET.fromstring(svg)  # raises on anything not well-formed
    assert root.tag == f"{SVG}svg"
    found = bars(svg)
    assert len(found) == len(points)
    top_y = 12.0  # Frame().top: no bar leaves the plot
    for rect, (label, value) in zip(found, points, strict=True):
        shown = NOT_XML.sub("\ufffd", label)
        # The label survives escaping exactly: the parser reads back what was given.
        assert rect.get("data-label") == shown
        assert bar_title(rect).startswith(f"{shown}: ")
        assert bar_title(rect).endswith(" sends")
        assert float(rect.get("height", "-1")) >= 0
        assert float(rect.get("y", "-1")) >= top_y - 0.01
        if value == 0:
            assert float(rect.get("height", "-1")) == 0
    chart_title = root.find(f"{SVG}title")
    assert chart_title is not None and (chart_title.text or "") == NOT_XML.sub("\ufffd", title)


def test_markup_in_labels_is_text_not_markup():
    svg = bar_chart([('<script>alert("x")</script>', 2), ("a & b", 1)], title="<b>T</b>")
    assert "<script" not in svg and "<b>" not in svg
    assert [bar_title(r) for r in bars(svg)] == ['<script>alert("x")</script>: 2', "a & b: 1"]


def test_bars_scale_to_a_round_axis_top_and_carry_their_values():
    svg = bar_chart([("a", 3), ("b", 0), ("c", 7)], title="T")
    found = bars(svg)
    assert [r.get("data-value") for r in found] == ["3", "0", "7"]
    heights = [float(r.get("height", "0")) for r in found]
    # The axis top is 10 (7 rounded up to 1, 2 or 5 times a power of ten): 3 is 30% of 7's 70%.
    assert heights[1] == 0 and heights[2] == pytest.approx(heights[0] * 7 / 3)
    ticks = [t.text for t in ET.fromstring(svg).iter(f"{SVG}text")]
    assert {"0", "5", "10"} <= set(ticks)


def test_datetime_and_date_labels_and_the_text_alternative():
    start = dt.datetime(2026, 12, 1, 9, 58, tzinfo=dt.UTC)
    minutes = [(start + dt.timedelta(minutes=i), i) for i in range(3)]
    svg = bar_chart(minutes, title="Sends", time_format="%H:%M")
    assert [bar_title(r) for r in bars(svg)] == ["09:58: 0", "09:59: 1", "10:00: 2"]
    desc = ET.fromstring(svg).find(f"{SVG}desc")
    assert desc is not None
    assert desc.text == "3 bars from 09:58 to 10:00; total 3; highest 2 at 10:00."
    days = bar_chart([(dt.date(2026, 11, 30), 1)], title="Days")
    assert [bar_title(r) for r in bars(days)] == ["2026-11-30: 1"]


def test_accessible_name_and_no_script_or_style():
    svg = bar_chart([("a", 1)], title="Unsubscribes per day")
    root = ET.fromstring(svg)
    assert root.get("role") == "img" and root.get("aria-label") == "Unsubscribes per day"
    assert "<script" not in svg and "style=" not in svg and "<style" not in svg
    assert "http" not in svg.replace("http://www.w3.org/2000/svg", "")  # nothing fetched


def test_empty_series_says_so():
    svg = bar_chart([], title="Nothing")
    assert bars(svg) == []
    assert "No data" in svg and ET.fromstring(svg) is not None


@pytest.mark.parametrize("value", [-1, float("nan"), float("inf")])
def test_values_must_be_finite_and_not_negative(value):
    with pytest.raises(ValueError, match="finite values >= 0"):
        bar_chart([("a", value)], title="T")


@pytest.mark.parametrize(
    ("value", "top"), [(0, 1), (0.3, 0.5), (1, 1), (3, 5), (7, 10), (11, 20), (60, 100)]
)
def test_nice_ceiling(value, top):
    assert nice_ceiling(value) == pytest.approx(top)


def test_counts_get_no_fractional_tick():
    svg = bar_chart([("a", 1), ("b", 0)], title="T")
    ticks = [t.text for t in ET.fromstring(svg).iter(f"{SVG}text")]
    assert "0.5" not in ticks and {"0", "1"} <= set(ticks)
    halves = bar_chart([("a", 0.4)], title="T")
    assert "0.25" in [t.text for t in ET.fromstring(halves).iter(f"{SVG}text")]
