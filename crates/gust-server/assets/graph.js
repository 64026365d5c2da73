// The graph: the DAG left to right as SVG, laid out by the server (once per DAG version), each
// node coloured by its state in the chosen run. One <path> holds every edge, so 5,000 tasks are
// about 5,000 elements; recolouring a run only sets fills.
"use strict";

class GustGraph {
  constructor(wrap, dagId) {
    this.wrap = wrap;
    this.dagId = dagId;
    this.scale = 1;
    this.runs = []; this.cells = new Map(); this.selected = null;
    this.select = document.getElementById("graph-run");
    this.select.addEventListener("change", () => { this.selected = this.select.value; this.paint(); });
    document.getElementById("fit").addEventListener("click", () => this.fit());
    document.getElementById("zoom-in").addEventListener("click", () => this.zoom(1.25));
    document.getElementById("zoom-out").addEventListener("click", () => this.zoom(0.8));
    // Read the layout while the page reads the grid's states.
    this.graphRead = Gust.api("GET", `/ui/api/dags/${Gust.path(dagId)}/graph`);
  }

  async load(grid) {
    const graph = await this.graphRead;
    this.graph = graph;
    const W = graph.node_width, H = graph.node_height, pad = 20;
    const pos = graph.positions;
    // Every edge in one path and every arrowhead (a small triangle where the edge, arriving
    // level, meets its task) in another: two elements however large the DAG.
    let d = "", heads = "";
    for (const [a, b] of graph.edges) {
      const x1 = pos[a][0] + W, y1 = pos[a][1] + H / 2, x2 = pos[b][0] - 1, y2 = pos[b][1] + H / 2;
      const mx = (x1 + x2) / 2;
      d += `M${x1} ${y1}C${mx} ${y1} ${mx} ${y2} ${x2 - 6} ${y2}`;
      heads += `M${x2 - 7} ${y2 - 4}L${x2} ${y2}L${x2 - 7} ${y2 + 4}Z`;
    }
    const parts = [`<svg xmlns="http://www.w3.org/2000/svg" viewBox="${-pad} ${-pad} ${graph.width + 2 * pad} ${graph.height + 2 * pad}">`,
      `<path class="edges" d="${d}"/><path class="arrows" d="${heads}"/>`];
    const cut = (text, most) => (text.length > most ? `${text.slice(0, most - 1)}…` : text);
    graph.tasks.forEach((t, i) => {
      const [x, y] = pos[i];
      // A group's tasks are named `group.task`: the node shows the task's own name, the
      // tooltip its whole id.
      const name = t.id.includes(".") ? t.id.slice(t.id.lastIndexOf(".") + 1) : t.id;
      parts.push(`<g class="node" data-i="${i}" transform="translate(${x},${y})"><title>${Gust.escapeHtml(t.id)} (${Gust.escapeHtml(t.operator)})</title>`
        + `<rect width="${W}" height="${H}" fill="#fff"/><text class="id" x="10" y="16">${Gust.escapeHtml(cut(name, 26))}</text>`
        + `<text class="op" x="10" y="31">${Gust.escapeHtml(cut(t.operator, 30))}</text></g>`);
    });
    parts.push("</svg>");
    this.wrap.innerHTML = parts.join("");
    this.svg = this.wrap.querySelector("svg");
    this.rects = [...this.svg.querySelectorAll(".node rect")];
    this.labels = [...this.svg.querySelectorAll(".node")].map((g) => [...g.querySelectorAll("text")]);
    this.svg.addEventListener("click", (e) => {
      const node = e.target.closest(".node");
      if (!node || !this.selected) return;
      const task = graph.tasks[Number(node.dataset.i)].id;
      location.href = `/dags/${Gust.path(this.dagId)}/runs/${Gust.path(this.selected)}/tasks/${Gust.path(task)}`;
    });
    this.index = new Map(grid.tasks.map((t, i) => [t.id, i]));
    this.runs = grid.runs;
    this.cells = new Map(grid.runs.map((r, i) => [r.run_id, grid.cells[i]]));
    this.selected = grid.runs.length ? grid.runs[grid.runs.length - 1].run_id : null;
    this.fillRuns();
    // Start fitted, but never so small that the tasks cannot be read; Fit shows it all.
    this.fit(0.3);
    this.paint();
  }

  fillRuns() {
    const keep = this.selected;
    this.select.replaceChildren(...this.runs.slice().reverse().map((r) =>
      Gust.el("option", { value: r.run_id }, `${Gust.fmtDate(r.logical_date)} · ${r.run_id} (${r.state})`)));
    if (keep) this.select.value = keep;
  }

  update(update) {
    const followLatest = !this.selected || (this.runs.length && this.selected === this.runs[this.runs.length - 1].run_id);
    if (update.runs) {
      this.runs = update.runs;
      if (followLatest && this.runs.length) this.selected = this.runs[this.runs.length - 1].run_id;
      this.fillRuns();
    }
    for (const [runId, codes] of Object.entries(update.cells || {})) this.cells.set(runId, codes);
    this.paint();
  }

  paint() {
    if (!this.rects) return;
    const codes = (this.selected && this.cells.get(this.selected)) || "";
    const byGraph = this.graph.tasks;
    for (let i = 0; i < this.rects.length; i++) {
      const gi = this.index.get(byGraph[i].id);
      const state = Gust.CODES[codes[gi] || "-"];
      const fill = state ? Gust.COLOURS[state] : "#fff";
      this.rects[i].setAttribute("fill", fill);
      const ink = Gust.inkOn(fill);
      for (const label of this.labels[i]) label.setAttribute("fill", ink);
    }
  }

  fit(least = 0.01) {
    const g = this.graph;
    const sx = (this.wrap.clientWidth - 20) / (g.width + 40), sy = (this.wrap.clientHeight - 20) / (g.height + 40);
    this.scale = Math.max(least, Math.min(1.2, Math.min(sx, sy)));
    this.apply();
  }

  zoom(factor) { this.scale = Math.max(0.01, Math.min(4, this.scale * factor)); this.apply(); }

  apply() {
    const g = this.graph;
    this.svg.setAttribute("width", (g.width + 40) * this.scale);
    this.svg.setAttribute("height", (g.height + 40) * this.scale);
  }
}
