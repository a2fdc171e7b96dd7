// The STOQ node's dashboard: polls /api/series once a second and plots throughput, open
// connections and the handshake rate with uPlot (served by the node from its npm cache).
// `window.stoqDashboard` lets a test read what the page plots.
"use strict";

const POLL_MS = 1000;
const charts = {};

function mbit(bytesPerSecond) {
  return bytesPerSecond * 8 / 1e6;
}

function width() {
  return Math.max(320, document.body.clientWidth - 20);
}

function chart(id, title, series, valueLabel) {
  return new uPlot(
    {
      title,
      width: width(),
      height: 220,
      scales: { x: { time: true } },
      series: [{}, ...series],
      axes: [{}, { label: valueLabel, size: 70 }],
    },
    [[], ...series.map(() => [])],
    document.getElementById(id),
  );
}

function render(body) {
  const s = body.series;
  if (!charts.throughput) {
    charts.throughput = chart("chart-throughput", "Throughput", [
      { label: "received", stroke: "#2f6fde", width: 2 },
      { label: "sent", stroke: "#d9822b", width: 2, dash: [8, 6] },
    ], "Mbit/s");
    charts.connections = chart("chart-connections", "Connections open", [
      {
        label: "open",
        stroke: "#1f9d55",
        width: 2,
        fill: "rgba(31,157,85,0.1)",
      },
    ], "connections");
    charts.handshakes = chart("chart-handshakes", "Handshakes per second", [
      { label: "handshakes/s", stroke: "#8e44ad", width: 2 },
    ], "per second");
  }
  charts.throughput.setData([
    s.t,
    s.receivedBps.map(mbit),
    s.sentBps.map(mbit),
  ]);
  charts.connections.setData([s.t, s.connections]);
  charts.handshakes.setData([s.t, s.handshakesPerSecond]);
  const last = s.t.length - 1;
  if (last >= 0) {
    const total = mbit(s.receivedBps[last] + s.sentBps[last]);
    document.getElementById("throughput").textContent = `${
      total.toFixed(1)
    } Mbit/s`;
    document.getElementById("connections").textContent = String(
      s.connections[last],
    );
    document.getElementById("handshakes").textContent = s
      .handshakesPerSecond[last].toFixed(1);
  }
  const n = body.node;
  document.getElementById("status").textContent =
    `${n.listen} · CA ${n.ca} · up ${Math.round(n.uptimeSeconds)} s · ` +
    `max_connections ${n.maxConnections}${n.draining ? " · draining" : ""}`;
}

async function poll() {
  try {
    const response = await fetch("/api/series", { cache: "no-store" });
    if (response.ok) render(await response.json());
  } catch (err) {
    document.getElementById("status").textContent = `node unreachable (${err})`;
  }
}

globalThis.stoqDashboard = {
  /** How many samples each chart plots. */
  points: () => charts.throughput ? charts.throughput.data[0].length : 0,
  /** The charts' data, as uPlot holds it. */
  data: () =>
    Object.fromEntries(Object.entries(charts).map(([k, c]) => [k, c.data])),
};
addEventListener("resize", () => {
  for (const c of Object.values(charts)) {
    c.setSize({ width: width(), height: 220 });
  }
});
poll();
setInterval(poll, POLL_MS);
