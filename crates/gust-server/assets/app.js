// Gust's web UI: shared helpers and the DAG list, run and task-instance pages. Plain JS, no
// build step. Every change goes through the REST API (/api/v2) with the session's CSRF token;
// everything shown is set with textContent (or escaped), never parsed as HTML.
"use strict";

const Gust = (() => {
  const CODES = {
    n: "none", c: "scheduled", q: "queued", r: "running", s: "success", f: "failed",
    u: "up_for_retry", h: "up_for_reschedule", k: "skipped", p: "upstream_failed", x: "removed", "-": "",
  };
  const COLOURS = {
    success: "#008000", failed: "#d50000", running: "#32cd32", queued: "#808080",
    up_for_retry: "#ffd700", up_for_reschedule: "#40e0d0", upstream_failed: "#ffa500", skipped: "#ff69b4",
    scheduled: "#d2b48c", removed: "#d3d3d3", none: "#ffffff", "": "#f3f4f6",
  };
  const csrf = () => document.querySelector('meta[name="csrf-token"]')?.content || "";
  const canEdit = () => document.body.dataset.canEdit === "true";

  function escapeHtml(text) {
    return String(text).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
  }

  /** An element with attributes and children (strings become text nodes). */
  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") node.className = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : v);
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  /** The one line an API error body says. */
  function errorText(status, body) {
    if (body && typeof body.detail === "string") return body.detail;
    if (body && Array.isArray(body.detail)) return body.detail.map((d) => d.msg).join("; ");
    return `HTTP ${status}`;
  }

  /** Calls the server; resolves to the JSON body, rejects with its one-line error. */
  async function api(method, url, body) {
    const headers = { Accept: "application/json" };
    if (method !== "GET") headers["X-CSRF-Token"] = csrf();
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(url, {
      method, headers, credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (response.status === 401) {
      location.href = "/login?next=" + encodeURIComponent(location.pathname + location.search);
      throw new Error("Signed out");
    }
    const text = await response.text();
    let json = null;
    try { json = text ? JSON.parse(text) : null; } catch (_) { /* not JSON */ }
    if (!response.ok) throw new Error(errorText(response.status, json));
    return json;
  }

  let toastTimer = null;
  function toast(message, bad = false) {
    const box = document.getElementById("toast");
    box.textContent = message;
    box.className = bad ? "toast bad" : "toast";
    box.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { box.hidden = true; }, bad ? 8000 : 3500);
  }

  /** Follows a UI event stream; `handlers` by event name. Shows whether it is connected. */
  function follow(url, handlers, onOpen) {
    const source = new EventSource(url);
    const badge = document.getElementById("live");
    source.addEventListener("open", () => { badge?.classList.remove("off"); onOpen?.(); });
    source.addEventListener("error", () => badge?.classList.add("off"));
    source.addEventListener("reload", () => { source.close(); setTimeout(() => location.reload(), 300); });
    for (const [name, handler] of Object.entries(handlers)) {
      source.addEventListener(name, (e) => handler(JSON.parse(e.data)));
    }
    window.addEventListener("beforeunload", () => source.close());
    return source;
  }

  function fmtDate(iso) {
    if (!iso) return "";
    const d = new Date(iso);
    const pad = (n) => String(n).padStart(2, "0");
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }

  function fmtDuration(seconds) {
    if (seconds === null || seconds === undefined) return "";
    if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 2 : 1)} s`;
    const m = Math.floor(seconds / 60), s = Math.round(seconds % 60);
    if (m < 60) return `${m}m ${s}s`;
    return `${Math.floor(m / 60)}h ${m % 60}m`;
  }

  function badge(state) {
    return el("span", { class: `badge s-${state || "none"}` }, state || "none");
  }

  function setBadge(node, state) {
    node.className = `badge s-${state || "none"}`;
    node.textContent = state || "none";
  }

  const path = (...parts) => parts.map(encodeURIComponent).join("/");

  // -------------------------------------------------------------------------------------------
  // The DAG list.

  function dagsPage() {
    const rows = new Map();
    const body = document.getElementById("dag-rows");
    const search = document.getElementById("search");
    const tagFilter = document.getElementById("tag-filter");
    let paused = "all";
    let errors = [];

    const saved = JSON.parse(sessionStorage.getItem("gust.dagFilters") || "{}");
    search.value = saved.search || "";
    paused = saved.paused || "all";

    function render() {
      const q = search.value.trim().toLowerCase();
      const tag = tagFilter.value;
      sessionStorage.setItem("gust.dagFilters", JSON.stringify({ search: search.value, paused, tag }));
      const shown = [...rows.values()]
        .filter((d) => !q || d.dag_id.toLowerCase().includes(q) || (d.description || "").toLowerCase().includes(q))
        .filter((d) => !tag || d.tags.includes(tag))
        .filter((d) => paused === "all" || (paused === "paused") === d.is_paused)
        .sort((a, b) => a.dag_id.localeCompare(b.dag_id));
      const tableRows = shown.map((d) => {
        const toggle = canEdit()
          ? el("label", { class: "switch", title: d.is_paused ? "Paused: click to unpause" : "Active: click to pause" },
            el("input", { type: "checkbox", checked: !d.is_paused, "data-dag": d.dag_id, onchange: (e) => setPaused(d.dag_id, !e.target.checked, e.target) }),
            el("span"))
          : el("span", { class: `pill ${d.is_paused ? "paused" : "active"}` }, d.is_paused ? "paused" : "active");
        const runs = d.recent_runs.map((r) => ({ ...r, dag_id: d.dag_id }));
        const bars = el("div", { class: "runs" }, runs.slice().reverse().map((r) =>
          el("a", {
            href: `/dags/${path(d.dag_id)}/runs/${path(r.run_id)}`, class: `s-${r.state}`,
            title: `${r.run_id}\n${r.state}\n${fmtDate(r.logical_date)}`,
          })));
        return el("tr", { "data-dag": d.dag_id },
          el("td", { class: "narrow" }, toggle),
          el("td", {},
            el("a", { class: "dag-id", href: `/dags/${path(d.dag_id)}` }, d.dag_id),
            d.has_import_errors ? el("span", { class: "error", title: "its file has import errors" }, " ⚠") : null,
            el("div", { class: "sub" },
              d.tags.map((t) => el("span", { class: "tag", onclick: () => { tagFilter.value = t; render(); } }, t)),
              d.description ? ` ${d.description}` : "", ` · ${d.tasks} tasks · ${d.owners.join(", ")}`)),
          el("td", {}, el("code", {}, d.schedule)),
          el("td", {}, d.is_paused ? el("span", { class: "muted" }, fmtDate(d.next_run)) : fmtDate(d.next_run)),
          el("td", {}, bars),
          el("td", { class: "narrow" }, canEdit()
            ? el("button", { title: "Trigger with the default configuration", class: "trigger", "data-dag": d.dag_id, onclick: () => trigger(d.dag_id) }, "▶")
            : null));
      });
      body.replaceChildren(...(tableRows.length ? tableRows
        : [el("tr", {}, el("td", { colspan: 6, class: "empty" }, rows.size ? "No DAG matches." : "No DAGs yet: put DAG files in the DAGs folder."))]));
      renderErrors();
    }

    function renderTags() {
      const tags = new Set();
      for (const d of rows.values()) d.tags.forEach((t) => tags.add(t));
      const current = tagFilter.value || saved.tag || "";
      tagFilter.replaceChildren(el("option", { value: "" }, "All tags"),
        ...[...tags].sort().map((t) => el("option", { value: t }, t)));
      tagFilter.value = tags.has(current) ? current : "";
    }

    function renderErrors() {
      const box = document.getElementById("import-errors");
      if (!errors.length) { box.replaceChildren(); return; }
      box.replaceChildren(el("details", { class: "banner", open: errors.length <= 3 },
        el("summary", {}, `${errors.length} DAG file${errors.length > 1 ? "s" : ""} could not be loaded`),
        errors.map((e) => el("pre", {}, e.problems.join("\n") || e.file))));
    }

    async function setPaused(dagId, isPaused, input) {
      try {
        await api("PATCH", `/api/v2/dags/${path(dagId)}`, { is_paused: isPaused });
        rows.get(dagId).is_paused = isPaused;
        toast(`${dagId} ${isPaused ? "paused" : "unpaused"}`);
      } catch (e) {
        input.checked = !input.checked;
        toast(e.message, true);
      }
    }

    async function trigger(dagId) {
      try {
        const run = await api("POST", `/api/v2/dags/${path(dagId)}/dagRuns`, { logical_date: null, conf: {} });
        toast(`Triggered ${dagId}: ${run.dag_run_id}`);
      } catch (e) { toast(e.message, true); }
    }

    for (const button of document.querySelectorAll("#paused-filter button")) {
      button.classList.toggle("on", button.dataset.v === paused);
      button.addEventListener("click", () => {
        paused = button.dataset.v;
        document.querySelectorAll("#paused-filter button").forEach((b) => b.classList.toggle("on", b === button));
        render();
      });
    }
    search.addEventListener("input", render);
    tagFilter.addEventListener("change", render);

    follow("/ui/events/dags", {
      dags: (update) => {
        for (const d of update.changed) rows.set(d.dag_id, d);
        for (const id of update.removed) rows.delete(id);
        if (update.import_errors) errors = update.import_errors;
        renderTags();
        render();
      },
    }, async () => {
      if (rows.size) return;
      const start = performance.now();
      const data = await api("GET", "/ui/api/dags");
      for (const d of data.dags) rows.set(d.dag_id, d);
      errors = data.import_errors;
      renderTags();
      render();
      window.gustRenderMs = performance.now() - start;
      window.gustDrawnAt = performance.now();
    });
  }

  // -------------------------------------------------------------------------------------------
  // The DAG page: grid or graph, trigger, pause.

  function dagPage() {
    const view = document.getElementById("view");
    const dagId = view.dataset.dag;
    const runs = Number(view.dataset.runs);
    const toggle = document.getElementById("pause-toggle");
    toggle?.addEventListener("change", async () => {
      try {
        await api("PATCH", `/api/v2/dags/${path(dagId)}`, { is_paused: !toggle.checked });
        toast(`${dagId} ${toggle.checked ? "unpaused" : "paused"}`);
      } catch (e) { toggle.checked = !toggle.checked; toast(e.message, true); }
    });
    document.getElementById("runs-select").addEventListener("change", (e) => {
      const url = new URL(location.href);
      url.searchParams.set("runs", e.target.value);
      location.href = url.toString();
    });
    const dialog = document.getElementById("trigger-dialog");
    document.getElementById("trigger-open")?.addEventListener("click", () => {
      document.getElementById("trigger-error").hidden = true;
      dialog.showModal();
    });
    document.getElementById("trigger-submit")?.addEventListener("click", async (event) => {
      event.preventDefault();
      const error = document.getElementById("trigger-error");
      let conf;
      try {
        conf = JSON.parse(document.getElementById("trigger-conf").value || "{}");
        if (conf === null || typeof conf !== "object" || Array.isArray(conf)) throw new Error("the configuration must be a JSON object");
      } catch (e) {
        error.textContent = `Invalid JSON: ${e.message}`;
        error.hidden = false;
        return;
      }
      try {
        const run = await api("POST", `/api/v2/dags/${path(dagId)}/dagRuns`, { logical_date: null, conf });
        dialog.close();
        toast(`Triggered: ${run.dag_run_id}`);
      } catch (e) {
        error.textContent = e.message;
        error.hidden = false;
      }
    });

    const url = `/ui/api/dags/${path(dagId)}/grid?runs=${runs}`;
    const target = view.dataset.tab === "graph"
      ? new GustGraph(document.getElementById("graph"), dagId)
      : new GustGrid(document.getElementById("grid"), dagId);
    window.gustView = target;
    let loaded = false;
    let pending = [];
    follow(`/ui/events/dags/${path(dagId)}/grid?runs=${runs}`, {
      grid: (update) => {
        if (toggle && update.is_paused !== undefined) toggle.checked = !update.is_paused;
        if (loaded) target.update(update); else pending.push(update);
      },
    }, async () => {
      if (loaded) return;
      const start = performance.now();
      const data = await api("GET", url);
      await target.load(data);
      loaded = true;
      pending.forEach((u) => target.update(u));
      pending = [];
      const ms = performance.now() - start;
      window.gustRenderMs = ms;
      window.gustDrawnAt = performance.now();
      const note = document.getElementById("render-time");
      if (note) note.textContent = `${data.tasks.length} tasks × ${data.runs.length} runs: read and drawn in ${ms.toFixed(0)} ms`;
    });
  }

  // -------------------------------------------------------------------------------------------
  // A run: its task instances, live.

  function runPage() {
    const view = document.getElementById("run-view");
    const dagId = view.dataset.dag, runId = view.dataset.run;
    const body = document.getElementById("run-tasks");
    let tasks = [];
    let codes = "";
    function render() {
      body.replaceChildren(...tasks.map((t, i) => {
        const state = CODES[codes[i] || "-"] || "none";
        return el("tr", {},
          el("td", {}, el("a", { href: `/dags/${path(dagId)}/runs/${path(runId)}/tasks/${path(t.id)}` }, t.id)),
          el("td", {}, badge(state)));
      }));
    }
    function apply(update) {
      if (update.runs && update.runs[0]) setBadge(document.getElementById("run-state"), update.runs[0].state);
      if (update.cells && update.cells[runId] !== undefined) codes = update.cells[runId];
      render();
    }
    const runUrl = `/api/v2/dags/${path(dagId)}/dagRuns/${path(runId)}`;
    async function act(label, method, url, body) {
      try {
        await api(method, url, body);
        toast(label);
      } catch (e) { toast(e.message, true); }
    }
    document.getElementById("clear-run")?.addEventListener("click", () => {
      if (!confirm(`Clear every task of ${runId}? They will all run again.`)) return;
      act(`Cleared ${runId}`, "POST", `${runUrl}/clear`, { dry_run: false, only_failed: false });
    });
    for (const [id, state] of [["mark-run-success", "success"], ["mark-run-failed", "failed"]]) {
      document.getElementById(id)?.addEventListener("click", () =>
        act(`Marked ${runId} ${state}`, "PATCH", runUrl, { state }));
    }

    let loaded = false;
    follow(`/ui/events/dags/${path(dagId)}/grid?run_id=${encodeURIComponent(runId)}`, { grid: (u) => loaded && apply(u) }, async () => {
      if (loaded) return;
      const data = await api("GET", `/ui/api/dags/${path(dagId)}/grid?run_id=${encodeURIComponent(runId)}`);
      tasks = data.tasks;
      loaded = true;
      apply({ runs: data.runs, cells: { [runId]: data.cells[0] || "" } });
    });
  }

  // -------------------------------------------------------------------------------------------
  // A task instance: tries, arguments, XComs, the log tailing live.

  function taskPage() {
    const view = document.getElementById("ti-view");
    const dagId = view.dataset.dag, runId = view.dataset.run, taskId = view.dataset.task;
    const base = `/dags/${path(dagId)}/runs/${path(runId)}/tasks/${path(taskId)}`;
    const logBox = document.getElementById("log");
    const trySelect = document.getElementById("log-try");
    const follow_ = document.getElementById("log-follow");
    let ti = null;
    let shownTry = null;
    let logOffset = null;
    let logTimer = null;

    function render() {
      setBadge(document.getElementById("ti-state"), ti.state);
      document.getElementById("tries").replaceChildren(...(ti.tries.length ? ti.tries.map((t) => el("tr", {},
        el("td", {}, String(t.try_number)), el("td", {}, badge(t.state)), el("td", {}, fmtDate(t.queued_at)),
        el("td", {}, fmtDate(t.start_date)), el("td", {}, fmtDate(t.end_date)), el("td", {}, fmtDuration(t.duration)),
        el("td", { class: "error" }, t.failure || "")))
        : [el("tr", {}, el("td", { colspan: 7, class: "empty" }, "No tries yet."))]));
      const numbers = ti.tries.map((t) => t.try_number);
      if (trySelect.options.length !== numbers.length) {
        trySelect.replaceChildren(...numbers.map((n) => el("option", { value: n }, `Try ${n}`)));
        if (numbers.length) { trySelect.value = String(numbers[numbers.length - 1]); showLog(Number(trySelect.value)); }
      }
      const current = ti.tries.find((t) => t.try_number === Number(trySelect.value)) || ti.tries[ti.tries.length - 1];
      document.getElementById("rendered").textContent = current && current.rendered_args
        ? JSON.stringify(current.rendered_args, null, 2) : "Not rendered yet.";
      const pod = current && current.pod_manifest;
      document.getElementById("pod-card").hidden = !pod;
      if (pod) document.getElementById("pod-manifest").textContent = pod.yaml || `Cannot show the pod: ${pod.error}`;
      const art = current && current.artifacts;
      document.getElementById("artifacts-card").hidden = !art;
      if (art) {
        const row = (kind, a) => el("tr", {}, el("td", { class: "muted" }, kind), el("td", {}, a.name),
          el("td", {}, a.uri ? el("code", {}, a.uri) : el("span", { class: "muted" }, "once the step succeeds")));
        const rows = art.error ? [el("tr", {}, el("td", { colspan: 3, class: "error" }, `Cannot show them: ${art.error}`))]
          : [...art.inputs.map((a) => row("input", a)), ...art.outputs.map((a) => row("output", a))];
        document.getElementById("artifacts").replaceChildren(...(rows.length ? rows
          : [el("tr", {}, el("td", { colspan: 3, class: "empty" }, "No inputs or outputs."))]));
      }
      document.getElementById("xcoms").replaceChildren(...(ti.xcoms.length ? ti.xcoms.map((x) => el("tr", {},
        el("td", {}, x.key), el("td", {}, el("code", {}, JSON.stringify(x.value)))))
        : [el("tr", {}, el("td", { colspan: 2, class: "empty" }, "No XComs."))]));
      for (const id of ["clear-task", "mark-success", "mark-failed"]) {
        const b = document.getElementById(id);
        if (b) b.disabled = false;
      }
    }

    function tryRunning(number) {
      const t = ti && ti.tries.find((x) => x.try_number === number);
      return t && (t.state === "queued" || t.state === "running");
    }

    let logBusy = false, logAgain = false;
    /** Reads the log's next chunk; one read at a time (a call during a read asks for another). */
    async function pollLog() {
      if (logBusy) { logAgain = true; return; }
      clearTimeout(logTimer);
      const number = shownTry;
      if (number === null) return;
      logBusy = true;
      let next = null;
      try {
        const q = logOffset === null ? "" : `?offset=${logOffset}`;
        const chunk = await api("GET", `/ui/api${base}/logs/${number}${q}`);
        if (number === shownTry) {
          if (logOffset === null) logBox.textContent = chunk.exists ? "" : "No log yet.";
          if (chunk.text) {
            logBox.append(document.createTextNode(chunk.text));
            if (follow_.checked) logBox.scrollTop = logBox.scrollHeight;
          }
          if (chunk.exists) logOffset = chunk.offset;
          const more = chunk.exists && chunk.offset < chunk.size;
          if (more || tryRunning(number) || !chunk.exists) next = more ? 50 : 1000;
        }
      } catch (e) {
        logBox.textContent = e.message;
      } finally {
        logBusy = false;
      }
      if (logAgain) { logAgain = false; pollLog(); } else if (next !== null) logTimer = setTimeout(pollLog, next);
    }

    function showLog(number) {
      shownTry = number;
      logOffset = null;
      logBox.textContent = "Loading…";
      pollLog();
    }

    trySelect.addEventListener("change", () => { showLog(Number(trySelect.value)); render(); });

    async function act(label, method, url, body) {
      try {
        await api(method, url, body);
        toast(label);
      } catch (e) { toast(e.message, true); }
    }
    document.getElementById("clear-task")?.addEventListener("click", () => {
      if (!confirm(`Clear ${taskId} and its downstream tasks in ${runId}? They will run again.`)) return;
      act(`Cleared ${taskId} and its downstream`, "POST", `/api/v2/dags/${path(dagId)}/clearTaskInstances`,
        { dag_run_id: runId, task_ids: [taskId], include_downstream: true, only_failed: false, dry_run: false });
    });
    for (const [id, state] of [["mark-success", "success"], ["mark-failed", "failed"]]) {
      document.getElementById(id)?.addEventListener("click", () =>
        act(`Marked ${taskId} ${state}`, "PATCH", `/api/v2/dags/${path(dagId)}/dagRuns/${path(runId)}/taskInstances/${path(taskId)}`, { new_state: state }));
    }

    follow(`/ui/events${base}`, {
      ti: (data) => {
        const before = ti && ti.tries.find((t) => t.try_number === shownTry)?.state;
        ti = data;
        render();
        const after = ti.tries.find((t) => t.try_number === shownTry)?.state;
        // A try that starts or ends: read the log now (its last lines, or its first).
        if (shownTry !== null && before !== after) pollLog();
      },
    });
  }

  return { CODES, COLOURS, api, el, toast, follow, fmtDate, fmtDuration, escapeHtml, path, dagsPage, dagPage, runPage, taskPage };
})();

// Each page names its script in <body data-page>; pages carry no inline script, so the
// Content-Security-Policy can forbid it.
document.addEventListener("DOMContentLoaded", () => {
  const start = { dags: Gust.dagsPage, dag: Gust.dagPage, run: Gust.runPage, task: Gust.taskPage }[document.body.dataset.page];
  if (start) start();
});
