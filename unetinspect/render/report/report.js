/* The unetinspect report's behaviour: colour the diagram by a metric, a sortable module tree that opens and
 * closes, and click-to-focus between the two. No libraries: the page must open from disk, offline.
 * The data comes from the JSON block #report-data that the Python side writes. */
"use strict";

(function () {
  const data = JSON.parse(document.getElementById("report-data").textContent);

  // ---- numbers as people read them (the same rules as unetinspect/render/units.py) ------------------------
  function human(n, unit) {
    const steps = [[1e12, "T"], [1e9, "G"], [1e6, "M"], [1e3, "k"]];
    for (const [size, prefix] of steps) {
      if (Math.abs(n) >= size) return (n / size).toFixed(1) + (unit ? " " + prefix + unit : prefix);
    }
    return String(n) + (unit ? " " + unit : "");
  }
  function bytes(n) {
    const steps = [[2 ** 40, "TiB"], [2 ** 30, "GiB"], [2 ** 20, "MiB"], [2 ** 10, "KiB"]];
    for (const [size, suffix] of steps) if (n >= size) return (n / size).toFixed(2) + " " + suffix;
    return n + " B";
  }
  const FORMATS = {
    params: (v) => (v ? human(v) : "–"),
    flops: (v) => (v ? human(v) : "–"),
    activation: (v) => (v ? bytes(v) : "–"),
    latency: (v) => (v == null ? "–" : v.toFixed(3)),
    saved: (v) => (v ? bytes(v) : "–"),
  };
  const svgId = (name) => name.replace(/[^A-Za-z0-9._:-]/g, "_");

  // ---- colouring nodes by a metric -----------------------------------------------------------------------
  const LOW = [255, 247, 236], HIGH = [241, 105, 19]; // light cream to deep orange: black text stays readable

  function colourAt(t) {
    const mix = LOW.map((low, i) => Math.round(low + (HIGH[i] - low) * t));
    return `rgb(${mix.join(",")})`;
  }

  function shapeOf(node) {
    return node.matches("button") ? node : node.querySelector("path, polygon, ellipse");
  }

  /* Fill every node of `container` whose id names a row with that row's value (square-root scale, so that
   * small blocks are still told apart); "type" restores the diagram's own colours. */
  function colourNodes(container, metric, rowsById) {
    const nodes = [...container.querySelectorAll(".node")].filter((n) => rowsById.has(n.id));
    const values = nodes.map((n) => rowsById.get(n.id)[metric] || 0);
    const max = Math.max(0, ...values);
    nodes.forEach((node, i) => {
      const shape = shapeOf(node);
      if (!shape) return;
      if (!("fill" in shape.dataset)) shape.dataset.fill = shape.getAttribute("fill") || "";
      const colour = metric === "type" ? shape.dataset.fill : colourAt(max ? Math.sqrt(values[i] / max) : 0);
      if (node.matches("button")) shape.style.background = colour;
      else shape.setAttribute("fill", colour);
      node.dataset.value = metric === "type" ? "" : String(values[i]);
    });
    return max;
  }

  // ---- the report ----------------------------------------------------------------------------------------
  function initReport() {
    const rows = data.rows;
    const rowsById = new Map(rows.map((r) => [svgId(r.name), r]));
    const children = new Map();
    rows.forEach((r) => {
      const key = r.parent === null ? "root" : r.parent;
      if (!children.has(key)) children.set(key, []);
      children.get(key).push(r);
    });
    const state = { metric: data.metrics[0].key, sort: null, direction: 1, open: new Set(), selected: null };
    const diagram = document.getElementById("diagram");
    const layers = document.getElementById("layers");
    const select = document.getElementById("metric");
    const tbody = document.querySelector("#tree tbody");

    function recolour() {
      const max = colourNodes(diagram, state.metric, rowsById);
      colourNodes(layers, state.metric, rowsById);
      const metric = data.metrics.find((m) => m.key === state.metric);
      document.getElementById("legend-max").textContent = metric ? FORMATS[metric.key](max) : "";
      document.getElementById("legend").hidden = !metric;
    }

    function sorted(list) {
      if (!state.sort) return list;
      const key = state.sort, sign = state.direction;
      return [...list].sort((a, b) => {
        const x = a[key], y = b[key];
        if (typeof x === "string" || typeof y === "string") return sign * String(x).localeCompare(String(y));
        return sign * ((x ?? -Infinity) - (y ?? -Infinity));
      });
    }

    function rowHtml(r) {
      const kids = children.has(r.index);
      const toggle = kids
        ? `<button type="button" aria-expanded="${state.open.has(r.index)}" data-toggle="${r.index}">` +
          `${state.open.has(r.index) ? "▾" : "▸"}</button>`
        : `<span class="leaf"></span>`;
      const indent = (r.depth - 1) * 1.2;
      // --names: the name as asked (input_blocks.4.1, IN04); else a layer by the part of its path that is its own
      const own = r.shown || (r.depth === 1 ? r.name : r.name.split(".").slice(-2).join("."));
      const latency = data.metrics.some((m) => m.key === "latency")
        ? `<td class="num">${FORMATS.latency(r.latency)}</td>` : "";
      const saved = data.metrics.some((m) => m.key === "saved")
        ? `<td class="num">${FORMATS.saved(r.saved)}</td>` : "";
      return `<tr data-index="${r.index}" class="${state.selected === r.index ? "selected" : ""}">` +
        `<td class="name" style="padding-left:${indent + 0.3}em" title="${r.name}">${toggle}${own}</td>` +
        `<td class="type">${r.type}</td><td>${r.input}</td><td>${r.output}</td>` +
        `<td class="num">${FORMATS.params(r.params)}</td><td class="num">${FORMATS.flops(r.flops)}</td>` +
        `<td class="num">${FORMATS.activation(r.activation)}</td>${latency}${saved}</tr>`;
    }

    function renderTree() {
      const html = [];
      const walk = (list) => {
        for (const r of sorted(list)) {
          html.push(rowHtml(r));
          if (state.open.has(r.index) && children.has(r.index)) walk(children.get(r.index));
        }
      };
      walk(children.get("root") || []);
      tbody.innerHTML = html.join("");
    }

    function showLayers(block) {
      const template = document.getElementById("layers:" + block.name);
      layers.innerHTML = "";
      const title = document.createElement("h3");
      title.textContent = `${block.name} · ${block.type}`;
      layers.append(title);
      if (template) layers.append(template.content.cloneNode(true));
      else layers.append(Object.assign(document.createElement("p"), { className: "note",
        textContent: "No layer diagram for this module (it has no layers, or Graphviz was missing)." }));
      recolour();
    }

    /* Open a row (and its ancestors) in the tree, select it, scroll to it; for a block, show its layers. */
    function focus(row) {
      for (let p = row.parent; p !== null; p = rows[p].parent) state.open.add(p);
      if (children.has(row.index)) state.open.add(row.index);
      state.selected = row.index;
      renderTree();
      const tr = tbody.querySelector(`tr[data-index="${row.index}"]`);
      const wrap = tbody.closest(".tree-wrap");
      if (tr) wrap.scrollTop = tr.offsetTop - wrap.clientHeight / 3; // scroll the tree only, not the page
      let block = row;
      while (block.parent !== null) block = rows[block.parent];
      diagram.querySelectorAll(".node.focused").forEach((n) => n.classList.remove("focused"));
      const node = diagram.querySelector(`.node[id="${CSS.escape(svgId(block.name))}"]`);
      if (node) node.classList.add("focused");
      if (layers.dataset.block !== block.name) {
        layers.dataset.block = block.name;
        showLayers(block);
      }
    }

    function onNodeClick(event) {
      const node = event.target.closest(".node");
      if (node && rowsById.has(node.id)) focus(rowsById.get(node.id));
    }

    diagram.addEventListener("click", onNodeClick);
    layers.addEventListener("click", onNodeClick);
    select.addEventListener("change", () => { state.metric = select.value; recolour(); });
    tbody.addEventListener("click", (event) => {
      const toggle = event.target.closest("button[data-toggle]");
      const tr = event.target.closest("tr");
      if (toggle) {
        const index = Number(toggle.dataset.toggle);
        if (state.open.has(index)) state.open.delete(index); else state.open.add(index);
        renderTree();
      } else if (tr) {
        focus(rows[Number(tr.dataset.index)]);
      }
    });
    document.querySelectorAll("#tree th[data-key]").forEach((th) => th.addEventListener("click", () => {
      const key = th.dataset.key;
      if (state.sort === key && state.direction === -1) { state.sort = null; state.direction = 1; }
      else if (state.sort === key) state.direction = -1;
      else { state.sort = key; state.direction = key === "name" || key === "type" ? 1 : -1; }
      document.querySelectorAll("#tree th").forEach((h) => h.removeAttribute("aria-sort"));
      if (state.sort) th.setAttribute("aria-sort", state.direction === 1 ? "ascending" : "descending");
      renderTree();
    }));

    /* A branch on the diagram: blocks none of whose layers it runs fade, blocks it runs in part are dashed. */
    function showBranch(index) {
      const runs = new Set(index === null ? [] : data.branches[index]);
      const blockOf = (row) => { while (row.parent !== null) row = rows[row.parent]; return row; };
      const layersOf = new Map(); // block name → [ran, total] over the rows a branch is made of
      rows.filter((r) => r.depth === 2 || (r.depth === 1 && !children.has(r.index))).forEach((r) => {
        const counts = layersOf.get(blockOf(r).name) || [0, 0];
        counts[0] += runs.has(r.name) ? 1 : 0;
        counts[1] += 1;
        layersOf.set(blockOf(r).name, counts);
      });
      diagram.querySelectorAll(".node").forEach((node) => {
        const row = rowsById.get(node.id);
        const [ran, total] = (row && layersOf.get(row.name)) || [0, 0];
        node.classList.toggle("skipped", index !== null && row !== undefined && ran === 0);
        node.classList.toggle("partial", index !== null && ran > 0 && ran < total);
      });
      document.querySelectorAll("#branches tbody tr").forEach((tr) =>
        tr.classList.toggle("selected", index !== null && Number(tr.dataset.branch) === index));
    }

    const branchTable = document.querySelector("#branches tbody");
    if (branchTable) {
      let shown = null;
      branchTable.addEventListener("click", (event) => {
        const tr = event.target.closest("tr[data-branch]");
        if (!tr) return;
        const index = Number(tr.dataset.branch);
        shown = shown === index ? null : index;
        showBranch(shown);
      });
    }

    renderTree();
    recolour();
  }

  // ---- the comparison ------------------------------------------------------------------------------------
  function initCompare() {
    for (const side of ["a", "b"]) {
      const container = document.getElementById("diagram-" + side);
      for (const [name, status] of Object.entries(data.status[side])) {
        const node = container.querySelector(`.node[id="${CSS.escape(svgId(name))}"]`);
        if (node) { node.classList.add("status-" + status); node.dataset.status = status; }
      }
    }
    document.querySelectorAll("#comparison tbody tr").forEach((tr) => tr.addEventListener("click", () => {
      document.querySelectorAll(".node.focused").forEach((n) => n.classList.remove("focused"));
      for (const side of ["a", "b"]) {
        const name = tr.dataset[side];
        const node = name && document.querySelector(`#diagram-${side} .node[id="${CSS.escape(svgId(name))}"]`);
        if (node) { node.classList.add("focused"); node.scrollIntoView({ block: "center" }); }
      }
    }));
  }

  // ---- attention maps: hovering a token draws its map in every block's canvas ------------------------------
  // Each value is a level 0..255 and maps.colours[level] its colour: the table the PNG grid paints with
  // (render/colormap.py), handed over in the page's data rather than written here a second time.
  function initAttention() {
    const maps = data.attention;
    if (!maps) return;
    const buttons = [...document.querySelectorAll("#attention .token")];
    const canvases = [...document.querySelectorAll("#attention canvas")];
    function show(token) {
      canvases.forEach((canvas, c) => {
        const context = canvas.getContext("2d");
        const image = context.createImageData(canvas.width, canvas.height);
        const alpha = canvas.classList.contains("over") ? 150 : 255; // over a picture: see-through
        maps.maps[token][c].forEach((v, i) => image.data.set([...maps.colours[v], alpha], 4 * i));
        context.putImageData(image, 0, 0);
        canvas.dataset.token = String(token);
      });
      buttons.forEach((b) => b.classList.toggle("selected", Number(b.dataset.token) === token));
    }
    buttons.forEach((b) => {
      b.addEventListener("mouseenter", () => show(Number(b.dataset.token)));
      b.addEventListener("focus", () => show(Number(b.dataset.token)));
    });
    show(0);
  }

  if (data.kind === "report") { initReport(); initAttention(); }
  else if (data.kind === "compare") initCompare();
  else if (data.kind === "run") initAttention();
})();
