/* Drawing: DOM and SVG helpers, the journey graph, bar charts and interval plots.
   Every text goes in through textContent, never as HTML. */
"use strict";

(function () {
  var SVG = "http://www.w3.org/2000/svg";

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    setAll(node, attrs);
    append(node, children);
    return node;
  }

  function svg(tag, attrs, children) {
    var node = document.createElementNS(SVG, tag);
    setAll(node, attrs);
    append(node, children);
    return node;
  }

  function setAll(node, attrs) {
    Object.keys(attrs || {}).forEach(function (name) {
      var value = attrs[name];
      if (value === null || value === undefined || value === false) return;
      if (name === "text") node.textContent = String(value);
      else if (name.slice(0, 2) === "on") node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value === true ? "" : String(value));
    });
  }

  function append(node, children) {
    (Array.isArray(children) ? children : [children]).forEach(function (child) {
      if (child === null || child === undefined || child === false) return;
      node.appendChild(typeof child === "string" || typeof child === "number"
        ? document.createTextNode(String(child)) : child);
    });
  }

  function number(n) {
    return (n || 0).toLocaleString(window.currentLang());
  }

  function percent(rate) {
    if (rate === null || rate === undefined) return "–";
    return (100 * rate).toLocaleString(window.currentLang(), { maximumFractionDigits: 1 }) + "%";
  }

  /* Layers by breadth-first depth from the start; edges back up are drawn around. */
  function layout(graph) {
    var depth = {}, order = [], queue = [graph.start];
    var outgoing = {};
    graph.edges.forEach(function (e) { (outgoing[e.from] = outgoing[e.from] || []).push(e); });
    depth[graph.start] = 0;
    while (queue.length) {
      var name = queue.shift();
      order.push(name);
      (outgoing[name] || []).forEach(function (e) {
        if (e.to !== "end" && depth[e.to] === undefined) { depth[e.to] = depth[name] + 1; queue.push(e.to); }
      });
    }
    graph.steps.forEach(function (s) { if (depth[s.name] === undefined) { depth[s.name] = 0; order.push(s.name); } });
    var last = 0;
    order.forEach(function (n) { last = Math.max(last, depth[n]); });
    var hasEnd = graph.edges.some(function (e) { return e.to === "end"; });
    if (hasEnd) { depth.end = last + 1; order.push("end"); }
    var layers = [];
    order.forEach(function (n) { (layers[depth[n]] = layers[depth[n]] || []).push(n); });
    return { layers: layers, depth: depth };
  }

  /* The journey as boxes and arrows, each step annotated with its counts. */
  function journeyGraph(graph, stats) {
    var W = 196, H = 74, GX = 28, GY = 54, PAD = 16;
    var byName = {}, counts = {};
    graph.steps.forEach(function (s) { byName[s.name] = s; });
    ((stats && stats.steps) || []).forEach(function (s) { counts[s.name] = s; });
    var shape = layout(graph);
    var widest = Math.max.apply(null, shape.layers.map(function (l) { return l.length; }));
    var width = widest * W + (widest - 1) * GX + 2 * PAD;
    var height = shape.layers.length * H + (shape.layers.length - 1) * GY + 2 * PAD + 30;
    var pos = {};
    shape.layers.forEach(function (layer, row) {
      var rowWidth = layer.length * W + (layer.length - 1) * GX;
      var x0 = (width - rowWidth) / 2;
      layer.forEach(function (name, i) {
        pos[name] = { x: x0 + i * (W + GX), y: PAD + 30 + row * (H + GY) };
      });
    });
    var root = svg("svg", {
      viewBox: "0 0 " + width + " " + height, class: "graph", role: "img",
      "aria-label": window.t("journey.graph"), width: width, "data-steps": graph.steps.length
    });
    root.appendChild(svg("defs", {}, [
      svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" },
        [svg("path", { d: "M 0 0 L 10 5 L 0 10 z", class: "arrow-head" })])
    ]));
    // The trigger, above the start.
    var start = pos[graph.start];
    if (start) {
      root.appendChild(svg("text", { x: start.x + W / 2, y: PAD + 10, class: "trigger", "text-anchor": "middle" },
        "▶ " + graph.trigger.join(" | ") + (stats ? "  ·  " + window.t("entered") + " " + number(stats.entered) : "")));
      root.appendChild(svg("path", { d: "M " + (start.x + W / 2) + " " + (PAD + 16) + " V " + start.y, class: "edge", "marker-end": "url(#arrow)" }));
    }
    graph.edges.forEach(function (e) {
      var a = pos[e.from], b = pos[e.to];
      if (!a || !b) return;
      var x1 = a.x + W / 2, y1 = a.y + H, x2 = b.x + W / (e.to === "end" ? 2 : 2), y2 = b.y;
      if (e.to === "end") { x2 = b.x + W / 2; y2 = b.y + 8; }
      var d;
      if (b.y > a.y) {
        var mid = (y1 + y2) / 2;
        d = "M " + x1 + " " + y1 + " C " + x1 + " " + mid + ", " + x2 + " " + mid + ", " + x2 + " " + y2;
      } else { // back to an earlier step: around the right side
        var side = Math.max(a.x, b.x) + W + GX / 2;
        d = "M " + (a.x + W) + " " + (a.y + H / 2) + " C " + side + " " + (a.y + H / 2) + ", " + side + " " + (b.y + H / 2) + ", " + (b.x + W) + " " + (b.y + H / 2);
      }
      root.appendChild(svg("path", { d: d, class: "edge", "marker-end": "url(#arrow)" }));
      if (e.label && e.label !== "next") {
        var label = e.label === "event" || e.label === "timeout" || e.label === "else" ? window.t("edge." + e.label) : e.label;
        root.appendChild(svg("text", { x: (x1 + x2) / 2 + 4, y: (y1 + y2) / 2 - 2, class: "edge-label" }, label));
      }
    });
    Object.keys(pos).forEach(function (name) {
      var p = pos[name];
      if (name === "end") {
        root.appendChild(svg("g", { class: "node end" }, [
          svg("rect", { x: p.x + W / 2 - 36, y: p.y + 8, width: 72, height: 28, rx: 14 }),
          svg("text", { x: p.x + W / 2, y: p.y + 27, "text-anchor": "middle" }, window.t("kind.end"))
        ]));
        return;
      }
      var step = byName[name], c = counts[name] || { reached: 0, messages: { sent: 0, suppressed_total: 0, failed: 0 } };
      var line = window.t("reached") + " " + number(c.reached);
      if (step.kind === "send") {
        line += " · " + window.t("sent") + " " + number(c.messages.sent);
        if (c.messages.suppressed_total) line += " · " + window.t("suppressed") + " " + number(c.messages.suppressed_total);
      }
      var sub = window.tOr("kind", step.kind) + (step.channels.length ? " · " + step.channels.map(function (ch) { return window.tOr("channel", ch); }).join(" → ") : step.detail ? " · " + step.detail : "");
      root.appendChild(svg("g", { class: "node kind-" + step.kind, "data-step": name, "data-reached": c.reached }, [
        svg("title", {}, name + " — " + sub),
        svg("rect", { x: p.x, y: p.y, width: W, height: H, rx: 10 }),
        svg("rect", { x: p.x, y: p.y, width: 6, height: H, rx: 3, class: "stripe" }),
        svg("text", { x: p.x + 16, y: p.y + 22, class: "node-name" }, clip(name, 24)),
        svg("text", { x: p.x + 16, y: p.y + 41, class: "node-kind" }, clip(sub, 30)),
        svg("text", { x: p.x + 16, y: p.y + 61, class: "node-count" }, clip(line, 32))
      ]));
    });
    return root;
  }

  function clip(text, n) {
    text = String(text);
    return text.length > n ? text.slice(0, n - 1) + "…" : text;
  }

  /* Horizontal bars: rows of {label, value, detail, kind}; widths relative to the largest. */
  function bars(rows, options) {
    options = options || {};
    var top = Math.max.apply(null, [1].concat(rows.map(function (r) { return r.value; })));
    return el("div", { class: "bars " + (options.class || "") }, rows.map(function (r) {
      var share = Math.max(0, r.value) / top;
      var fill = el("div", { class: "bar-fill" });
      fill.style.width = (100 * share).toFixed(2) + "%"; // CSSOM: allowed by the page's CSP
      return el("div", { class: "bar-row " + (r.kind || ""), "data-label": r.key || r.label }, [
        el("div", { class: "bar-label", title: r.label }, r.label),
        el("div", { class: "bar-track" }, [
          fill,
          el("span", { class: "bar-value" }, r.text !== undefined ? r.text : number(r.value))
        ]),
        r.detail ? el("div", { class: "bar-detail" }, r.detail) : null
      ]);
    }));
  }

  /* A rate with its interval on a 0..100% axis, as a small SVG. */
  function intervalPlot(low, high, rate, leader) {
    var W = 220, H = 22, x = function (v) { return 6 + v * (W - 12); };
    return svg("svg", { viewBox: "0 0 " + W + " " + H, class: "interval" + (leader ? " leader" : ""), width: W, height: H }, [
      svg("line", { x1: x(0), x2: x(1), y1: H / 2, y2: H / 2, class: "axis" }),
      svg("line", { x1: x(low), x2: x(high), y1: H / 2, y2: H / 2, class: "span" }),
      svg("line", { x1: x(low), x2: x(low), y1: 5, y2: H - 5, class: "span" }),
      svg("line", { x1: x(high), x2: x(high), y1: 5, y2: H - 5, class: "span" }),
      rate === null ? null : svg("circle", { cx: x(rate), cy: H / 2, r: 4.5, class: "point" })
    ]);
  }

  window.Draw = { el: el, svg: svg, number: number, percent: percent, journeyGraph: journeyGraph, bars: bars, intervalPlot: intervalPlot };
})();
