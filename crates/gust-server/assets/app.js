// Gust's web UI: shared helpers and the DAG list, run and task-instance pages. Plain JS, no
// build step. Every change goes through the REST API (/api/v2) with the session's CSRF token;
// everything shown is set with textContent (or escaped), never parsed as HTML.
"use strict";

const Gust = (() => {
  const CODES = {
    n: "none", c: "scheduled", q: "queued", r: "running", s: "success", f: "failed",
    u: "up_for_retry", h: "up_for_reschedule", d: "deferred", k: "skipped", p: "upstream_failed", x: "removed", "-": "",
  };
  const COLOURS = {
    success: "#008000", failed: "#d50000", running: "#32cd32", queued: "#808080",
    up_for_retry: "#ffd700", up_for_reschedule: "#40e0d0", deferred: "#9370db", upstream_failed: "#ffa500", skipped: "#ff69b4",
    scheduled: "#d2b48c", removed: "#d3d3d3", none: "#ffffff", "": "#f3f4f6",
  };
  /**
   * The text colour readable on `fill` (a `#rrggbb` state colour): black or white, whichever
   * contrasts more (WCAG's relative luminance), so every state's label passes AA.
   */
  function inkOn(fill) {
    const channel = (hex) => {
      const c = parseInt(hex, 16) / 255;
      return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
    };
    const m = /^#([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/i.exec(fill || "");
    if (!m) return "#000000";
    const l = 0.2126 * channel(m[1]) + 0.7152 * channel(m[2]) + 0.0722 * channel(m[3]);
    // Contrast with black is (l + 0.05) / 0.05, with white 1.05 / (l + 0.05).
    return (l + 0.05) / 0.05 >= 1.05 / (l + 0.05) ? "#000000" : "#ffffff";
  }
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

  /**
   * The timezone times are shown in, as chosen in the header (Airflow's selector): `UTC` (the
   * default, as Airflow's `default_ui_timezone`), `local` (the browser's) or `dag` (the DAG's
   * own, on a DAG's pages; UTC elsewhere). The choice is kept in the browser.
   */
  const TZ_KEY = "gust.timezone";
  const localZone = () => Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
  const dagZone = () => document.body.dataset.dagTimezone || "";
  function zoneChoice() {
    const choice = localStorage.getItem(TZ_KEY);
    return choice === "local" || choice === "dag" ? choice : "UTC";
  }
  function zone() {
    const choice = zoneChoice();
    if (choice === "local") return localZone();
    if (choice === "dag" && dagZone()) return dagZone();
    return "UTC";
  }

  /** `2026-01-02 03:04:05 UTC`: a time in the chosen timezone, always labelled with it. */
  function fmtDate(iso) {
    if (!iso) return "";
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return String(iso);
    const tz = zone();
    const parts = {};
    for (const p of new Intl.DateTimeFormat("en-US", {
      timeZone: tz, hourCycle: "h23", year: "numeric", month: "2-digit", day: "2-digit",
      hour: "2-digit", minute: "2-digit", second: "2-digit", timeZoneName: "short",
    }).formatToParts(d)) parts[p.type] = p.value;
    const label = tz === "UTC" ? "UTC" : parts.timeZoneName;
    return `${parts.year}-${parts.month}-${parts.day} ${parts.hour}:${parts.minute}:${parts.second} ${label}`;
  }

  /** Fills the header's timezone selector and shows every server-rendered `<time>` in the zone. */
  function setUpTimezones() {
    for (const t of document.querySelectorAll("time[datetime]")) t.textContent = fmtDate(t.getAttribute("datetime"));
    const select = document.getElementById("tz-select");
    if (!select) return;
    const options = [["UTC", "UTC"], ["local", `Local (${localZone()})`]];
    if (dagZone()) options.push(["dag", `DAG's (${dagZone()})`]);
    select.replaceChildren(...options.map(([value, label]) => el("option", { value }, label)));
    const choice = zoneChoice();
    select.value = choice === "dag" && !dagZone() ? "UTC" : choice;
    select.addEventListener("change", () => {
      localStorage.setItem(TZ_KEY, select.value);
      // Every time on the page (and in the live views' next updates) is drawn again.
      location.reload();
    });
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

  /**
   * Tails a try's log into `box`: reads it in chunks from where the last ended (starting near
   * its end), every second while `running()` says the try runs (or until the log exists), at
   * once while more is waiting; one read at a time. `show(url, running)` starts on a log,
   * `poll()` reads now, `stop()` stops.
   */
  function logTail(box, followBox) {
    let url = null, offset = null, timer = null, busy = false, again = false, gen = 0;
    let running = () => false;
    async function poll() {
      if (busy) { again = true; return; }
      clearTimeout(timer);
      if (url === null) return;
      const mine = gen, at = url;
      busy = true;
      let next = null;
      try {
        const sep = at.includes("?") ? "&" : "?";
        const chunk = await api("GET", offset === null ? at : `${at}${sep}offset=${offset}`);
        if (mine === gen) {
          if (offset === null) box.textContent = chunk.exists ? "" : "No log yet.";
          if (chunk.text) {
            box.append(document.createTextNode(chunk.text));
            if (!followBox || followBox.checked) box.scrollTop = box.scrollHeight;
          }
          if (chunk.exists) offset = chunk.offset;
          const more = chunk.exists && chunk.offset < chunk.size;
          if (more || running() || !chunk.exists) next = more ? 50 : 1000;
        }
      } catch (e) {
        if (mine === gen) box.textContent = e.message;
      } finally {
        busy = false;
      }
      if (again) { again = false; poll(); } else if (next !== null && mine === gen) timer = setTimeout(poll, next);
    }
    return {
      show(newUrl, isRunning) {
        gen++;
        clearTimeout(timer);
        url = newUrl; offset = null; running = isRunning;
        box.textContent = "Loading…";
        poll();
      },
      poll,
      stop() { gen++; clearTimeout(timer); url = null; },
    };
  }

  const path = (...parts) => parts.map(encodeURIComponent).join("/");

  /** "1 run", "2 runs". */
  const plural = (n, word, many = `${word}s`) => `${n} ${n === 1 ? word : many}`;

  /**
   * The confirmation dialog of a change (clear, mark): its options, the task instances it would
   * change (the API's dry run, read again whenever an option changes), and Confirm. Nothing
   * changes before Confirm.
   *
   * spec: { title, what, verb ("will be cleared"), options: [{ key, label, checked }],
   *         preview: async (options) => [{ run_id, task_id, state, becomes }],
   *         commit: async (options, rows) => the toast's message }
   */
  let actionSeq = 0;
  function confirmAction(spec) {
    const dialog = document.getElementById("action-dialog");
    const summary = document.getElementById("action-summary");
    const rowsBox = document.getElementById("action-affected");
    const error = document.getElementById("action-error");
    const confirmButton = document.getElementById("action-confirm");
    const options = {};
    let rows = [];
    document.getElementById("action-title").textContent = spec.title;
    document.getElementById("action-what").textContent = spec.what;
    const box = document.getElementById("action-options");
    box.replaceChildren(...spec.options.map((o) => {
      options[o.key] = Boolean(o.checked);
      return el("label", {}, el("input", {
        type: "checkbox", checked: Boolean(o.checked), "data-option": o.key,
        onchange: (e) => { options[o.key] = e.target.checked; refresh(); },
      }), o.label);
    }));
    box.hidden = spec.options.length === 0;

    async function refresh() {
      const mine = ++actionSeq;
      confirmButton.disabled = true;
      error.hidden = true;
      summary.textContent = "Reading what would change…";
      rowsBox.replaceChildren();
      try {
        const found = await spec.preview({ ...options });
        if (mine !== actionSeq) return;
        rows = found;
        rowsBox.replaceChildren(...(rows.length ? rows.map((r) => el("tr", { "data-run": r.run_id, "data-task": r.task_id },
          el("td", {}, r.run_id), el("td", {}, r.task_id), el("td", {}, badge(r.state)),
          el("td", {}, CODES_BY_STATE.has(r.becomes) ? badge(r.becomes) : r.becomes)))
          : [el("tr", {}, el("td", { colspan: 4, class: "empty" }, "No task instance would change."))]));
        // A run's mark changes the run even when no task instance changes.
        const runChanges = Boolean(spec.also && spec.options.length === 0);
        summary.textContent = rows.length
          ? `${plural(rows.length, "task instance")} ${spec.verb}${spec.also ? `; ${spec.also}` : ""}.`
          : runChanges ? `No task instance changes; ${spec.also}.` : "Nothing to do with these options.";
        confirmButton.disabled = rows.length === 0 && !runChanges;
      } catch (e) {
        if (mine !== actionSeq) return;
        summary.textContent = "";
        error.textContent = e.message;
        error.hidden = false;
      }
    }

    confirmButton.onclick = async (event) => {
      event.preventDefault();
      confirmButton.disabled = true;
      try {
        const message = await spec.commit({ ...options }, rows);
        actionSeq++;
        dialog.close();
        toast(message);
      } catch (e) {
        error.textContent = e.message;
        error.hidden = false;
        confirmButton.disabled = false;
      }
    };
    dialog.onclose = () => { actionSeq++; };
    dialog.showModal();
    refresh();
  }
  const CODES_BY_STATE = new Set(Object.values(CODES).filter(Boolean));

  /** What a dialog calls a task instance: a mapped one by its task and map index. */
  const instanceName = (taskId, mapIndex) => (mapIndex >= 0 ? `${taskId}[${mapIndex}]` : taskId);

  /** A task instance of an API answer as a row of the dialog. */
  const affected = (ti, becomes) => ({ run_id: ti.dag_run_id, task_id: instanceName(ti.task_id, ti.map_index ?? -1), state: ti.state || "none", becomes });

  /**
   * Opens the dialog that marks a task instance (and the relatives chosen) `state`; a mapped
   * instance is named by its `mapIndex` (left out, or -1: the task instance that is not mapped).
   */
  function markTask(dagId, runId, taskId, state, mapIndex = -1) {
    const name = instanceName(taskId, mapIndex);
    // Past and future reach the runs before and after this one that the API picks as Airflow
    // does (those on the DAG's schedule).
    const body = (o) => ({
      new_state: state, include_past: o.past, include_future: o.future,
      include_upstream: o.upstream, include_downstream: o.downstream,
    });
    const instance = `${path(taskId)}${mapIndex >= 0 ? `/${mapIndex}` : ""}`;
    const url = `/api/v2/dags/${path(dagId)}/dagRuns/${path(runId)}/taskInstances/${instance}`;
    confirmAction({
      title: `Mark ${name} ${state}`,
      what: `Sets the state of ${name} in ${runId}, and of the task instances the options add, to ${state}. Nothing changes until you confirm.`,
      verb: `will be marked ${state}`,
      options: [
        { key: "past", label: "Past" }, { key: "future", label: "Future" },
        { key: "upstream", label: "Upstream" }, { key: "downstream", label: "Downstream" },
      ],
      preview: async (o) => {
        const answer = await api("PATCH", `${url}/dry_run`, body(o));
        return answer.task_instances.map((ti) => affected(ti, state));
      },
      commit: async (o, rows) => {
        await api("PATCH", url, body(o));
        return `Marked ${plural(rows.length, "task instance")} ${state}`;
      },
    });
  }

  /** Opens the dialog that clears a task instance (and the relatives chosen); `mapIndex` as above. */
  function clearTask(dagId, runId, taskId, mapIndex = -1) {
    const name = instanceName(taskId, mapIndex);
    // Airflow's API names one instance of a mapped task as a [task_id, map_index] pair.
    const task = mapIndex >= 0 ? [taskId, mapIndex] : taskId;
    const body = (o, dryRun) => ({
      dag_run_id: runId, task_ids: [task], dry_run: dryRun, only_failed: o.only_failed,
      include_past: o.past, include_future: o.future, include_upstream: o.upstream, include_downstream: o.downstream,
    });
    const url = `/api/v2/dags/${path(dagId)}/clearTaskInstances`;
    confirmAction({
      title: `Clear ${name}`,
      what: `Clears ${name} in ${runId}, and the task instances the options add, so they run again. Nothing changes until you confirm.`,
      verb: "will be cleared and run again",
      options: [
        { key: "past", label: "Past" }, { key: "future", label: "Future" },
        { key: "upstream", label: "Upstream" }, { key: "downstream", label: "Downstream", checked: true },
        { key: "only_failed", label: "Only failed" },
      ],
      preview: async (o) => (await api("POST", url, body(o, true))).task_instances.map((ti) => affected(ti, "runs again")),
      commit: async (o) => {
        const answer = await api("POST", url, body(o, false));
        return `Cleared ${plural(answer.total_entries ?? answer.task_instances.length, "task instance")}`;
      },
    });
  }

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
              [d.description, plural(d.tasks, "task")].filter(Boolean).join(" · "))),
          el("td", { class: "owners" }, d.owners.join(", ")),
          el("td", {}, el("code", {}, d.schedule)),
          el("td", { class: "last-run" }, lastRun(d)),
          el("td", { class: "next-run" }, nextRun(d)),
          el("td", {}, bars),
          el("td", { class: "narrow" }, canEdit()
            ? el("button", { title: "Run now, with the default configuration", class: "trigger", "data-dag": d.dag_id, onclick: () => trigger(d.dag_id) }, "▶ Run")
            : null));
      });
      body.replaceChildren(...(tableRows.length ? tableRows
        : [el("tr", {}, el("td", { colspan: 8, class: "empty" }, rows.size ? "No DAG matches." : "No DAGs yet: put DAG files in the DAGs folder."))]));
      renderErrors();
    }

    /** The latest run: its state and when it started (or its logical date, before it starts). */
    function lastRun(d) {
      const r = d.recent_runs[0];
      if (!r) return el("span", { class: "muted" }, "never");
      return el("a", { href: `/dags/${path(d.dag_id)}/runs/${path(r.run_id)}`, title: r.run_id },
        badge(r.state), " ", fmtDate(r.start_date || r.logical_date));
    }

    /** The next scheduled run: when it starts (its data interval's end), and its logical date. */
    function nextRun(d) {
      if (!d.next_run) return "";
      const after = d.next_run_after ? new Date(d.next_run_after) : null;
      const starts = after && after > new Date() ? `starts ${fmtDate(d.next_run_after)}` : "due now";
      return el("div", { class: d.is_paused ? "muted" : "", title: d.is_paused ? "The DAG is paused: no run starts until it is unpaused" : "" },
        el("div", {}, starts), el("div", { class: "sub" }, `logical date ${fmtDate(d.next_run)}`));
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
  // The DAG page's Runs tab: its runs, newest first, filtered by state, type and logical date
  // (dates are whole days in UTC), read from the REST API 50 at a time and again as runs move.

  /** The Code tab: the DAG file's text as stored for its latest version (`dagSources`). */
  async function codeTab(dagId) {
    const box = document.getElementById("code");
    try {
      const source = await api("GET", `/api/v2/dagSources/${path(dagId)}`);
      box.textContent = source.content ?? "";
      document.getElementById("code-version").textContent = source.version_number ? `version ${source.version_number}` : "";
      window.gustCodeShown = true;
    } catch (e) {
      box.textContent = e.message;
    }
  }

  function runList(dagId, gridRuns) {
    const form = document.getElementById("runs-filter");
    const rows = document.getElementById("runs-rows");
    const more = document.getElementById("runs-more");
    const PAGE = 50;
    let shown = PAGE;
    async function load() {
      const f = form.elements;
      const q = new URLSearchParams({ limit: String(shown), order_by: "-logical_date" });
      if (f.state.value) q.set("state", f.state.value);
      if (f.run_type.value) q.set("run_type", f.run_type.value);
      if (f.from.value) q.set("logical_date_gte", `${f.from.value}T00:00:00Z`);
      if (f.to.value) q.set("logical_date_lt", new Date(Date.parse(`${f.to.value}T00:00:00Z`) + 86400000).toISOString());
      const data = await api("GET", `/api/v2/dags/${path(dagId)}/dagRuns?${q}`);
      rows.replaceChildren(...data.dag_runs.map((r) => {
        return el("tr", {},
          el("td", {}, el("a", { href: `/dags/${path(dagId)}/runs/${path(r.dag_run_id)}` }, r.dag_run_id), " ",
            el("a", { class: "sub grid-link", title: "This run's column in the grid, with its details",
              href: `/dags/${path(dagId)}?tab=grid&runs=${gridRuns}&run_id=${encodeURIComponent(r.dag_run_id)}` }, "grid")),
          el("td", {}, badge(r.state)), el("td", {}, r.run_type), el("td", {}, fmtDate(r.logical_date)),
          el("td", {}, fmtDate(r.start_date)), el("td", {}, fmtDate(r.end_date)), el("td", {}, fmtDuration(r.duration)));
      }));
      const n = data.total_entries;
      document.getElementById("runs-count").textContent = `${plural(n, "run")} ${n === 1 ? "matches" : "match"}`;
      more.hidden = data.total_entries <= data.dag_runs.length;
    }
    const reload = () => load().catch((e) => toast(e.message, true));
    form.addEventListener("change", () => { shown = PAGE; reload(); });
    form.addEventListener("submit", (e) => e.preventDefault());
    more.addEventListener("click", () => { shown += PAGE; reload(); });
    let timer = null;
    follow(`/ui/events/dags/${path(dagId)}/grid?runs=1`, {
      grid: () => { if (!timer) timer = setTimeout(() => { timer = null; reload(); }, 1000); },
    }, reload);
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

    const tab = view.dataset.tab;
    if (tab === "runs") {
      runList(dagId, runs);
      return;
    }
    if (tab === "code") {
      codeTab(dagId);
      return;
    }
    if (tab === "details" || tab === "notifications") return;
    const url = `/ui/api/dags/${path(dagId)}/grid?runs=${runs}`;
    const target = tab === "graph" ? new GustGraph(document.getElementById("graph"), dagId)
      : tab === "gantt" ? new GustGantt(document.getElementById("gantt"), dagId)
        : new GustGrid(document.getElementById("grid"), dagId, new GustPanel(dagId, runs));
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
      // The time the first drawing took is debug output: shown only with `?debug` in the URL.
      const note = document.getElementById("render-time");
      if (note && new URLSearchParams(location.search).has("debug")) {
        note.textContent = `debug: first read and drawn in ${ms.toFixed(0)} ms`;
        note.hidden = false;
      }
    });
  }

  // -------------------------------------------------------------------------------------------
  // A run: its task instances, live.

  function runPage() {
    const view = document.getElementById("run-view");
    const dagId = view.dataset.dag, runId = view.dataset.run;
    const body = document.getElementById("run-tasks");
    // The run's column in the grid, its details open beside it.
    document.getElementById("run-grid-link").href = `/dags/${path(dagId)}?tab=grid&run_id=${encodeURIComponent(runId)}`;
    let tasks = [];
    let codes = "";
    // Operators, tries and times, read again (at most once a second) as the run moves.
    let details = new Map();
    let detailsTimer = null;
    const text = (id, value) => { document.getElementById(id).textContent = value || "—"; };
    async function loadDetails() {
      detailsTimer = null;
      const data = await api("GET", `/ui/api/dags/${path(dagId)}/runs/${path(runId)}/details`);
      details = new Map(data.instances.map((ti) => [ti.task_id, ti]));
      text("run-queued", fmtDate(data.run.queued_at));
      text("run-start", fmtDate(data.run.start_date));
      text("run-end", fmtDate(data.run.end_date));
      text("run-duration", fmtDuration(data.run.duration));
      render();
    }
    const reloadDetails = () => { if (!detailsTimer) detailsTimer = setTimeout(loadDetails, 1000); };
    function render() {
      body.replaceChildren(...tasks.map((t, i) => {
        const state = CODES[codes[i] || "-"] || "none";
        const ti = details.get(t.id) || {};
        // A mapped task's instances are listed in the grid's panel.
        const href = t.mapped
          ? `/dags/${path(dagId)}?tab=grid&run_id=${encodeURIComponent(runId)}&task_id=${encodeURIComponent(t.id)}&mapped=1`
          : `/dags/${path(dagId)}/runs/${path(runId)}/tasks/${path(t.id)}`;
        return el("tr", {},
          el("td", {}, el("a", { href }, t.mapped ? `${t.id} [ ]` : t.id)),
          el("td", {}, badge(state)), el("td", {}, ti.operator || ""), el("td", {}, String(ti.try_number ?? "")),
          el("td", {}, fmtDate(ti.start_date)), el("td", {}, fmtDate(ti.end_date)), el("td", {}, fmtDuration(ti.duration)));
      }));
    }
    function apply(update) {
      if (update.runs && update.runs[0]) setBadge(document.getElementById("run-state"), update.runs[0].state);
      if (update.cells && update.cells[runId] !== undefined) codes = update.cells[runId];
      render();
      reloadDetails();
    }
    const runUrl = `/api/v2/dags/${path(dagId)}/dagRuns/${path(runId)}`;
    document.getElementById("clear-run")?.addEventListener("click", () => confirmAction({
      title: `Clear ${runId}`,
      what: "Clears the run's task instances so they run again, and queues the run again. Nothing changes until you confirm.",
      verb: "will be cleared and run again",
      also: "the run becomes queued",
      options: [{ key: "only_failed", label: "Only failed" }],
      preview: async (o) => (await api("POST", `${runUrl}/clear`, { dry_run: true, only_failed: o.only_failed }))
        .task_instances.filter((ti) => ti.dag_run_id).map((ti) => affected(ti, "runs again")),
      commit: async (o) => {
        await api("POST", `${runUrl}/clear`, { dry_run: false, only_failed: o.only_failed });
        return `Cleared ${runId}`;
      },
    }));
    // Airflow 3's rules for marking a run success or failed: running task instances take the
    // state, those not finished are skipped, finished ones keep theirs.
    const runMove = (to, state) => (["running", "up_for_reschedule", "deferred"].includes(state) ? to
      : ["none", "scheduled", "queued", "up_for_retry"].includes(state) ? "skipped" : null);
    for (const [id, state] of [["mark-run-success", "success"], ["mark-run-failed", "failed"]]) {
      document.getElementById(id)?.addEventListener("click", () => confirmAction({
        title: `Mark ${runId} ${state}`,
        what: `Marks the run ${state}: its running task instances become ${state}, those not finished are skipped. Nothing changes until you confirm.`,
        verb: "will change",
        also: `the run becomes ${state}`,
        options: [],
        preview: async () => {
          const data = await api("GET", `/ui/api/dags/${path(dagId)}/grid?run_id=${encodeURIComponent(runId)}`);
          const now = data.cells[0] || "";
          return data.tasks.map((t, i) => ({ run_id: runId, task_id: t.id, state: CODES[now[i] || "-"] || "none" }))
            .map((r) => ({ ...r, becomes: runMove(state, r.state) }))
            .filter((r) => r.becomes);
        },
        commit: async () => {
          await api("PATCH", runUrl, { state });
          return `Marked ${runId} ${state}`;
        },
      }));
    }

    let loaded = false;
    follow(`/ui/events/dags/${path(dagId)}/grid?run_id=${encodeURIComponent(runId)}`, { grid: (u) => loaded && apply(u) }, async () => {
      if (loaded) return;
      const data = await api("GET", `/ui/api/dags/${path(dagId)}/grid?run_id=${encodeURIComponent(runId)}`);
      tasks = data.tasks;
      loaded = true;
      apply({ runs: data.runs, cells: { [runId]: data.cells[0] || "" } });
      await loadDetails();
    });
  }

  // -------------------------------------------------------------------------------------------
  // A task instance: tries, arguments, XComs, the log tailing live.

  function taskPage() {
    const view = document.getElementById("ti-view");
    const dagId = view.dataset.dag, runId = view.dataset.run, taskId = view.dataset.task;
    const base = `/dags/${path(dagId)}/runs/${path(runId)}/tasks/${path(taskId)}`;
    // One instance of a mapped task: every read names its map_index.
    const mapIndex = Number(view.dataset.mapIndex ?? -1);
    const mi = mapIndex >= 0 ? `map_index=${mapIndex}` : "";
    const logBox = document.getElementById("log");
    const trySelect = document.getElementById("log-try");
    const follow_ = document.getElementById("log-follow");
    let ti = null;
    let shownTry = null;

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

    const tail = logTail(logBox, follow_);
    function showLog(number) {
      shownTry = number;
      tail.show(`/ui/api${base}/logs/${number}${mi ? `?${mi}` : ""}`, () => tryRunning(number));
    }

    trySelect.addEventListener("change", () => { showLog(Number(trySelect.value)); render(); });

    document.getElementById("clear-task")?.addEventListener("click", () => clearTask(dagId, runId, taskId, mapIndex));
    for (const [id, state] of [["mark-success", "success"], ["mark-failed", "failed"]]) {
      document.getElementById(id)?.addEventListener("click", () =>
        markTask(dagId, runId, taskId, state, mapIndex));
    }

    follow(`/ui/events${base}${mi ? `?${mi}` : ""}`, {
      ti: (data) => {
        const before = ti && ti.tries.find((t) => t.try_number === shownTry)?.state;
        ti = data;
        render();
        const after = ti.tries.find((t) => t.try_number === shownTry)?.state;
        // A try that starts or ends: read the log now (its last lines, or its first).
        if (shownTry !== null && before !== after) tail.poll();
      },
    });
  }

  // -------------------------------------------------------------------------------------------
  // Variables, connections and pools: add, edit, delete through the API. Secrets are never in
  // the page: a masked value's (or a password's, an extra's) field starts blank, and left blank
  // it is not sent, so the stored secret is kept.

  /** The delete dialog: `what` names the thing; resolves once deleted. */
  function confirmDelete(title, what, url) {
    const dialog = document.getElementById("delete-dialog");
    const error = document.getElementById("delete-error");
    document.getElementById("delete-title").textContent = title;
    document.getElementById("delete-what").textContent = what;
    error.hidden = true;
    const button = document.getElementById("delete-confirm");
    button.disabled = false;
    button.onclick = async (event) => {
      event.preventDefault();
      button.disabled = true;
      try {
        await api("DELETE", url);
        dialog.close();
        toast(title.replace(/^Delete/, "Deleted").replace(/\?$/, ""));
        setTimeout(() => location.reload(), 400);
      } catch (e) {
        error.textContent = e.message;
        error.hidden = false;
        button.disabled = false;
      }
    };
    dialog.showModal();
  }

  /**
   * The edit dialog of a configuration page. `kind` says what to call it; `fill(form, row)`
   * fills the form from a row's data (row null: a new one); `save(form, row)` sends it.
   */
  function editor(kind, fill, save, onSaved = () => setTimeout(() => location.reload(), 400)) {
    const dialog = document.getElementById("edit-dialog");
    if (!dialog) return () => {};
    const form = document.getElementById("edit-form");
    const error = document.getElementById("edit-error");
    let current = null;
    document.getElementById("edit-save").addEventListener("click", async (event) => {
      if (!form.reportValidity()) return;
      event.preventDefault();
      error.hidden = true;
      try {
        await save(form, current);
        dialog.close();
        toast(`${current ? "Saved" : "Added"} ${kind} ${form.elements.key.value}`);
        onSaved();
      } catch (e) {
        error.textContent = e.message;
        error.hidden = false;
      }
    });
    return (row) => {
      current = row;
      form.reset();
      error.hidden = true;
      document.getElementById("edit-title").textContent = row ? `Edit ${kind} ${row.dataset.key}` : `Add ${kind}`;
      form.elements.key.readOnly = Boolean(row);
      fill(form, row);
      dialog.showModal();
    };
  }

  /** Wires the Add button and each row's Edit and Delete buttons. */
  function wireRows(open, deleteOf) {
    document.getElementById("add")?.addEventListener("click", () => open(null));
    document.getElementById("rows")?.addEventListener("click", (event) => {
      const row = event.target.closest("tr[data-key]");
      if (!row) return;
      if (event.target.classList.contains("edit")) open(row);
      if (event.target.classList.contains("delete")) deleteOf(row);
    });
  }

  const orNull = (text) => (text.trim() === "" ? null : text);

  function variablesPage() {
    const open = editor("variable", (form, row) => {
      const masked = row?.dataset.masked === "true";
      form.elements.key.value = row ? row.dataset.key : "";
      form.elements.value.value = row ? row.dataset.value : "";
      form.elements.value.required = !masked;
      form.elements.value.placeholder = masked ? "unchanged (secret)" : "";
      form.elements.description.value = row ? row.dataset.description : "";
      document.getElementById("value-kept").hidden = !masked;
    }, async (form, row) => {
      const key = form.elements.key.value;
      const body = { key, value: form.elements.value.value, description: orNull(form.elements.description.value) };
      if (!row) return api("POST", "/api/v2/variables", body);
      // A secret left blank: only the description changes.
      const keep = row.dataset.masked === "true" && body.value === "";
      return api("PATCH", `/api/v2/variables/${path(key)}${keep ? "?update_mask=description" : ""}`, body);
    });
    wireRows(open, (row) => confirmDelete(`Delete variable ${row.dataset.key}?`,
      "Tasks that read it will fail to find it. This cannot be undone.", `/api/v2/variables/${path(row.dataset.key)}`));
  }

  function connectionsPage() {
    const fields = ["conn_type", "host", "port", "login", "schema", "description"];
    const open = editor("connection", (form, row) => {
      form.elements.key.value = row ? row.dataset.key : "";
      for (const f of fields) form.elements[f].value = row ? row.dataset[f.replace(/_(.)/g, (_, c) => c.toUpperCase())] : "";
      const hasPassword = row?.dataset.hasPassword === "true", hasExtra = row?.dataset.hasExtra === "true";
      form.elements.password.placeholder = hasPassword ? "unchanged (set)" : "";
      form.elements.extra.placeholder = hasExtra ? "unchanged (set)" : '{"key": "value"}';
      document.getElementById("secrets-kept").hidden = !(hasPassword || hasExtra);
    }, async (form, row) => {
      const v = (name) => form.elements[name].value;
      const body = {
        connection_id: v("key"), conn_type: v("conn_type"), host: orNull(v("host")), login: orNull(v("login")),
        schema: orNull(v("schema")), port: v("port") === "" ? null : Number(v("port")), description: orNull(v("description")),
      };
      // Secrets left blank are not sent, which keeps the stored ones.
      if (v("password") !== "") body.password = v("password");
      if (v("extra").trim() !== "") body.extra = v("extra");
      if (!row) return api("POST", "/api/v2/connections", body);
      return api("PATCH", `/api/v2/connections/${path(v("key"))}`, body);
    });
    wireRows(open, (row) => confirmDelete(`Delete connection ${row.dataset.key}?`,
      "Tasks that use it will fail to find it. This cannot be undone.", `/api/v2/connections/${path(row.dataset.key)}`));
  }

  function poolsPage() {
    const body = document.getElementById("pool-rows");
    let pools = [];
    async function read() {
      const all = [];
      for (let offset = 0; ; offset += 100) {
        const page = await api("GET", `/api/v2/pools?limit=100&offset=${offset}&order_by=pool`);
        all.push(...page.pools);
        if (all.length >= page.total_entries || page.pools.length === 0) break;
      }
      return all;
    }
    function meter(p) {
      const part = (cls, n) => {
        const i = el("i", { class: cls, title: `${cls.slice(2)}: ${n}` });
        i.style.width = p.slots > 0 ? `${Math.min(100, (100 * n) / p.slots)}%` : "0";
        return i;
      };
      return el("div", { class: "meter", title: `${p.occupied_slots} of ${p.slots} slots used` },
        part("m-running", p.running_slots), part("m-queued", p.queued_slots));
    }
    function render() {
      body.replaceChildren(...(pools.length ? pools.map((p) => el("tr", {
        "data-key": p.name, "data-slots": p.slots, "data-description": p.description || "",
      },
      el("td", {}, el("strong", {}, p.name)), el("td", { class: "slots" }, p.slots < 0 ? "unlimited" : String(p.slots)),
      el("td", { class: "running" }, String(p.running_slots)), el("td", { class: "queued" }, String(p.queued_slots)),
      el("td", { class: "scheduled" }, String(p.scheduled_slots)),
      el("td", { class: "open" }, p.slots < 0 ? "unlimited" : String(p.open_slots)),
      el("td", {}, meter(p)), el("td", {}, p.description || ""),
      canWrite ? el("td", { class: "narrow" }, el("button", { class: "edit" }, "Edit"), " ",
        p.name === "default_pool" ? null : el("button", { class: "delete bad" }, "Delete")) : null))
        : [el("tr", {}, el("td", { colspan: 9, class: "empty" }, "No pools."))]));
    }
    const canWrite = Boolean(document.getElementById("add"));
    let timer = null;
    async function refresh() {
      clearTimeout(timer);
      try {
        pools = await read();
        render();
        window.gustPoolsReadAt = performance.now();
      } catch (e) { toast(e.message, true); }
      timer = setTimeout(refresh, 3000);
    }
    const open = editor("pool", (form, row) => {
      form.elements.key.value = row ? row.dataset.key : "";
      form.elements.slots.value = row ? row.dataset.slots : "1";
      form.elements.description.value = row ? row.dataset.description : "";
      // Only the default pool's slots may change (Airflow's rule).
      form.elements.description.readOnly = row?.dataset.key === "default_pool";
    }, async (form, row) => {
      const name = form.elements.key.value;
      const slots = Number(form.elements.slots.value);
      const description = orNull(form.elements.description.value);
      if (!row) return api("POST", "/api/v2/pools", { name, slots, description });
      if (name === "default_pool") return api("PATCH", `/api/v2/pools/${path(name)}?update_mask=slots`, { slots });
      return api("PATCH", `/api/v2/pools/${path(name)}`, { slots, description });
    }, refresh);
    wireRows(open, (row) => confirmDelete(`Delete pool ${row.dataset.key}?`,
      "Tasks that name it cannot start until it exists again. This cannot be undone.", `/api/v2/pools/${path(row.dataset.key)}`));
    refresh();
  }

  return { CODES, COLOURS, inkOn, api, el, toast, follow, fmtDate, fmtDuration, logTail, canEditPage: canEdit, badge, setBadge, plural, markTask, clearTask, setUpTimezones, escapeHtml, path, dagsPage, dagPage, runPage, taskPage, variablesPage, connectionsPage, poolsPage };
})();

// Each page names its script in <body data-page>; pages carry no inline script, so the
// Content-Security-Policy can forbid it.
document.addEventListener("DOMContentLoaded", () => {
  const start = {
    dags: Gust.dagsPage, dag: Gust.dagPage, run: Gust.runPage, task: Gust.taskPage,
    variables: Gust.variablesPage, connections: Gust.connectionsPage, pools: Gust.poolsPage,
  }[document.body.dataset.page];
  Gust.setUpTimezones();
  if (start) start();
});
