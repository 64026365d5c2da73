// The grid: runs as columns (newest right), tasks as rows (task groups collapsible), each cell
// its task instance's state. Drawn on one canvas the size of the viewport: only the visible rows
// and columns are painted, so 5,000 tasks by 100 runs scroll as smoothly as 10 by 10.
// The header marks each run's type (manual, scheduled, asset-triggered, backfill) and dates the
// run axis; a mapped task is one row whose cell is its instances' most pressing state. Clicking
// a cell or a run opens its details in the panel beside the grid (panel.js).
"use strict";

/** How each run type is marked above its bar: a shape drawn on the canvas, named in the legend. */
const RUN_TYPE_MARKS = {
  manual: { glyph: "▶", colour: "#0b6bcb", label: "manual" },
  scheduled: { glyph: "○", colour: "#6b7385", label: "scheduled" },
  asset_triggered: { glyph: "◆", colour: "#8e24aa", label: "asset-triggered" },
  backfill: { glyph: "■", colour: "#795548", label: "backfill" },
};

class GustGrid {
  constructor(wrap, dagId, panel) {
    this.wrap = wrap;
    this.dagId = dagId;
    this.panel = panel;
    this.selected = null;
    this.dateLabels = new Map();
    this.canvas = wrap.querySelector("canvas");
    this.spacer = wrap.querySelector(".grid-spacer");
    this.ctx = this.canvas.getContext("2d");
    this.collapsed = new Set(JSON.parse(localStorage.getItem(`gust.collapsed.${dagId}`) || "[]"));
    this.ROW = 22; this.CELL = 16; this.LABEL = 300; this.HEAD = 96;
    this.runs = []; this.cells = new Map(); this.mapped = new Map(); this.tasks = []; this.groups = new Map();
    this.groupCache = new Map();
    this.frame = 0;
    wrap.addEventListener("scroll", () => this.schedule());
    window.addEventListener("resize", () => this.schedule());
    this.canvas.addEventListener("click", (e) => this.click(e));
    this.canvas.addEventListener("mousemove", (e) => this.hover(e));
    this.drawLegend();
  }

  drawLegend() {
    const legend = document.getElementById("legend");
    if (!legend) return;
    const states = ["success", "failed", "running", "queued", "up_for_retry", "up_for_reschedule", "deferred", "upstream_failed", "skipped", "scheduled", "removed", "none"];
    // The swatch's colour goes through the DOM: the Content-Security-Policy refuses style attributes.
    legend.replaceChildren(...states.map((s) => {
      const swatch = Gust.el("i");
      swatch.style.background = Gust.COLOURS[s];
      return Gust.el("span", {}, swatch, s);
    }));
    const types = document.getElementById("run-type-legend");
    if (!types) return;
    types.replaceChildren(...Object.values(RUN_TYPE_MARKS).map((m) => {
      const glyph = Gust.el("b", { class: "rt" }, m.glyph);
      glyph.style.color = m.colour;
      return Gust.el("span", {}, glyph, " ", m.label);
    }));
  }

  async load(data) {
    this.tasks = data.tasks;
    this.groups = new Map(data.groups.map((g) => [g.id, g]));
    this.runs = data.runs;
    this.cells = new Map(data.runs.map((r, i) => [r.run_id, data.cells[i]]));
    this.mapped = new Map(data.runs.map((r, i) => [r.run_id, (data.mapped || [])[i] || {}]));
    this.buildRows();
    this.draw();
    this.wrap.scrollLeft = this.wrap.scrollWidth;
    this.panel?.restore(this);
  }

  /** A mapped task's instances in a run, counted by state (`{}` before it is expanded). */
  mappedCounts(runId, taskIndex) {
    return (this.mapped.get(runId) || {})[taskIndex] || {};
  }

  /** Marks a cell (or a whole run, `task` null) as the one the panel shows, and scrolls to it. */
  select(runId, task) {
    this.selected = runId ? { runId, task } : null;
    const c = this.runs.findIndex((r) => r.run_id === runId);
    if (c >= 0) {
      const x = c * this.CELL, view = this.wrap.clientWidth - this.LABEL;
      if (x < this.wrap.scrollLeft || x > this.wrap.scrollLeft + view - this.CELL) this.wrap.scrollLeft = Math.max(0, x - view / 2);
    }
    this.schedule();
  }

  /** `MM-DD HH:MM` of a run's logical date in the chosen timezone (kept: formatting is slow). */
  dateLabel(run) {
    let label = this.dateLabels.get(run.run_id);
    if (label === undefined) {
      label = Gust.fmtDate(run.logical_date).slice(5, 16);
      this.dateLabels.set(run.run_id, label);
    }
    return label;
  }

  /** Applies an event: new run list, changed columns. */
  update(update) {
    if (update.runs) this.runs = update.runs;
    for (const [runId, codes] of Object.entries(update.cells || {})) this.cells.set(runId, codes);
    for (const [runId, counts] of Object.entries(update.mapped || {})) this.mapped.set(runId, counts);
    this.panel?.update(update);
    this.groupCache.clear();
    const atRight = this.wrap.scrollLeft + this.wrap.clientWidth >= this.wrap.scrollWidth - 4;
    this.sizeSpacer();
    if (atRight) this.wrap.scrollLeft = this.wrap.scrollWidth;
    this.schedule();
  }

  /** The rows: groups (with their tasks' indices) and tasks, skipping collapsed groups' insides. */
  buildRows() {
    const chainOf = (groupId) => {
      const chain = [];
      for (let g = groupId; g; g = this.groups.get(g)?.parent) chain.unshift(g);
      return chain;
    };
    const members = new Map();
    this.tasks.forEach((t, i) => {
      for (const g of chainOf(t.group)) {
        if (!members.has(g)) members.set(g, []);
        members.get(g).push(i);
      }
    });
    const rows = [];
    const emitted = new Set();
    this.tasks.forEach((t, i) => {
      const chain = chainOf(t.group);
      let hidden = false;
      chain.forEach((g, depth) => {
        if (hidden) return;
        if (!emitted.has(g)) {
          emitted.add(g);
          rows.push({ group: g, depth, members: members.get(g), label: g.split(".").pop() });
        }
        if (this.collapsed.has(g)) hidden = true;
      });
      // A mapped task's name carries Airflow's "[ ]": its row stands for all its instances.
      if (!hidden) rows.push({ task: i, depth: chain.length, label: `${t.id.split(".").pop()}${t.mapped ? " [ ]" : ""}`, id: t.id, mapped: Boolean(t.mapped) });
    });
    this.rows = rows;
    this.groupCache.clear();
    this.sizeSpacer();
  }

  sizeSpacer() {
    this.spacer.style.width = `${this.LABEL + this.runs.length * this.CELL + 20}px`;
    this.spacer.style.height = `${this.HEAD + this.rows.length * this.ROW + 10}px`;
  }

  schedule() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => { this.frame = 0; this.draw(); });
  }

  /** A group's state in a run: the most pressing of its tasks' states. */
  groupCode(row, runIndex) {
    const key = `${row.group}\u0000${this.runs[runIndex].run_id}`;
    let code = this.groupCache.get(key);
    if (code !== undefined) return code;
    const codes = this.cells.get(this.runs[runIndex].run_id) || "";
    // Airflow's state_priority, as for a mapped task's instances (data.rs AGGREGATE_ORDER).
    const order = "fpuhrdqcnskx-";
    let best = order.length - 1;
    for (const i of row.members) {
      const rank = order.indexOf(codes[i] || "-");
      if (rank >= 0 && rank < best) { best = rank; if (best === 0) break; }
    }
    code = order[best];
    this.groupCache.set(key, code);
    return code;
  }

  draw() {
    const ratio = window.devicePixelRatio || 1;
    const width = this.wrap.clientWidth, height = this.wrap.clientHeight;
    if (this.canvas.width !== width * ratio || this.canvas.height !== height * ratio) {
      this.canvas.width = width * ratio; this.canvas.height = height * ratio;
      this.canvas.style.width = `${width}px`; this.canvas.style.height = `${height}px`;
    }
    const ctx = this.ctx;
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, height);
    ctx.font = "12px -apple-system, BlinkMacSystemFont, 'Segoe UI', Roboto, sans-serif";
    ctx.textBaseline = "middle";
    const { ROW, CELL, LABEL, HEAD } = this;
    const top = this.wrap.scrollTop, left = this.wrap.scrollLeft;
    const firstRow = Math.max(0, Math.floor(top / ROW));
    const lastRow = Math.min(this.rows.length, Math.ceil((top + height - HEAD) / ROW) + 1);
    const firstRun = Math.max(0, Math.floor(left / CELL));
    const lastRun = Math.min(this.runs.length, Math.ceil((left + width - LABEL) / CELL) + 1);
    const colours = Gust.COLOURS, names = Gust.CODES;

    const sel = this.selected;
    const selColumn = sel ? this.runs.findIndex((r) => r.run_id === sel.runId) : -1;
    for (let r = firstRow; r < lastRow; r++) {
      const row = this.rows[r];
      const y = HEAD + r * ROW - top;
      if (r % 2) { ctx.fillStyle = "#fafbfc"; ctx.fillRect(0, y, width, ROW); }
      if (sel && sel.task !== null && row.task !== undefined && this.tasks[row.task].id === sel.task) {
        ctx.fillStyle = "#e3eefb"; ctx.fillRect(0, y, width, ROW);
      }
      if (selColumn >= firstRun && selColumn < lastRun) {
        ctx.fillStyle = "rgba(11,107,203,.12)";
        ctx.fillRect(LABEL + selColumn * CELL - left, y, CELL, ROW);
      }
      for (let c = firstRun; c < lastRun; c++) {
        const x = LABEL + c * CELL - left;
        const code = row.group !== undefined ? this.groupCode(row, c) : (this.cells.get(this.runs[c].run_id) || "")[row.task] || "-";
        const state = names[code];
        if (state === "") continue;
        ctx.fillStyle = colours[state];
        ctx.fillRect(x + 2, y + 3, CELL - 4, ROW - 6);
        ctx.strokeStyle = "rgba(0,0,0,.18)";
        ctx.strokeRect(x + 2.5, y + 3.5, CELL - 5, ROW - 7);
        // A mapped task's cell stands for several instances: a second edge, like a stack.
        if (row.mapped) {
          ctx.strokeStyle = "rgba(0,0,0,.35)";
          ctx.beginPath(); ctx.moveTo(x + 4.5, y + ROW - 2.5); ctx.lineTo(x + CELL - 1.5, y + ROW - 2.5); ctx.lineTo(x + CELL - 1.5, y + 5.5); ctx.stroke();
        }
      }
    }
    // The labels column, over the cells.
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, HEAD, LABEL, height - HEAD);
    ctx.fillStyle = "#e3e6ec";
    ctx.fillRect(LABEL - 1, 0, 1, height);
    for (let r = firstRow; r < lastRow; r++) {
      const row = this.rows[r];
      const y = HEAD + r * ROW - top;
      if (r % 2) { ctx.fillStyle = "#fafbfc"; ctx.fillRect(0, y, LABEL - 1, ROW); }
      const x = 10 + row.depth * 14;
      if (row.group !== undefined) {
        ctx.fillStyle = "#0b6bcb";
        ctx.fillText(`${this.collapsed.has(row.group) ? "▸" : "▾"} ${row.label}`, x, y + ROW / 2, LABEL - x - 8);
      } else {
        ctx.fillStyle = "#1d2330";
        ctx.fillText(row.label, x, y + ROW / 2, LABEL - x - 8);
      }
    }
    // The header: one bar per run, its height its duration, its colour its state; above it the
    // run's type, and along the top the runs' logical dates.
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, width, HEAD);
    ctx.fillStyle = "#e3e6ec";
    ctx.fillRect(0, HEAD - 1, width, 1);
    const durations = this.runs.map((run) => run.start_date ? ((run.end_date ? Date.parse(run.end_date) : Date.now()) - Date.parse(run.start_date)) : 0);
    const longest = Math.max(1, ...durations);
    const BARS = HEAD - 40;
    let lastLabelEnd = LABEL - 6;
    ctx.font = "10.5px -apple-system, BlinkMacSystemFont, 'Segoe UI', Roboto, sans-serif";
    for (let c = firstRun; c < lastRun; c++) {
      const run = this.runs[c];
      const x = LABEL + c * CELL - left;
      if (c === selColumn) { ctx.fillStyle = "rgba(11,107,203,.12)"; ctx.fillRect(x, 0, CELL, HEAD); }
      const h = Math.max(4, (durations[c] / longest) * (BARS - 4));
      ctx.fillStyle = colours[run.state] || "#ccc";
      ctx.fillRect(x + 3, HEAD - 6 - h, CELL - 6, h);
      this.drawRunType(run.run_type, x + CELL / 2, 29);
      // A date wherever it fits (a tick at its run), so the axis reads at any zoom.
      if (x >= lastLabelEnd + 6 && x >= LABEL) {
        const label = this.dateLabel(run);
        ctx.fillStyle = "#c4cad6";
        ctx.fillRect(x + CELL / 2, 14, 1, 6);
        ctx.fillStyle = "#6b7385";
        ctx.fillText(label, x + 1, 8);
        lastLabelEnd = x + ctx.measureText(label).width;
      }
    }
    ctx.font = "12px -apple-system, BlinkMacSystemFont, 'Segoe UI', Roboto, sans-serif";
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, LABEL - 1, HEAD - 1);
    ctx.fillStyle = "#6b7385";
    ctx.fillText(`${this.runs.length} run${this.runs.length === 1 ? "" : "s"} · ${this.tasks.length} task${this.tasks.length === 1 ? "" : "s"}`, 10, HEAD / 2);
    ctx.font = "10.5px -apple-system, BlinkMacSystemFont, 'Segoe UI', Roboto, sans-serif";
    ctx.fillText(`logical date (${Gust.fmtDate(new Date().toISOString()).split(" ").pop()})`, 10, 8);
  }

  /** The run type's mark (see RUN_TYPE_MARKS) centred at x, y. */
  drawRunType(type, x, y) {
    const ctx = this.ctx, mark = RUN_TYPE_MARKS[type];
    if (!mark) return;
    ctx.fillStyle = mark.colour; ctx.strokeStyle = mark.colour; ctx.lineWidth = 1.3;
    ctx.beginPath();
    if (type === "manual") { ctx.moveTo(x - 3, y - 4); ctx.lineTo(x + 4, y); ctx.lineTo(x - 3, y + 4); ctx.closePath(); ctx.fill(); }
    else if (type === "asset_triggered") { ctx.moveTo(x, y - 4.5); ctx.lineTo(x + 4, y); ctx.lineTo(x, y + 4.5); ctx.lineTo(x - 4, y); ctx.closePath(); ctx.fill(); }
    else if (type === "backfill") { ctx.rect(x - 3.5, y - 3.5, 7, 7); ctx.fill(); }
    else { ctx.arc(x, y, 3.5, 0, 2 * Math.PI); ctx.stroke(); }
    ctx.lineWidth = 1;
  }

  /** The row and run under a mouse event (either may be null). */
  at(event) {
    const { ROW, CELL, LABEL, HEAD } = this;
    const x = event.offsetX, y = event.offsetY;
    const row = y >= HEAD ? this.rows[Math.floor((y - HEAD + this.wrap.scrollTop) / ROW)] : null;
    const c = x >= LABEL ? Math.floor((x - LABEL + this.wrap.scrollLeft) / CELL) : -1;
    return { row: row || null, run: c >= 0 ? this.runs[c] || null : null, column: c, header: y < HEAD };
  }

  hover(event) {
    const { row, run, column, header } = this.at(event);
    let title = "";
    if (header && run) title = `${run.run_id}\n${run.state} · ${RUN_TYPE_MARKS[run.run_type]?.label || run.run_type}\n${Gust.fmtDate(run.logical_date)}`;
    else if (row && run) {
      const code = row.group !== undefined ? this.groupCode(row, column) : (this.cells.get(run.run_id) || "")[row.task] || "-";
      title = `${row.group !== undefined ? row.group : row.id}\n${Gust.CODES[code] || "no task instance"}\n${run.run_id}`;
      if (row.mapped) {
        const counts = Object.entries(this.mappedCounts(run.run_id, row.task));
        const n = counts.reduce((sum, [, k]) => sum + k, 0);
        title += `\n${Gust.plural(n, "mapped instance")}${n ? `: ${counts.map(([s, k]) => `${k} ${s}`).join(", ")}` : ""}`;
      }
    } else if (row) title = row.group !== undefined ? (this.groups.get(row.group)?.tooltip || row.group) : row.id;
    this.canvas.title = title;
    this.canvas.style.cursor = (row && (run || row.group !== undefined)) || (header && run) ? "pointer" : "default";
  }

  click(event) {
    const { row, run, header } = this.at(event);
    const dag = Gust.path(this.dagId);
    if (header && run) {
      if (this.panel) this.panel.openRun(run.run_id); else location.href = `/dags/${dag}/runs/${Gust.path(run.run_id)}`;
      return;
    }
    if (!row) return;
    if (row.group !== undefined && !run) {
      if (this.collapsed.has(row.group)) this.collapsed.delete(row.group); else this.collapsed.add(row.group);
      localStorage.setItem(`gust.collapsed.${this.dagId}`, JSON.stringify([...this.collapsed]));
      this.buildRows();
      this.schedule();
      return;
    }
    if (row.task !== undefined && run) {
      const task = this.tasks[row.task];
      if (!this.panel) { location.href = `/dags/${dag}/runs/${Gust.path(run.run_id)}/tasks/${Gust.path(task.id)}`; return; }
      const expanded = Object.keys(this.mappedCounts(run.run_id, row.task)).length > 0;
      if (row.mapped && expanded) this.panel.openMapped(run.run_id, task.id); else this.panel.openTask(run.run_id, task.id, -1);
    }
  }
}
