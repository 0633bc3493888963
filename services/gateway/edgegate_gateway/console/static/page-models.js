// Models: every loaded model version with its load, latency and batch-size histogram.
import { barChart } from "./charts.js";
import { h } from "./dom.js";
import { ms, num, slug } from "./format.js";
import { badge, empty, table, time } from "./ui.js";

function modelsTable(models) {
  const columns = [
    { label: "Model" }, { label: "Version" }, { label: "Ready" }, { label: "Providers" },
    { label: "Instances", num: true }, { label: "Max batch", num: true }, { label: "Queued", num: true },
    { label: "Requests", num: true }, { label: "Errors", num: true }, { label: "Queue (ms)", num: true },
    { label: "Compute (ms)", num: true }, { label: "p99 (ms)", num: true },
  ];
  const rows = models.map((m) => ({
    key: `${m.model}/${m.version}`,
    id: `model-${slug(m.model)}-${slug(m.version)}`,
    cells: [
      m.model, m.version, m.ready ? badge("Ready", "ok") : badge("Not ready", "bad"),
      h("span", { class: "badges" }, (m.execution_providers || []).map((p) => badge(p, "info"))),
      num(m.instances), num(m.max_batch_size), num(m.queued), num(m.requests),
      m.errors ? h("strong", null, num(m.errors)) : num(m.errors),
      num(m.mean_queue_ms, 1), num(m.mean_compute_ms, 1), num(m.p99_ms, 1),
    ],
  }));
  return table({ id: "models", caption: "Model versions", columns, rows });
}

function batchChart(m) {
  const sizes = Object.keys(m.batch_sizes || {}).map(Number).filter(Number.isFinite).sort((a, b) => a - b);
  return barChart({
    id: `chart-batch-${slug(m.model)}-${slug(m.version)}`,
    title: `${m.model} v${m.version}: batch sizes`,
    xTitle: "batch size",
    yTitle: "executions",
    categories: sizes.map(String),
    values: sizes.map((s) => m.batch_sizes[String(s)]),
  });
}

export default function models() {
  return {
    title: "Models",
    url: () => "/console/api/models",
    render(data) {
      const list = data.models || [];
      if (!list.length) return [empty("No models are loaded.", "Models appear when an inference service loads them from its model repository.")];
      // The oldest report tells how stale the table may be (a service that stopped reporting).
      const oldest = list.map((m) => m.updated_at).filter(Boolean).sort()[0];
      const meanNote = `Queue and compute are means, p99 the 99th percentile of latency, over each inference service's recent requests; ${ms(null)}: no requests yet.`;
      return [
        modelsTable(list),
        h("p", { class: "table-note" }, meanNote, oldest ? h("span", null, " Oldest report: ", time(oldest), ".") : null),
        h("h2", null, "Batch sizes"),
        h("p", { class: "muted" }, "How many executions ran with each batch size: larger batches mean the dynamic batcher is merging requests."),
        h("div", { class: "chart-grid" }, list.map(batchChart)),
      ];
    },
  };
}
