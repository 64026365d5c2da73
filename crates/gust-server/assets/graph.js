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
    // Folded groups are shared with the grid (the same choice, remembered per DAG).
    this.collapsedKey = `gust.collapsed.${dagId}`;
    this.collapsed = new Set(JSON.parse(localStorage.getItem(this.collapsedKey) || "[]"));
    this.select = document.getElementById("graph-run");
    this.select.addEventListener("change", () => { this.selected = this.select.value; this.paint(); });
    document.getElementById("fit").addEventListener("click", () => this.fit());
    document.getElementById("zoom-in").addEventListener("click", () => this.zoom(1.25));
    document.getElementById("zoom-out").addEventListener("click", () => this.zoom(0.8));
    // Read the layout while the page reads the grid's states.
    this.graphRead = this.readLayout();
  }

  /** The layout with the folded groups as single nodes (the server lays out and caches it). */
  readLayout() {
    const folded = [...this.collapsed].sort().join(",");
    return Gust.api("GET", `/ui/api/dags/${Gust.path(this.dagId)}/graph${folded ? `?collapsed=${encodeURIComponent(folded)}` : ""}`);
  }

  /** Folds or unfolds a group, and draws the graph again. */
  async toggle(group) {
    if (this.collapsed.has(group)) this.collapsed.delete(group); else this.collapsed.add(group);
    // Only groups that still exist are kept (a DAG's groups change with its file).
    const known = new Set((this.graph?.groups || []).map((g) => g.id));
    this.collapsed = new Set([...this.collapsed].filter((g) => known.has(g)));
    localStorage.setItem(this.collapsedKey, JSON.stringify([...this.collapsed]));
    this.graph = await this.readLayout();
    this.drawGraph();
    this.paint();
  }

  async load(grid) {
    this.graph = await this.graphRead;
    this.index = new Map(grid.tasks.map((t, i) => [t.id, i]));
    this.runs = grid.runs;
    this.cells = new Map(grid.runs.map((r, i) => [r.run_id, grid.cells[i]]));
    this.selected = grid.runs.length ? grid.runs[grid.runs.length - 1].run_id : null;
    this.fillRuns();
    this.drawGraph();
    // Start fitted, but never so small that the tasks cannot be read; Fit shows it all.
    this.fit(0.3);
    this.paint();
  }

  drawGraph() {
    const graph = this.graph;
    const W = graph.node_width, H = graph.node_height, pad = 20, gap = graph.group_gap || 22;
    const pos = graph.positions, nodes = graph.nodes;
    // Every edge in one path and every arrowhead (a small triangle where the edge, arriving
    // level, meets its node) in another: two elements however large the DAG.
    let d = "", heads = "";
    for (const [a, b] of graph.edges) {
      const x1 = pos[a][0] + W, y1 = pos[a][1] + H / 2, x2 = pos[b][0] - 1, y2 = pos[b][1] + H / 2;
      const mx = (x1 + x2) / 2;
      d += `M${x1} ${y1}C${mx} ${y1} ${mx} ${y2} ${x2 - 6} ${y2}`;
      heads += `M${x2 - 7} ${y2 - 4}L${x2} ${y2}L${x2 - 7} ${y2 + 4}Z`;
    }
    // Open groups as boxes around their nodes (and their open subgroups' boxes), outermost
    // drawn first; the server keeps a group's nodes together in each column.
    const parentOf = new Map(graph.groups.map((g) => [g.id, g.parent]));
    const boxes = new Map();
    const grow = (group, x1, y1, x2, y2) => {
      for (let g = group; g; g = parentOf.get(g)) {
        const b = boxes.get(g) || { x1: Infinity, y1: Infinity, x2: -Infinity, y2: -Infinity, depth: 0 };
        b.x1 = Math.min(b.x1, x1); b.y1 = Math.min(b.y1, y1); b.x2 = Math.max(b.x2, x2); b.y2 = Math.max(b.y2, y2);
        boxes.set(g, b);
      }
    };
    nodes.forEach((n, i) => grow(n.group, pos[i][0], pos[i][1], pos[i][0] + W, pos[i][1] + H));
    const depthOf = (g) => { let k = 0; for (let p = parentOf.get(g); p; p = parentOf.get(p)) k++; return k; };
    // A box's margin shrinks with depth, so nested boxes sit inside their parents'.
    const deepest = Math.max(0, ...[...boxes.keys()].map(depthOf));
    const parts = [`<svg xmlns="http://www.w3.org/2000/svg" viewBox="${-pad} ${-pad} ${graph.width + 2 * pad} ${graph.height + 2 * pad}">`];
    for (const [g, b] of [...boxes.entries()].sort((p, q) => depthOf(p[0]) - depthOf(q[0]))) {
      const m = 6 + (deepest - depthOf(g)) * 6;
      const name = g.slice(g.lastIndexOf(".") + 1);
      parts.push(`<g class="group" data-group="${Gust.escapeHtml(g)}"><title>${Gust.escapeHtml(g)} (click its name to fold)</title>`
        + `<rect x="${b.x1 - m}" y="${b.y1 - m - gap + 6}" width="${b.x2 - b.x1 + 2 * m}" height="${b.y2 - b.y1 + 2 * m + gap - 6}"/>`
        + `<text class="group-name" x="${b.x1 - m + 6}" y="${b.y1 - m - gap + 19}">▾ ${Gust.escapeHtml(name)}</text></g>`);
    }
    parts.push(`<path class="edges" d="${d}"/><path class="arrows" d="${heads}"/>`);
    const cut = (text, most) => (text.length > most ? `${text.slice(0, most - 1)}…` : text);
    nodes.forEach((n, i) => {
      const [x, y] = pos[i];
      if (n.kind === "group") {
        const name = n.id.slice(n.id.lastIndexOf(".") + 1);
        parts.push(`<g class="node folded" data-i="${i}" data-group="${Gust.escapeHtml(n.id)}" transform="translate(${x},${y})">`
          + `<title>${Gust.escapeHtml(n.id)}: ${n.members.length} tasks (click to unfold)</title>`
          + `<rect width="${W}" height="${H}" fill="#fff"/><text class="id" x="10" y="16">▸ ${Gust.escapeHtml(cut(name, 24))}</text>`
          + `<text class="op" x="10" y="31">group · ${n.members.length} task${n.members.length === 1 ? "" : "s"}</text></g>`);
        return;
      }
      // A group's tasks are named `group.task`: the node shows the task's own name, the
      // tooltip its whole id; a mapped task's carries Airflow's "[ ]".
      const name = `${n.id.slice(n.id.lastIndexOf(".") + 1)}${n.mapped ? " [ ]" : ""}`;
      parts.push(`<g class="node" data-i="${i}" transform="translate(${x},${y})"><title>${Gust.escapeHtml(n.id)} (${Gust.escapeHtml(n.operator)})</title>`
        + `<rect width="${W}" height="${H}" fill="#fff"/><text class="id" x="10" y="16">${Gust.escapeHtml(cut(name, 26))}</text>`
        + `<text class="op" x="10" y="31">${Gust.escapeHtml(cut(n.operator, 30))}</text></g>`);
    });
    parts.push("</svg>");
    this.wrap.innerHTML = parts.join("");
    this.svg = this.wrap.querySelector("svg");
    this.rects = [...this.svg.querySelectorAll(".node rect")];
    this.labels = [...this.svg.querySelectorAll(".node")].map((g) => [...g.querySelectorAll("text")]);
    this.svg.addEventListener("click", (e) => {
      const name = e.target.closest(".group-name");
      if (name) { this.toggle(name.closest(".group").dataset.group); return; }
      const node = e.target.closest(".node");
      if (!node) return;
      const n = graph.nodes[Number(node.dataset.i)];
      if (n.kind === "group") { this.toggle(n.id); return; }
      if (!this.selected) return;
      location.href = `/dags/${Gust.path(this.dagId)}?tab=grid&run_id=${encodeURIComponent(this.selected)}&task_id=${encodeURIComponent(n.id)}${n.mapped ? "&mapped=1" : ""}`;
    });
    this.apply();
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
    const order = "fpuhrdqcnskx-";
    this.graph.nodes.forEach((n, i) => {
      let code;
      if (n.kind === "group") {
        // A folded group shows its most pressing task's state, as the grid's folded row does.
        code = n.members.reduce((best, m) => {
          const c = codes[m] || "-";
          return order.indexOf(c) < order.indexOf(best) ? c : best;
        }, "-");
      } else {
        code = codes[this.index.get(n.id)] || "-";
      }
      const state = Gust.CODES[code];
      const fill = state ? Gust.COLOURS[state] : "#fff";
      this.rects[i].setAttribute("fill", fill);
      const ink = Gust.inkOn(fill);
      for (const label of this.labels[i]) label.setAttribute("fill", ink);
    });
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
    if (!this.svg) return;
    this.svg.setAttribute("width", (g.width + 40) * this.scale);
    this.svg.setAttribute("height", (g.height + 40) * this.scale);
  }
}
