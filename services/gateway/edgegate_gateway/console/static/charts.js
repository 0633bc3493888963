// SVG charts drawn here (no library): line charts over time and a bar chart. They are drawn at
// the pixel width of their box (measured on the live page) so text never scales down to
// unreadable sizes on a phone; console.js redraws when the width changes.
import { h, svg } from "./dom.js";
import { clock, num } from "./format.js";

const MARGIN = { top: 12, right: 14, bottom: 26, left: 58 };
const MIN_WIDTH_PX = 240;

/** The width the chart with this id has on the live page (fallback before its first draw). */
export function measuredWidth(id, fallback = 560) {
  const box = document.querySelector(`#${CSS.escape(id)} .chart-box`);
  const width = box ? box.clientWidth : 0;
  return Math.max(MIN_WIDTH_PX, width || fallback);
}

/** True when some chart was drawn for a width it no longer has (first draw, window resized). */
export function chartsNeedRedraw(root) {
  for (const box of root.querySelectorAll(".chart-box[data-width]")) {
    const drawn = Number(box.getAttribute("data-width"));
    if (box.clientWidth && Math.abs(box.clientWidth - drawn) > 2) return true;
  }
  return false;
}

function niceStep(span, count) {
  const raw = span / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const f = raw / power;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * power;
}

/** Y ticks from 0 to a round maximum; all-zero data still gets a 0..1 axis. */
function yScale(values, heightPx, { integer = false } = {}) {
  const max = Math.max(0, ...values.filter((v) => v !== null && Number.isFinite(v)));
  const nice = niceStep(max > 0 ? max : 1, 4);
  const step = integer ? Math.max(1, Math.round(nice)) : nice; // counts have no fractions
  const top = max > 0 ? Math.max(step, Math.ceil(max / step) * step) : Math.max(1, step);
  const digits = step >= 1 ? 0 : Math.ceil(-Math.log10(step));
  const ticks = [];
  for (let v = 0; v <= top + step / 2; v += step) ticks.push(v);
  return { top, ticks, digits, y: (v) => MARGIN.top + heightPx * (1 - v / top) };
}

function timeTicks(startMs, endMs, widthPx) {
  const spanS = (endMs - startMs) / 1000;
  const choices = [60, 120, 300, 600, 900, 1800, 3600, 7200, 21600];
  const maxTicks = Math.max(2, Math.floor(widthPx / 72));
  const every = (choices.find((c) => spanS / c <= maxTicks) || 43200) * 1000;
  const ticks = [];
  for (let t = Math.ceil(startMs / every) * every; t <= endMs; t += every) ticks.push(t);
  return ticks;
}

function yAxis(scale, plotW, unit, heightPx) {
  const midY = MARGIN.top + heightPx / 2;
  return svg(
    "g",
    { class: "axis axis-y" },
    scale.ticks.map((v) => {
      const y = scale.y(v);
      return svg(
        "g",
        null,
        svg("line", { class: "grid", x1: MARGIN.left, x2: MARGIN.left + plotW, y1: y, y2: y }),
        svg("text", { x: MARGIN.left - 6, y: y + 4, "text-anchor": "end" }, num(v, scale.digits)),
      );
    }),
    svg("text", { class: "axis-title", transform: `translate(14 ${midY}) rotate(-90)`, "text-anchor": "middle" }, unit),
  );
}

/** Path segments for one series; nulls (no requests) leave gaps instead of a false zero. */
function seriesShapes(values, xs, scale, tone, dashed) {
  const shapes = [];
  let run = [];
  const flush = () => {
    if (run.length === 1) shapes.push(svg("circle", { class: `dot tone-${tone}`, cx: run[0][0], cy: run[0][1], r: 2.5 }));
    else if (run.length > 1) {
      const d = run.map(([x, y], i) => `${i ? "L" : "M"}${x.toFixed(1)} ${y.toFixed(1)}`).join("");
      shapes.push(svg("path", { class: `line tone-${tone}${dashed ? " dashed" : ""}`, d }));
    }
    run = [];
  };
  values.forEach((v, i) => {
    if (v === null || v === undefined || !Number.isFinite(v)) flush();
    else run.push([xs[i], scale.y(v)]);
  });
  flush();
  return shapes;
}

function lastValue(values) {
  for (let i = values.length - 1; i >= 0; i -= 1) if (values[i] !== null && values[i] !== undefined) return values[i];
  return null;
}

function legend(series, format) {
  return h(
    "ul",
    { class: "legend" },
    series.map((s) =>
      h(
        "li",
        null,
        h("span", { class: `swatch tone-${s.tone}${s.dashed ? " dashed" : ""}`, "aria-hidden": "true" }),
        `${s.label} `,
        h("span", { class: "legend-value" }, format(lastValue(s.values))),
      ),
    ),
  );
}

/**
 * A line chart over time. times: Date[] (oldest first); series: [{label, values, tone, dashed}];
 * format(v) writes a value with its unit for the legend and the text summary.
 */
export function lineChart({ id, title, unit, times, series, windowS, format, heightPx = 180 }) {
  const width = measuredWidth(id);
  const plotW = width - MARGIN.left - MARGIN.right;
  const endMs = times.length ? times[times.length - 1].getTime() : Date.now();
  const startMs = endMs - windowS * 1000;
  const x = (t) => MARGIN.left + (plotW * (t - startMs)) / (endMs - startMs);
  const scale = yScale(series.flatMap((s) => s.values), heightPx);
  const xs = times.map((t) => x(t.getTime()));
  const baseY = MARGIN.top + heightPx;
  const summary = series.map((s) => `${s.label} ${format(lastValue(s.values))}`).join(", ");
  const plot = svg(
    "svg",
    { class: "chart", width, height: baseY + MARGIN.bottom, viewBox: `0 0 ${width} ${baseY + MARGIN.bottom}`, role: "img", "aria-labelledby": `${id}-svg-title` },
    svg("title", { id: `${id}-svg-title` }, `${title} over the last ${Math.round(windowS / 60)} minutes, in ${unit}. Latest: ${summary}.`),
    yAxis(scale, plotW, unit, heightPx),
    svg(
      "g",
      { class: "axis axis-x" },
      svg("line", { class: "baseline", x1: MARGIN.left, x2: MARGIN.left + plotW, y1: baseY, y2: baseY }),
      timeTicks(startMs, endMs, plotW).map((t) =>
        svg("g", null, svg("line", { class: "tick", x1: x(t), x2: x(t), y1: baseY, y2: baseY + 4 }), svg("text", { x: x(t), y: baseY + 17, "text-anchor": "middle" }, clock(new Date(t), { seconds: false }))),
      ),
    ),
    series.map((s) => svg("g", { class: "series" }, seriesShapes(s.values, xs, scale, s.tone, s.dashed))),
    times.length ? null : svg("text", { class: "no-data", x: MARGIN.left + plotW / 2, y: MARGIN.top + heightPx / 2, "text-anchor": "middle" }, "No data yet"),
  );
  return figure(id, title, width, [legend(series, format), plot], `Latest: ${summary}.`);
}

function figure(id, title, width, body, summary) {
  return h(
    "figure",
    { class: "chart-card card", id, "data-key": id },
    h("figcaption", { class: "chart-title" }, title),
    h("div", { class: "chart-box", "data-width": width }, body),
    h("p", { class: "visually-hidden" }, summary),
  );
}

/** A bar chart: categories along x (e.g. batch sizes), counts up y (e.g. executions). */
export function barChart({ id, title, xTitle, yTitle, categories, values, heightPx = 150 }) {
  const width = measuredWidth(id, 360);
  const plotW = width - MARGIN.left - MARGIN.right;
  const scale = yScale(values, heightPx, { integer: true });
  const band = plotW / Math.max(1, categories.length);
  const barW = Math.max(2, Math.min(48, band * 0.7));
  const baseY = MARGIN.top + heightPx;
  const labelEvery = Math.ceil(28 / band);
  const total = values.reduce((a, b) => a + b, 0);
  const summary = categories.map((c, i) => `${xTitle} ${c}: ${num(values[i])} ${yTitle}`).join("; ");
  const plot = svg(
    "svg",
    { class: "chart", width, height: baseY + MARGIN.bottom + 14, viewBox: `0 0 ${width} ${baseY + MARGIN.bottom + 14}`, role: "img", "aria-labelledby": `${id}-svg-title` },
    svg("title", { id: `${id}-svg-title` }, `${title}: ${summary || "no executions yet"}.`),
    yAxis(scale, plotW, yTitle, heightPx),
    svg("line", { class: "baseline", x1: MARGIN.left, x2: MARGIN.left + plotW, y1: baseY, y2: baseY }),
    categories.map((c, i) => {
      const cx = MARGIN.left + band * (i + 0.5);
      const y = scale.y(values[i]);
      return svg(
        "g",
        { class: "bar" },
        svg("rect", { class: "tone-blue", x: cx - barW / 2, y, width: barW, height: Math.max(0, baseY - y) }, svg("title", null, `${xTitle} ${c}: ${num(values[i])} ${yTitle}`)),
        i % labelEvery === 0 ? svg("text", { x: cx, y: baseY + 16, "text-anchor": "middle" }, c) : null,
        band >= 30 && values[i] > 0 ? svg("text", { class: "bar-value", x: cx, y: y - 4, "text-anchor": "middle" }, num(values[i])) : null,
      );
    }),
    svg("text", { class: "axis-title", x: MARGIN.left + plotW / 2, y: baseY + MARGIN.bottom + 10, "text-anchor": "middle" }, xTitle),
    categories.length ? null : svg("text", { class: "no-data", x: MARGIN.left + plotW / 2, y: MARGIN.top + heightPx / 2, "text-anchor": "middle" }, "No executions yet"),
  );
  return figure(id, title, width, [plot], total ? `${summary}.` : "No executions yet.");
}
