"""bench report's page is a Jinja2 template shipped with the package, autoescaped, filled in
one pass; its one script is allowed by the hash of exactly what the page holds."""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

import jinja2
import pytest
from markupsafe import Markup

from bench import htmlreport

ROOT = Path(__file__).resolve().parents[2]
SLOTS = dict(csp="", script="", title="t", generated="g", rd="", bd="", visuals="", complexity="", provenance="", data="{}")


def test_values_are_text_and_never_template():
    page = htmlreport.render_page(**{**SLOTS, "title": "{{ data }}{% raw %}<b>'\"", "generated": "@@DATA@@", "data": Markup('{"a":1}')})
    assert "<title>{{ data }}{% raw %}&lt;b&gt;&#x27;&quot;</title>" in page  # escaped as html.escape does
    assert '<div class="note">@@DATA@@</div>' in page and '<script type="application/json" id="bench-data">{"a":1}</script>' in page
    assert page.startswith("<!doctype html>") and page.endswith("</html>\n")


def test_a_slot_left_unfilled_is_an_error():
    with pytest.raises(jinja2.UndefinedError):
        htmlreport.render_page(**{k: v for k, v in SLOTS.items() if k != "rd"})


def test_the_csp_allows_the_script_the_page_holds():
    page = htmlreport.render_page(**{**SLOTS, "csp": Markup(htmlreport.CSP), "script": Markup(htmlreport._SCRIPT)})
    scripts = re.findall(r"<script>(.*?)</script>", page, flags=re.S)
    assert len(scripts) == 1
    digest = base64.b64encode(hashlib.sha256(scripts[0].encode()).digest()).decode()
    assert f"'sha256-{digest}'" in htmlreport.CSP and f'content="{htmlreport.CSP}"' in page


def test_the_template_ships_as_package_data():
    text = (ROOT / "pyproject.toml").read_text()
    line = re.search(r"^bench = \[(.*)\]$", text[text.index("[tool.setuptools.package-data]") :], flags=re.M).group(1)
    patterns = re.findall(r'"([^"]+)"', line)
    shipped = {p.name for p in (ROOT / "bench" / "templates").iterdir()}
    assert shipped == {"report.html.j2", "provenance.html.j2", "complexity.html.j2", "report.js"}
    assert all(any(Path("templates", name).match(p) for p in patterns) for name in shipped)
    assert re.search(r'^    "jinja2>=3",', text, flags=re.M)
