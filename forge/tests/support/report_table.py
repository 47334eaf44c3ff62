"""Opens report.html in headless Chromium (Playwright) and prints, as JSON,
the console errors, the requests, and each batch table's header and rows as
a person sees them, for forge/tests/report_html.rs.

usage: report_table.py CHROMIUM REPORT_HTML
"""
import json
import sys

from playwright.sync_api import sync_playwright

chromium, report = sys.argv[1:3]
seen = {"console_errors": [], "requests": [], "tables": []}

with sync_playwright() as p:
    browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.on("console", lambda m: m.type == "error" and seen["console_errors"].append(m.text))
    page.on("pageerror", lambda e: seen["console_errors"].append(str(e)))
    page.on("request", lambda r: seen["requests"].append(r.url))
    page.goto("file://" + report)
    page.wait_for_selector("tr.batch")
    for table in page.locator("table.batches").all():
        seen["tables"].append({
            "header": table.locator("tr:first-child th").all_inner_texts(),
            "rows": [
                [cell.strip() for cell in row.locator("td").all_inner_texts()]
                for row in table.locator("tr.batch").all()
            ],
        })
    browser.close()

print(json.dumps(seen))
