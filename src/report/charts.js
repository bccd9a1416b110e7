// The chart code the console (console.html) and the backtest report (backtest.html) share,
// spliced into both pages in place of their marker line (page.rs: CHARTS_MARKER). Plain
// functions, no modules: the pages are single self-contained files.
const SVG = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);
const fmt = (n, digits) => (n === null || n === undefined) ? "–"
  : Number(n).toLocaleString("en-US", { maximumFractionDigits: digits || 0 });

// Every name from the data is set as text (textContent) or an attribute, never as HTML.
function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

// A line or bar chart of series [{name, color, points: [[x, y], …]}] as inline SVG.
function chart(containerId, series, opts) {
  const W = opts.width || 640, H = 200, L = 48, R = 8, T = 8, B = 22;
  const box = $(containerId);
  box.replaceChildren();
  const all = series.flatMap((s) => s.points).filter((p) => p[1] !== null && p[1] !== undefined);
  if (all.length === 0) {
    box.append(el("div", { "class": "note" }, opts.empty || "no data yet"));
    return;
  }
  const xs = all.map((p) => p[0]), pad = opts.stacked ? 0.5 : 0;
  const x0 = Math.min(...xs) - pad, x1 = Math.max(...xs) + pad;
  let ymax = opts.stacked ? Math.max(...stackTotals(series).values()) : Math.max(...all.map((p) => p[1]));
  ymax = ymax > 0 ? ymax : 1;
  if (all.every((p) => Number.isInteger(p[1]))) ymax = Math.max(2, Math.ceil(ymax / 2) * 2);
  const sx = (x) => L + (x1 === x0 ? (W - L - R) / 2 : (x - x0) / (x1 - x0) * (W - L - R));
  const sy = (y) => T + (H - T - B) * (1 - y / ymax);
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("class", "chart");
  const add = (tag, attrs, text) => {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
    if (text !== undefined) e.textContent = text;
    svg.append(e);
    return e;
  };
  for (const f of [0, 0.5, 1]) {
    add("line", { x1: L, x2: W - R, y1: sy(ymax * f), y2: sy(ymax * f), stroke: "#e6e9ef" });
    add("text", { x: L - 4, y: sy(ymax * f) + 3, "text-anchor": "end" }, fmt(ymax * f, ymax < 10 ? 1 : 0));
  }
  add("text", { x: L, y: H - 6 }, "epoch " + (x0 + pad));
  add("text", { x: W - R, y: H - 6, "text-anchor": "end" }, "epoch " + (x1 - pad));
  const bw = Math.max(1, (W - L - R) / Math.max(1, x1 - x0) * 0.85);
  if (opts.stacked) {
    const base = new Map();
    series.forEach((s) => s.points.forEach(([x, y]) => {
      if (!y) return;
      const b = base.get(x) || 0;
      add("rect", { x: sx(x) - bw / 2, y: sy(b + y), width: bw, height: sy(b) - sy(b + y), fill: s.color });
      base.set(x, b + y);
    }));
  } else {
    series.forEach((s) => {
      const pts = s.points.filter((p) => p[1] !== null && p[1] !== undefined);
      if (pts.length === 1) add("circle", { cx: sx(pts[0][0]), cy: sy(pts[0][1]), r: 3, fill: s.color });
      add("polyline", { points: pts.map(([x, y]) => sx(x).toFixed(1) + "," + sy(y).toFixed(1)).join(" "),
        fill: "none", stroke: s.color, "stroke-width": 1.5 });
    });
  }
  box.append(svg);
  const legend = el("div", { "class": "legend" });
  series.forEach((s) => {
    const item = el("span");
    item.append(el("span", { "class": "swatch", style: "background:" + s.color }), s.name);
    legend.append(item);
  });
  box.append(legend);
}
function stackTotals(series) {
  const t = new Map([[0, 0]]);
  series.forEach((s) => s.points.forEach(([x, y]) => t.set(x, (t.get(x) || 0) + (y || 0))));
  return t;
}

