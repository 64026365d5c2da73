// The grid's details panel (Airflow 3's): a run's details, a task instance's details, log
// (tailing while its try runs), XComs and rendered arguments (masked by the server), or a mapped
// task's instances, beside the grid without leaving it. What it shows is kept in the URL
// (`run_id`, `task_id`, `map_index`), so a link opens the grid with it, and it is read again
// whenever the grid's live updates say its run changed.
"use strict";

class GustPanel {
  constructor(dagId, runs) {
    this.dagId = dagId;
    this.runs = runs;
    this.box = document.getElementById("panel");
    this.body = document.getElementById("panel-body");
    this.tabsBox = document.getElementById("panel-tabs");
    this.shown = null; // { kind: "run" | "task" | "mapped", runId, taskId, mapIndex }
    this.tab = "details";
    this.tail = null;
    this.refreshTimer = null;
    document.getElementById("panel-close").addEventListener("click", () => this.close());
    this.base = `/dags/${Gust.path(dagId)}`;
  }

  /** Opens what the URL names, once the grid has its runs. */
  restore(grid) {
    this.grid = grid;
    const q = new URLSearchParams(location.search);
    const runId = q.get("run_id");
    if (!runId) return;
    const taskId = q.get("task_id");
    const mapIndex = Number(q.get("map_index") ?? -1);
    if (!taskId) this.openRun(runId);
    else if (q.get("mapped") === "1") this.openMapped(runId, taskId);
    else this.openTask(runId, taskId, mapIndex);
  }

  /** Keeps what is shown in the URL, without reloading. */
  remember() {
    const url = new URL(location.href);
    for (const key of ["run_id", "task_id", "map_index", "mapped"]) url.searchParams.delete(key);
    const s = this.shown;
    if (s) {
      url.searchParams.set("run_id", s.runId);
      if (s.taskId) url.searchParams.set("task_id", s.taskId);
      if (s.kind === "mapped") url.searchParams.set("mapped", "1");
      if (s.kind === "task" && s.mapIndex >= 0) url.searchParams.set("map_index", String(s.mapIndex));
    }
    history.replaceState(null, "", url.toString());
  }

  close() {
    this.tail?.stop();
    this.shown = null;
    this.box.hidden = true;
    this.grid?.select(null, null);
    this.remember();
  }

  /** Shows `kind` for the run (and task): the panel's head, its tabs, and reads what it shows. */
  show(shown, title, crumbs, page, tabs) {
    this.tail?.stop();
    const same = this.shown && this.shown.kind === shown.kind;
    this.shown = shown;
    this.box.hidden = false;
    this.box.dataset.kind = shown.kind;
    document.getElementById("panel-title").textContent = title;
    document.getElementById("panel-crumbs").replaceChildren(...crumbs);
    document.getElementById("panel-open").href = page;
    if (!same || !tabs.includes(this.tab)) this.tab = tabs[0];
    this.tabsBox.replaceChildren(...tabs.map((t) => Gust.el("button", {
      type: "button", class: t === this.tab ? "on" : "", "data-tab": t,
      onclick: () => { this.tab = t; this.tail?.stop(); this.tabsBox.querySelectorAll("button").forEach((b) => b.classList.toggle("on", b.dataset.tab === t)); this.render(); },
    }, { xcom: "XCom" }[t] || t[0].toUpperCase() + t.slice(1))));
    this.tabsBox.hidden = tabs.length < 2;
    this.grid?.select(shown.runId, shown.taskId || null);
    this.remember();
    this.body.replaceChildren(Gust.el("p", { class: "muted" }, "Loading…"));
  }

  runLink(runId) {
    return Gust.el("a", { href: "#", onclick: (e) => { e.preventDefault(); this.openRun(runId); } }, runId);
  }

  async openRun(runId) {
    this.show({ kind: "run", runId }, runId, [Gust.el("span", {}, "Run")], `${this.base}/runs/${Gust.path(runId)}`, ["details"]);
    await this.load();
  }

  async openTask(runId, taskId, mapIndex) {
    const name = mapIndex >= 0 ? `${taskId} [${mapIndex}]` : taskId;
    const crumbs = [this.runLink(runId), " / "];
    if (mapIndex >= 0) {
      crumbs.push(Gust.el("a", { href: "#", class: "back-to-mapped", onclick: (e) => { e.preventDefault(); this.openMapped(runId, taskId); } }, `${taskId} [ ]`), " / ");
    }
    const page = `${this.base}/runs/${Gust.path(runId)}/tasks/${Gust.path(taskId)}${mapIndex >= 0 ? `?map_index=${mapIndex}` : ""}`;
    this.show({ kind: "task", runId, taskId, mapIndex }, name, crumbs, page, ["details", "logs", "xcom", "rendered"]);
    await this.load();
  }

  async openMapped(runId, taskId) {
    this.show({ kind: "mapped", runId, taskId }, `${taskId} [ ]`, [this.runLink(runId), " / mapped instances"],
      `${this.base}/runs/${Gust.path(runId)}`, ["instances"]);
    await this.load();
  }

  /** Reads what is shown (again), then draws the current tab. */
  async load() {
    const s = this.shown;
    if (!s) return;
    const dag = Gust.path(this.dagId), run = Gust.path(s.runId);
    try {
      let data;
      if (s.kind === "task") {
        const mi = s.mapIndex >= 0 ? `?map_index=${s.mapIndex}` : "";
        data = await Gust.api("GET", `/ui/api/dags/${dag}/runs/${run}/tasks/${Gust.path(s.taskId)}${mi}`);
      } else {
        data = await Gust.api("GET", `/ui/api/dags/${dag}/runs/${run}/details`);
      }
      if (s !== this.shown) return;
      const first = this.data === undefined || this.dataOf !== s;
      const newTry = !first && s.kind === "task" && this.data.tries.length !== data.tries.length;
      this.data = data;
      this.dataOf = s;
      // The log keeps tailing across reads (until a new try starts); other tabs are drawn again.
      if (first || newTry || this.tab !== "logs") this.render();
      else this.tail?.poll();
    } catch (e) {
      if (s === this.shown) this.body.replaceChildren(Gust.el("p", { class: "error" }, e.message));
    }
  }

  /** The grid's live update: read again when it touches the run shown. */
  update(update) {
    const s = this.shown;
    if (!s) return;
    const touched = (update.cells && s.runId in update.cells) || (update.runs && update.runs.some((r) => r.run_id === s.runId));
    if (!touched || this.refreshTimer) return;
    this.refreshTimer = setTimeout(() => { this.refreshTimer = null; this.load(); }, 300);
  }

  render() {
    const s = this.shown, d = this.data;
    if (!s || !d || this.dataOf !== s) return;
    if (s.kind === "run") this.renderRun(d);
    else if (s.kind === "mapped") this.renderMapped(d);
    else if (this.tab === "logs") this.renderLogs(d);
    else if (this.tab === "xcom") this.renderXcoms(d);
    else if (this.tab === "rendered") this.renderRendered(d);
    else this.renderTask(d);
    window.gustPanelShown = `${s.kind}:${this.tab}`;
  }

  /** A two-column table of facts; values are nodes or text, empty ones shown as —. */
  facts(rows) {
    return Gust.el("table", { class: "list facts-table" }, rows.filter(Boolean).map(([k, v, cls]) =>
      Gust.el("tr", { class: cls || "" }, Gust.el("th", {}, k), Gust.el("td", {}, v === null || v === undefined || v === "" ? "—" : v))));
  }

  renderRun(d) {
    const r = d.run;
    const inGrid = this.grid && this.grid.runs.some((x) => x.run_id === r.run_id);
    this.body.replaceChildren(
      this.facts([
        ["State", Gust.badge(r.state), "run-state"],
        ["Run id", r.run_id],
        ["Run type", Gust.el("span", { class: `run-type rt-${r.run_type}` }, r.run_type), "run-type"],
        ["Logical date", Gust.fmtDate(r.logical_date)],
        ["Data interval", `${Gust.fmtDate(r.data_interval_start)} – ${Gust.fmtDate(r.data_interval_end)}`],
        ["Queued", Gust.fmtDate(r.queued_at)],
        ["Started", Gust.fmtDate(r.start_date)],
        ["Ended", Gust.fmtDate(r.end_date)],
        ["Duration", Gust.fmtDuration(r.duration)],
        ["Note", r.note],
      ]),
      Gust.el("h3", {}, "Configuration"),
      Gust.el("pre", { class: "code", id: "panel-conf" }, JSON.stringify(r.conf || {}, null, 2)),
      Gust.el("p", { class: "small" },
        Gust.el("a", { href: `${this.base}?tab=gantt&runs=${this.runs}&run_id=${encodeURIComponent(r.run_id)}` }, "Gantt chart of this run"),
        inGrid ? "" : ` · not among the ${this.runs} latest runs the grid shows`),
    );
  }

  renderTask(d) {
    const latest = d.tries[d.tries.length - 1] || {};
    const task = d.task || {};
    const pod = latest.pod_manifest;
    this.body.replaceChildren(
      this.facts([
        ["State", Gust.badge(d.state), "ti-state"],
        ["Task", d.task_id],
        ["Operator", task.operator, "ti-operator"],
        d.map_index >= 0 ? ["Map index", String(d.map_index), "ti-map-index"] : null,
        ["Try", `${d.try_number} of ${(task.retries ?? 0) + 1}`, "ti-try"],
        ["Queued", Gust.fmtDate(latest.queued_at)],
        ["Started", Gust.fmtDate(latest.start_date)],
        ["Ended", Gust.fmtDate(latest.end_date)],
        ["Duration", Gust.fmtDuration(latest.duration), "ti-duration"],
        d.next_retry_at ? ["Next try", Gust.fmtDate(d.next_retry_at)] : null,
        ["Trigger rule", task.trigger_rule],
        ["Pool", task.pool],
        ["Owner", task.owner],
        task.group ? ["Group", task.group] : null,
        ["Note", d.note],
        latest.failure ? ["Failure", Gust.el("span", { class: "error" }, latest.failure)] : null,
      ]),
      pod ? Gust.el("h3", {}, "Pod") : "",
      pod ? Gust.el("pre", { class: "code", id: "panel-pod" }, pod.yaml || `Cannot show the pod: ${pod.error}`) : "",
      Gust.canEditPage() ? this.actions(d) : "",
    );
  }

  /**
   * Clear and mark, through the same confirmation dialogs as the task instance's page; a mapped
   * instance's act on that instance alone (with the relatives the dialog's options add).
   */
  actions(d) {
    const at = d.map_index ?? -1;
    return Gust.el("div", { class: "actions panel-actions" },
      Gust.el("button", { type: "button", id: "panel-clear", onclick: () => Gust.clearTask(this.dagId, d.run_id, d.task_id, at) }, "Clear…"),
      Gust.el("button", { type: "button", class: "ok", id: "panel-mark-success", onclick: () => Gust.markTask(this.dagId, d.run_id, d.task_id, "success", at) }, "Mark success…"),
      Gust.el("button", { type: "button", class: "bad", id: "panel-mark-failed", onclick: () => Gust.markTask(this.dagId, d.run_id, d.task_id, "failed", at) }, "Mark failed…"));
  }

  renderLogs(d) {
    const select = Gust.el("select", { id: "panel-log-try" }, d.tries.map((t) => Gust.el("option", { value: t.try_number }, `Try ${t.try_number}`)));
    const followBox = Gust.el("input", { type: "checkbox", checked: true });
    const box = Gust.el("pre", { class: "log", id: "panel-log" });
    this.body.replaceChildren(
      Gust.el("div", { class: "log-head" }, select, Gust.el("label", { class: "muted" }, followBox, " follow")), box);
    if (!d.tries.length) { box.textContent = "No tries yet."; return; }
    this.tail = Gust.logTail(box, followBox);
    const s = this.shown;
    const show = () => {
      const n = Number(select.value);
      const mi = s.mapIndex >= 0 ? `?map_index=${s.mapIndex}` : "";
      const running = () => {
        const t = this.data && this.data.tries.find((x) => x.try_number === n);
        return Boolean(t && (t.state === "queued" || t.state === "running"));
      };
      this.tail.show(`/ui/api/dags/${Gust.path(this.dagId)}/runs/${Gust.path(s.runId)}/tasks/${Gust.path(s.taskId)}/logs/${n}${mi}`, running);
    };
    select.value = String(d.tries[d.tries.length - 1].try_number);
    select.addEventListener("change", show);
    show();
  }

  renderXcoms(d) {
    this.body.replaceChildren(Gust.el("table", { class: "list", id: "panel-xcoms" },
      Gust.el("thead", {}, Gust.el("tr", {}, Gust.el("th", {}, "Key"), Gust.el("th", {}, "Value"))),
      Gust.el("tbody", {}, d.xcoms.length ? d.xcoms.map((x) => Gust.el("tr", { "data-key": x.key },
        Gust.el("td", {}, x.key), Gust.el("td", {}, Gust.el("code", { class: "value" }, JSON.stringify(x.value)))))
        : Gust.el("tr", {}, Gust.el("td", { colspan: 2, class: "empty" }, "No XComs.")))));
  }

  renderRendered(d) {
    const latest = d.tries[d.tries.length - 1];
    this.body.replaceChildren(
      Gust.el("p", { class: "muted small" }, "The latest try's arguments as rendered, secrets masked."),
      Gust.el("pre", { class: "code", id: "panel-rendered" }, latest && latest.rendered_args
        ? JSON.stringify(latest.rendered_args, null, 2) : "Not rendered yet."));
  }

  /** A mapped task's instances: map index (and its rendered name), state, tries, times. */
  renderMapped(d) {
    const s = this.shown;
    const instances = d.instances.filter((ti) => ti.task_id === s.taskId && ti.map_index >= 0);
    const counts = {};
    for (const ti of instances) counts[ti.state || "none"] = (counts[ti.state || "none"] || 0) + 1;
    const named = instances.some((ti) => ti.rendered_map_index);
    this.body.replaceChildren(
      Gust.el("p", { class: "summary", id: "panel-mapped-summary" }, `${Gust.plural(instances.length, "instance")}`,
        ...Object.entries(counts).map(([state, n]) => [" ", Gust.badge(state), ` ${n}`])),
      Gust.el("table", { class: "list", id: "panel-mapped" },
        Gust.el("thead", {}, Gust.el("tr", {}, Gust.el("th", {}, "Map index"), named ? Gust.el("th", {}, "Name") : "",
          Gust.el("th", {}, "State"), Gust.el("th", {}, "Tries"), Gust.el("th", {}, "Started"), Gust.el("th", {}, "Duration"))),
        Gust.el("tbody", {}, instances.length ? instances.map((ti) => Gust.el("tr", {
          class: "clickable", "data-map-index": ti.map_index, onclick: () => this.openTask(s.runId, s.taskId, ti.map_index),
        }, Gust.el("td", {}, Gust.el("a", { href: "#", onclick: (e) => e.preventDefault() }, String(ti.map_index))),
        named ? Gust.el("td", {}, ti.rendered_map_index || "") : "",
        Gust.el("td", {}, Gust.badge(ti.state)), Gust.el("td", {}, String(ti.try_number)),
        Gust.el("td", {}, Gust.fmtDate(ti.start_date)), Gust.el("td", {}, Gust.fmtDuration(ti.duration))))
          : Gust.el("tr", {}, Gust.el("td", { colspan: 6, class: "empty" }, "Not expanded yet.")))));
  }
}
