#!/usr/bin/env python3
"""The web UI in headless Chromium, driven over WebDriver (chromedriver) with the standard
library only: sign in (a wrong password first), read the DAG list, open the example DAG, trigger
it from the form, watch the grid reach success without reloading, open the graph, open a task
instance and read its log. Saves screenshots and prints the pages' own render times
(performance.now() around fetch and draw).

usage: ui_test.py --base URL --webdriver URL --user U --password P [--screenshots DIR]
       [--dag DAG_ID] [--big-base URL --big-user U --big-password P]
"""

import argparse
import base64
import json
import sys
import time
import urllib.error
import urllib.request

ELEMENT = "element-6066-11e4-a52e-4f735466cecf"


class Browser:
    def __init__(self, webdriver):
        self.webdriver = webdriver.rstrip("/")
        caps = {"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1440,900", "--force-device-scale-factor=1"],
            },
        }}}
        self.session = self.call("POST", "/session", caps)["sessionId"]

    def call(self, method, path, body=None):
        url = self.webdriver + path
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return json.loads(response.read() or b"{}").get("value")
        except urllib.error.HTTPError as err:
            detail = err.read().decode(errors="replace")[:400]
            raise RuntimeError(f"webdriver {method} {path}: {err.code} {detail}") from None

    def s(self, path):
        return f"/session/{self.session}{path}"

    def go(self, url):
        self.call("POST", self.s("/url"), {"url": url})

    def url(self):
        return self.call("GET", self.s("/url"))

    def find(self, css, timeout=15):
        deadline = time.time() + timeout
        while True:
            try:
                return self.call("POST", self.s("/element"), {"using": "css selector", "value": css})[ELEMENT]
            except RuntimeError:
                if time.time() > deadline:
                    raise RuntimeError(f"no element {css!r} on {self.url()}") from None
                time.sleep(0.2)

    def type(self, css, text):
        element = self.find(css)
        self.call("POST", self.s(f"/element/{element}/clear"), {})
        self.call("POST", self.s(f"/element/{element}/value"), {"text": text})

    def click(self, css):
        self.call("POST", self.s(f"/element/{self.find(css)}/click"), {})

    def js(self, script, *args):
        return self.call("POST", self.s("/execute/sync"), {"script": script, "args": list(args)})

    def wait(self, what, script, timeout=60, *args):
        deadline = time.time() + timeout
        while True:
            value = self.js(script, *args)
            if value:
                return value
            if time.time() > deadline:
                raise RuntimeError(f"timed out waiting for {what} on {self.url()}")
            time.sleep(0.25)

    def screenshot(self, path):
        png = base64.b64decode(self.call("GET", self.s("/screenshot")))
        with open(path, "wb") as f:
            f.write(png)
        print(f"  screenshot {path}")

    def close(self):
        try:
            self.call("DELETE", self.s(""))
        except RuntimeError:
            pass


def sign_in(b, base, user, password, next_path="/dags"):
    b.go(f"{base}/login?next={next_path}")
    b.type("#username", user)
    b.type("#password", password)
    b.click("#sign-in")
    b.wait("the signed-in page", "return !location.pathname.startsWith('/login')")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--base", required=True)
    p.add_argument("--webdriver", required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--dag", default="example_task_groups")
    p.add_argument("--screenshots")
    p.add_argument("--big-base")
    p.add_argument("--big-user")
    p.add_argument("--big-password")
    a = p.parse_args()
    b = Browser(a.webdriver)
    shots = a.screenshots
    try:
        print("sign-in")
        b.go(f"{a.base}/dags")
        b.wait("the redirect to the login page", "return location.pathname === '/login'")
        b.type("#username", a.user)
        b.type("#password", "not-the-password")
        b.click("#sign-in")
        b.wait("the refusal", "return document.querySelector('.error')?.textContent.includes('Wrong')")
        b.type("#password", a.password)
        b.click("#sign-in")
        b.wait("the DAG list", "return location.pathname === '/dags'")
        cookie_visible = b.js("return document.cookie.includes('_token')")
        assert not cookie_visible, "the session cookie must be HttpOnly"

        print("DAG list")
        b.wait("the DAG rows", "return document.querySelectorAll('#dag-rows tr[data-dag]').length > 0")
        dags = b.js("return [...document.querySelectorAll('#dag-rows tr[data-dag]')].map(r => r.dataset.dag)")
        assert a.dag in dags, f"{a.dag} not in {dags}"
        print(f"  {len(dags)} DAGs, drawn in {b.js('return window.gustRenderMs'):.0f} ms")
        b.type("#search", "task_groups")
        b.wait("the search", "return document.querySelectorAll('#dag-rows tr[data-dag]').length === 1")
        b.type("#search", "")
        b.js("document.querySelector('#search').dispatchEvent(new Event('input'))")

        print("trigger")
        b.go(f"{a.base}/dags/{a.dag}")
        b.wait("the grid", "return window.gustRenderMs !== undefined && window.gustView")
        before = b.js("return gustView.runs.map(r => r.run_id)")
        b.click("#trigger-open")
        b.type("#trigger-conf", '{"unknown_but_fine": 1}')
        b.click("#trigger-submit")
        toast = b.wait("the trigger's confirmation",
                       "const t = document.getElementById('toast'); return !t.hidden && t.textContent")
        assert "Triggered" in toast, toast
        run_id = b.wait("the new run in the grid (no reload)",
                        "const r = gustView.runs.map(r => r.run_id).filter(id => !arguments[0].includes(id));"
                        "return r.length ? r[0] : null", 30, before)
        print(f"  run {run_id}")
        b.wait("the run's success in the grid (live)",
               "const r = gustView.runs.find(r => r.run_id === arguments[0]);"
               "const c = gustView.cells.get(arguments[0]) || '';"
               "return r && r.state === 'success' && c.length > 0 && [...c].every(x => x === 's')",
               120, run_id)
        print(f"  success; grid drawn in {b.js('return window.gustRenderMs'):.0f} ms")
        if shots:
            b.screenshot(f"{shots}/grid.png")

        print("graph")
        b.click("#tab-graph")
        b.wait("the graph", "return document.querySelectorAll('#graph svg .node').length > 0 && window.gustRenderMs !== undefined")
        fills = b.js("return [...document.querySelectorAll('#graph svg .node rect')].map(r => r.getAttribute('fill'))")
        assert all(f == "#008000" for f in fills), fills
        if shots:
            b.screenshot(f"{shots}/graph.png")

        print("task instance and log")
        b.go(f"{a.base}/dags/{a.dag}/runs/{run_id}/tasks/extract")
        b.wait("the log", "return document.getElementById('log').textContent.includes('extract')")
        b.wait("the state badge", "return document.getElementById('ti-state').textContent === 'success'")
        if shots:
            b.screenshot(f"{shots}/task-instance.png")

        print("mark failed, then clear with downstream")
        b.click("#mark-failed")
        b.wait("the failed badge (live)", "return document.getElementById('ti-state').textContent === 'failed'", 30)
        b.click("#clear-task")
        b.call("POST", b.s("/alert/accept"), {})
        b.wait("the second try's success (live)",
               "return document.getElementById('ti-state').textContent === 'success' && "
               "document.querySelectorAll('#tries tr').length === 2", 90)
        b.wait("the second try's log", "return document.getElementById('log').textContent.includes('extract')")

        print("a conf the params refuse")
        b.go(f"{a.base}/dags/example_templating")
        b.wait("the grid", "return window.gustRenderMs !== undefined")
        conf = b.js("return JSON.parse(document.getElementById('trigger-conf').value)")
        assert conf == {"table": "orders", "limit": 100}, conf
        b.click("#trigger-open")
        b.type("#trigger-conf", '{"limit": "many"}')
        b.click("#trigger-submit")
        refusal = b.wait("the refusal", "const e = document.getElementById('trigger-error'); return !e.hidden && e.textContent")
        print(f"  refused: {refusal}")
        assert "limit" in refusal, refusal

        print("a log tailing while its try runs")
        b.go(f"{a.base}/dags/example_live_log")
        b.wait("the grid", "return window.gustRenderMs !== undefined && window.gustView")
        before = b.js("return gustView.runs.map(r => r.run_id)")
        b.click("#trigger-open")
        b.click("#trigger-submit")
        live_run = b.wait("the new run", "const r = gustView.runs.map(r => r.run_id).filter(id => !arguments[0].includes(id));"
                          "return r.length ? r[0] : null", 30, before)
        b.go(f"{a.base}/dags/example_live_log/runs/{live_run}/tasks/count")
        b.wait("the second second's lines while the try runs",
               "return document.getElementById('log').textContent.includes('line 2.200 ') && "
               "document.getElementById('ti-state').textContent === 'running'", 30)
        b.wait("the last line and the success",
               "return document.getElementById('log').textContent.includes('line 6.200 ') && "
               "document.getElementById('ti-state').textContent === 'success'", 30)
        for marker in ("line 5.1 ", "line 6.200 "):
            seen = b.js("return document.getElementById('log').textContent.split(arguments[0]).length - 1", marker)
            assert seen == 1, f"the log shows {marker!r} {seen} times"

        print("run page")
        b.go(f"{a.base}/dags/{a.dag}/runs/{run_id}")
        b.wait("the run's tasks", "return document.querySelectorAll('#run-tasks tr').length > 0 && "
               "document.getElementById('run-state').textContent === 'success'")
        b.click("#mark-run-failed")
        b.wait("the run marked failed (live)", "return document.getElementById('run-state').textContent === 'failed'", 30)
        b.click("#clear-run")
        b.call("POST", b.s("/alert/accept"), {})
        b.wait("the cleared run's success (live)",
               "return document.getElementById('run-state').textContent === 'success'", 90)

        b.go(f"{a.base}/dags")
        b.wait("the DAG rows", "return document.querySelectorAll('#dag-rows tr[data-dag]').length > 0")
        time.sleep(0.5)
        if shots:
            b.screenshot(f"{shots}/dags.png")

        print("log out")
        b.click("#logout")
        b.wait("the login page", "return location.pathname === '/login'")
        b.go(f"{a.base}/dags")
        b.wait("the redirect after logout", "return location.pathname === '/login'")

        if a.big_base:
            print("big DAG (5,000 tasks)")
            sign_in(b, a.big_base, a.big_user, a.big_password)
            for label, path in [("DAG list", "/dags"), ("grid, 100 runs", "/dags/big?runs=100"),
                                ("graph", "/dags/big?tab=graph&runs=100")]:
                times, loads = [], []
                for _ in range(3):
                    b.go(f"{a.big_base}{path}")
                    times.append(b.wait(label, "return window.gustRenderMs", 60))
                    loads.append(b.js("return window.gustDrawnAt"))
                times.sort()
                loads.sort()
                print(f"  {label}: read and drawn in {times[1]:.0f} ms (median of 3; min {times[0]:.0f} ms); "
                      f"drawn {loads[1]:.0f} ms after navigation started")
                if shots and path.endswith("runs=100"):
                    b.screenshot(f"{shots}/big-{'graph' if 'graph' in path else 'grid'}.png")
            # Scrolling the grid: draw one frame at the bottom.
            b.go(f"{a.big_base}/dags/big?runs=100")
            b.wait("the big grid", "return window.gustRenderMs")
            frame = b.js("const g = gustView; const t = performance.now();"
                         "g.wrap.scrollTop = g.wrap.scrollHeight; g.draw(); return performance.now() - t")
            print(f"  one grid frame after scrolling to the bottom: {frame:.1f} ms")
        print("browser test passed")
    finally:
        b.close()


if __name__ == "__main__":
    try:
        main()
    except (RuntimeError, AssertionError) as err:
        print(f"browser test failed: {err}", file=sys.stderr)
        sys.exit(1)
