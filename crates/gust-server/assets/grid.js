// The grid: runs as columns (newest right), tasks as rows (task groups collapsible), each cell
// its task instance's state. Drawn on one canvas the size of the viewport: only the visible rows
// and columns are painted, so 5,000 tasks by 100 runs scroll as smoothly as 10 by 10.
"use strict";

class GustGrid {
  constructor(wrap, dagId) {
    this.wrap = wrap;
    this.dagId = dagId;
    this.canvas = wrap.querySelector("canvas");
    this.spacer = wrap.querySelector(".grid-spacer");
    this.ctx = this.canvas.getContext("2d");
    this.collapsed = new Set(JSON.parse(localStorage.getItem(`gust.collapsed.${dagId}`) || "[]"));
    this.ROW = 22; this.CELL = 16; this.LABEL = 300; this.HEAD = 64;
    this.runs = []; this.cells = new Map(); this.tasks = []; this.groups = new Map();
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
  }

  async load(data) {
    this.tasks = data.tasks;
    this.groups = new Map(data.groups.map((g) => [g.id, g]));
    this.runs = data.runs;
    this.cells = new Map(data.runs.map((r, i) => [r.run_id, data.cells[i]]));
    this.buildRows();
    this.draw();
    this.wrap.scrollLeft = this.wrap.scrollWidth;
  }

  /** Applies an event: new run list, changed columns. */
  update(update) {
    if (update.runs) this.runs = update.runs;
    for (const [runId, codes] of Object.entries(update.cells || {})) this.cells.set(runId, codes);
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
      if (!hidden) rows.push({ task: i, depth: chain.length, label: t.id.split(".").pop(), id: t.id });
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
    const order = "fpuhrqcnskx-";
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

    for (let r = firstRow; r < lastRow; r++) {
      const row = this.rows[r];
      const y = HEAD + r * ROW - top;
      if (r % 2) { ctx.fillStyle = "#fafbfc"; ctx.fillRect(0, y, width, ROW); }
      for (let c = firstRun; c < lastRun; c++) {
        const x = LABEL + c * CELL - left;
        const code = row.group !== undefined ? this.groupCode(row, c) : (this.cells.get(this.runs[c].run_id) || "")[row.task] || "-";
        const state = names[code];
        if (state === "") continue;
        ctx.fillStyle = colours[state];
        ctx.fillRect(x + 2, y + 3, CELL - 4, ROW - 6);
        ctx.strokeStyle = "rgba(0,0,0,.18)";
        ctx.strokeRect(x + 2.5, y + 3.5, CELL - 5, ROW - 7);
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
    // The header: one bar per run, its height its duration, its colour its state.
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, width, HEAD);
    ctx.fillStyle = "#e3e6ec";
    ctx.fillRect(0, HEAD - 1, width, 1);
    const durations = this.runs.map((run) => run.start_date ? ((run.end_date ? Date.parse(run.end_date) : Date.now()) - Date.parse(run.start_date)) : 0);
    const longest = Math.max(1, ...durations);
    for (let c = firstRun; c < lastRun; c++) {
      const run = this.runs[c];
      const x = LABEL + c * CELL - left;
      const h = Math.max(4, (durations[c] / longest) * (HEAD - 24));
      ctx.fillStyle = colours[run.state] || "#ccc";
      ctx.fillRect(x + 3, HEAD - 6 - h, CELL - 6, h);
    }
    ctx.fillStyle = "#6b7385";
    ctx.fillText(`${this.runs.length} run${this.runs.length === 1 ? "" : "s"} · ${this.tasks.length} task${this.tasks.length === 1 ? "" : "s"}`, 10, HEAD / 2);
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
    if (header && run) title = `${run.run_id}\n${run.state}\n${Gust.fmtDate(run.logical_date)}`;
    else if (row && run) {
      const code = row.group !== undefined ? this.groupCode(row, column) : (this.cells.get(run.run_id) || "")[row.task] || "-";
      title = `${row.group !== undefined ? row.group : row.id}\n${Gust.CODES[code] || "no task instance"}\n${run.run_id}`;
    } else if (row) title = row.group !== undefined ? (this.groups.get(row.group)?.tooltip || row.group) : row.id;
    this.canvas.title = title;
    this.canvas.style.cursor = (row && (run || row.group !== undefined)) || (header && run) ? "pointer" : "default";
  }

  click(event) {
    const { row, run, header } = this.at(event);
    const dag = Gust.path(this.dagId);
    if (header && run) { location.href = `/dags/${dag}/runs/${Gust.path(run.run_id)}`; return; }
    if (!row) return;
    if (row.group !== undefined && !run) {
      if (this.collapsed.has(row.group)) this.collapsed.delete(row.group); else this.collapsed.add(row.group);
      localStorage.setItem(`gust.collapsed.${this.dagId}`, JSON.stringify([...this.collapsed]));
      this.buildRows();
      this.schedule();
      return;
    }
    if (row.task !== undefined && run) {
      location.href = `/dags/${dag}/runs/${Gust.path(run.run_id)}/tasks/${Gust.path(this.tasks[row.task].id)}`;
    }
  }
}
