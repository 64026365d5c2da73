// The Gantt chart of a run: one row per task instance (each instance of a mapped task), in the
// DAG's task order; a grey segment from when it was queued to when it started, then a bar in its
// state's colour to when it ended (or now, while it runs). Drawn as SVG from the run's details
// (one read), and read again as the run moves.
"use strict";

class GustGantt {
  constructor(wrap, dagId) {
    this.wrap = wrap;
    this.dagId = dagId;
    this.runs = [];
    this.selected = null;
    this.bars = [];
    this.timer = null;
    this.select = document.getElementById("gantt-run");
    this.select.addEventListener("change", () => { this.selected = this.select.value; this.remember(); this.read(); });
    this.ROW = 22; this.LABEL = 260; this.AXIS = 26;
    window.addEventListener("resize", () => this.draw());
  }

  async load(grid) {
    this.tasks = grid.tasks;
    this.runs = grid.runs;
    const asked = new URLSearchParams(location.search).get("run_id");
    this.selected = asked || (this.runs.length ? this.runs[this.runs.length - 1].run_id : null);
    this.fillRuns();
    await this.read();
  }

  fillRuns() {
    const options = this.runs.slice().reverse().map((r) =>
      Gust.el("option", { value: r.run_id }, `${Gust.fmtDate(r.logical_date)} · ${r.run_id} (${r.state})`));
    // A run older than those listed (a link to it) is offered too.
    if (this.selected && !this.runs.some((r) => r.run_id === this.selected)) options.unshift(Gust.el("option", { value: this.selected }, this.selected));
    this.select.replaceChildren(...options);
    if (this.selected) this.select.value = this.selected;
  }

  remember() {
    const url = new URL(location.href);
    url.searchParams.set("run_id", this.selected);
    history.replaceState(null, "", url.toString());
  }

  update(update) {
    const latest = this.runs.length ? this.runs[this.runs.length - 1].run_id : null;
    const followLatest = !this.selected || this.selected === latest;
    if (update.runs) {
      this.runs = update.runs;
      if (followLatest && this.runs.length) this.selected = this.runs[this.runs.length - 1].run_id;
      this.fillRuns();
    }
    const touched = (update.cells && this.selected in update.cells) || update.runs;
    if (touched && !this.timer) this.timer = setTimeout(() => { this.timer = null; this.read(); }, 500);
  }

  /** Reads the selected run's instances, then draws them. */
  async read() {
    if (!this.selected) { this.wrap.replaceChildren(Gust.el("p", { class: "empty" }, "No runs yet.")); return; }
    const runId = this.selected;
    try {
      const data = await Gust.api("GET", `/ui/api/dags/${Gust.path(this.dagId)}/runs/${Gust.path(runId)}/details`);
      if (runId !== this.selected) return;
      const order = new Map(this.tasks.map((t, i) => [t.id, i]));
      this.instances = data.instances.slice().sort((a, b) =>
        (order.get(a.task_id) ?? 1e9) - (order.get(b.task_id) ?? 1e9) || a.map_index - b.map_index);
      this.run = data.run;
      this.draw();
    } catch (e) {
      this.wrap.replaceChildren(Gust.el("p", { class: "error" }, e.message));
    }
  }

  draw() {
    if (!this.instances) return;
    const NS = "http://www.w3.org/2000/svg";
    const svgEl = (tag, attrs = {}, text) => {
      const node = document.createElementNS(NS, tag);
      for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
      if (text !== undefined) node.textContent = text;
      return node;
    };
    const now = Date.now();
    const at = (iso) => (iso ? Date.parse(iso) : null);
    const spans = this.instances.map((ti) => {
      const start = at(ti.start_date), queued = at(ti.queued_when);
      const end = at(ti.end_date) ?? (start !== null && ["running", "queued"].includes(ti.state) ? now : start);
      return { ti, queued, start, end };
    });
    const times = spans.flatMap((s) => [s.queued, s.start, s.end]).filter((t) => t !== null);
    const from = times.length ? Math.min(...times) : now, to = times.length ? Math.max(...times, from + 1000) : now + 1000;
    const width = Math.max(480, this.wrap.clientWidth - 4);
    const plot = width - this.LABEL - 24;
    const x = (t) => this.LABEL + ((t - from) / (to - from)) * plot;
    const height = this.AXIS + spans.length * this.ROW + 8;
    const svg = svgEl("svg", { width, height, class: "gantt" });
    // The time axis: five ticks, each labelled with its time of day (the chosen timezone).
    for (let i = 0; i <= 4; i++) {
      const t = from + ((to - from) * i) / 4, tx = x(t);
      svg.append(svgEl("line", { x1: tx, x2: tx, y1: this.AXIS - 4, y2: height, class: "tick" }));
      svg.append(svgEl("text", { x: tx, y: 12, "text-anchor": i === 0 ? "start" : i === 4 ? "end" : "middle", class: "axis" },
        Gust.fmtDate(new Date(t).toISOString()).slice(11)));
    }
    this.bars = [];
    spans.forEach((s, row) => {
      const y = this.AXIS + row * this.ROW;
      const ti = s.ti;
      const name = ti.map_index >= 0 ? `${ti.task_id} [${ti.map_index}]` : ti.task_id;
      const g = svgEl("g", { class: "gantt-row", "data-task": ti.task_id, "data-map-index": ti.map_index });
      if (row % 2) g.append(svgEl("rect", { x: 0, y, width, height: this.ROW, fill: "#fafbfc" }));
      g.append(svgEl("text", { x: 8, y: y + 15, class: "label" }, name.length > 36 ? `${name.slice(0, 35)}…` : name));
      const title = `${name}\n${ti.state || "none"}\nqueued ${Gust.fmtDate(ti.queued_when) || "—"}\nstarted ${Gust.fmtDate(ti.start_date) || "—"}\n`
        + `ended ${Gust.fmtDate(ti.end_date) || "—"}\n${Gust.fmtDuration(ti.duration) || ""}`;
      if (s.queued !== null && s.start !== null && s.start > s.queued) {
        g.append(svgEl("rect", { x: x(s.queued), y: y + 5, width: Math.max(1, x(s.start) - x(s.queued)), height: this.ROW - 10, class: "queued" }));
      }
      if (s.start !== null) {
        const bar = svgEl("rect", {
          x: x(s.start), y: y + 3, width: Math.max(2, x(s.end) - x(s.start)), height: this.ROW - 6,
          fill: Gust.COLOURS[ti.state || "none"] || "#ccc", class: "bar",
        });
        bar.append(svgEl("title", {}, title));
        g.append(bar);
        this.bars.push({ task_id: ti.task_id, map_index: ti.map_index, state: ti.state, x: x(s.start), width: Math.max(2, x(s.end) - x(s.start)) });
      } else if (s.queued !== null) {
        g.lastChild.append(svgEl("title", {}, title));
      }
      g.addEventListener("click", () => {
        const mi = ti.map_index >= 0 ? `?map_index=${ti.map_index}` : "";
        location.href = `/dags/${Gust.path(this.dagId)}/runs/${Gust.path(this.selected)}/tasks/${Gust.path(ti.task_id)}${mi}`;
      });
      svg.append(g);
    });
    this.wrap.replaceChildren(svg);
    const span = document.getElementById("gantt-span");
    if (span) span.textContent = times.length ? `${Gust.fmtDate(new Date(from).toISOString())} – ${Gust.fmtDuration((to - from) / 1000)}` : "nothing has started yet";
  }
}
