"""Drives report.html in headless Chromium (Playwright) and prints what it
saw as JSON, for forge/tests/report_html.rs to assert on.

usage: report_browser.py CHROMIUM REPORT_HTML SCREENSHOT_PNG SEARCH FAIL_TEST
"""
import base64
import json
import sys

from playwright.sync_api import sync_playwright

chromium, report, screenshot, search, fail_test = sys.argv[1:6]
url = "file://" + report
seen = {"console_errors": [], "requests": []}


def visible_tests(page):
    return page.eval_on_selector_all(
        "tr.batch td.test", "cells => cells.map(c => c.textContent)"
    )


def select_all(page, value):
    """Shows `value` ("all", "fail", ...) in every suite's table."""
    for k in range(page.locator("select.filter-status").count()):
        page.locator("select.filter-status").nth(k).select_option(value)


def search_all(page, text):
    for k in range(page.locator("input.search").count()):
        page.locator("input.search").nth(k).fill(text)


def pixel_colors(browser, png):
    """How many distinct colours the screenshot has (decoded by the browser)."""
    page = browser.new_page()
    page.set_content("<canvas id=c></canvas>")
    data = "data:image/png;base64," + base64.b64encode(png).decode()
    return page.evaluate(
        """async (src) => {
            const img = new Image(); img.src = src; await img.decode();
            const c = document.getElementById('c'); c.width = img.width; c.height = img.height;
            const ctx = c.getContext('2d'); ctx.drawImage(img, 0, 0);
            const px = ctx.getImageData(0, 0, img.width, img.height).data, colours = new Set();
            for (let i = 0; i < px.length; i += 4 * 7) colours.add(px[i] << 16 | px[i + 1] << 8 | px[i + 2]);
            return colours.size;
        }""",
        data,
    )


with sync_playwright() as p:
    browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.on("console", lambda m: m.type == "error" and seen["console_errors"].append(m.text))
    page.on("pageerror", lambda e: seen["console_errors"].append(str(e)))
    page.on("request", lambda r: seen["requests"].append(r.url))
    page.goto(url)
    page.wait_for_selector("tr.batch")
    seen["title"] = page.title()
    seen["all"] = visible_tests(page)
    seen["columns"] = page.eval_on_selector_all(
        "table.batches tr:first-child th", "cells => cells.map(c => c.textContent)"
    )
    select_all(page, "fail")
    seen["failed"] = visible_tests(page)
    select_all(page, "all")
    search_all(page, search)
    seen["searched"] = visible_tests(page)
    search_all(page, "")
    select_all(page, "fail")
    page.click("tr.batch:has(td.test:text-is('%s'))" % fail_test)
    page.wait_for_selector("tr.detail")
    seen["detail"] = page.inner_text("tr.detail")
    seen["query"] = page.inner_text("tr.detail pre.query")
    seen["answer_marks"] = page.eval_on_selector_all(
        "tr.detail .answer mark.diff-add", "ms => ms.map(m => m.textContent)"
    )
    seen["truth_marks"] = page.eval_on_selector_all(
        "tr.detail .truth mark.diff-del", "ms => ms.map(m => m.textContent)"
    )
    # Every row opens without an error (repeats, agentic data, ...).
    select_all(page, "all")
    shut = "r => !(r.nextElementSibling && r.nextElementSibling.matches('tr.detail'))"
    for k in range(page.locator("tr.batch").count()):
        row = page.locator("tr.batch").nth(k)
        if row.evaluate(shut):
            row.click()
    seen["details_open"] = page.locator("tr.detail").count()
    seen["injected"] = page.evaluate("document.querySelectorAll('img, iframe, script:not([type])').length")
    select_all(page, "fail")
    png = page.screenshot(path=screenshot, full_page=False)
    seen["colours"] = pixel_colors(browser, png)
    browser.close()

print(json.dumps(seen))
