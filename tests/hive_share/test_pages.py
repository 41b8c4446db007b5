"""A browser's navigation gets an HTML page; a script's request, JSON."""

from __future__ import annotations

import pytest

from hive_share import pages

CHROME = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8"


@pytest.mark.parametrize(
    ("accept", "html"),
    [
        (CHROME, True),
        ("*/*", False),
        ("text/event-stream", False),
        ("application/json, text/html;q=0.5", False),
        ("text/html;q=bogus", False),
        ("", False),
    ],
)
def test_html_is_preferred_only_when_asked_for_before_json(accept: str, html: bool) -> None:
    assert pages.prefers_html(accept) is html


def test_api_routes_are_never_navigations_and_page_routes_always_are() -> None:
    browser = [(b"accept", CHROME.encode())]
    api = ("/api/",)
    assert not pages.is_navigation("GET", "/api/state", browser, {"/"}, api)
    assert pages.is_navigation("GET", "/", [], {"/"}, api)
    assert pages.is_navigation("GET", "/healthz", browser, {"/"}, api)
    assert not pages.is_navigation("POST", "/", browser, {"/"}, api)


def test_an_error_page_escapes_its_title_and_has_no_inline_script() -> None:
    page = pages.error_page("<b>x</b>", ["plain"], style=False)
    assert "&lt;b&gt;x&lt;/b&gt;" in page and "<script" not in page and "<style" not in page
    assert "stylesheet" not in page and "stylesheet" in pages.error_page("t", [])
