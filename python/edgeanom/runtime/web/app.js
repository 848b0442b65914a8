// edgeanom live view: polls the JSON endpoints of `edgeanom run --serve` and draws the page.
// Plain JavaScript, no dependencies, so the page works offline on an edge box.
"use strict";

const POLL_MS = 1000;
const COLOURS = ["#4ea1ff", "#ffb84e", "#b07cff", "#4ee0c8", "#ff7ce0", "#c8e04e"];
const MAX_EVENTS_SHOWN = 30;

const $ = (id) => document.getElementById(id);

async function getJSON(path) {
  const res = await fetch(path, { cache: "no-store" });
  if (!res.ok) throw new Error(`${path}: HTTP ${res.status}`);
  return res.json();
}

function fmt(x, digits = 3) {
  if (x === null || x === undefined) return "–";
  if (typeof x !== "number") return String(x);
  return Math.abs(x) >= 1000 || (x !== 0 && Math.abs(x) < 0.001) ? x.toExponential(2) : x.toFixed(digits);
}

// --- live images: one card per stream that has frames --------------------------------------------
function updateStreams(streams) {
  const box = $("streams");
  for (const s of streams) {
    if (!s.has_frames) continue;
    let card = box.querySelector(`[data-stream="${s.id}"]`);
    if (!card) {
      card = document.createElement("figure");
      card.className = "stream";
      card.dataset.stream = String(s.id);
      const img = document.createElement("img");
      img.alt = `live view of ${s.name}`;
      img.dataset.loaded = "0";
      img.addEventListener("load", () => { img.dataset.loaded = "1"; });
      img.src = `/stream.mjpg?stream=${s.id}`;
      const name = document.createElement("figcaption");
      name.className = "name";
      name.textContent = s.name;
      card.append(img, name);
      box.append(card);
    }
    card.classList.toggle("alarm", !!s.flag);
  }
}

// --- score chart: normalised score per stream, threshold at 0.5 ------------------------------------
function drawChart(data) {
  const canvas = $("chart");
  const dpr = window.devicePixelRatio || 1;
  const w = Math.max(200, canvas.clientWidth), h = Math.max(100, canvas.clientHeight);
  if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, h);
  const pad = { l: 34, r: 8, t: 8, b: 18 };
  const pw = w - pad.l - pad.r, ph = h - pad.t - pad.b;
  const y = (v) => pad.t + ph * (1 - Math.min(1, Math.max(0, v)));

  ctx.strokeStyle = "#2a2e35";
  ctx.fillStyle = "#8a9099";
  ctx.font = "11px system-ui, sans-serif";
  for (const v of [0, 0.25, 0.5, 0.75, 1]) {
    ctx.beginPath(); ctx.moveTo(pad.l, y(v)); ctx.lineTo(w - pad.r, y(v)); ctx.stroke();
    ctx.fillText(v.toFixed(2), 2, y(v) + 4);
  }
  ctx.setLineDash([6, 4]);
  ctx.strokeStyle = "#ff3b3b";
  ctx.beginPath(); ctx.moveTo(pad.l, y(0.5)); ctx.lineTo(w - pad.r, y(0.5)); ctx.stroke();
  ctx.setLineDash([]);
  if (data.threshold !== null && data.threshold !== undefined) {
    ctx.fillStyle = "#ff3b3b";
    ctx.fillText(`threshold ${fmt(data.threshold, 4)}`, w - pad.r - 110, y(0.5) - 4);
  }

  const n = Math.max(2, ...data.streams.map((s) => s.points.length));
  const x = (i) => pad.l + (pw * i) / (n - 1);
  let drawn = 0;
  const legend = [];
  data.streams.forEach((s, k) => {
    const colour = COLOURS[k % COLOURS.length];
    legend.push(`<span style="color:${colour}">■ ${s.name.replace(/</g, "&lt;")}</span>`);
    const pts = s.points; // [index, time, score, normalised, flag]
    if (!pts.length) return;
    const off = n - pts.length;
    ctx.strokeStyle = colour;
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    pts.forEach((p, i) => (i ? ctx.lineTo(x(off + i), y(p[3])) : ctx.moveTo(x(off + i), y(p[3]))));
    ctx.stroke();
    ctx.fillStyle = "#ff3b3b";
    pts.forEach((p, i) => { if (p[4]) ctx.fillRect(x(off + i) - 1.5, y(p[3]) - 1.5, 3, 3); });
    drawn += pts.length;
    ctx.fillStyle = "#8a9099";
    ctx.fillText(`#${pts[pts.length - 1][0]}`, w - pad.r - 40, h - 4);
  });
  canvas.dataset.points = String(drawn);
  $("legend").innerHTML = legend.join("");
}

// --- events list -----------------------------------------------------------------------------------
function updateEvents(events) {
  const list = $("events");
  list.dataset.count = String(events.length);
  if (!events.length) return;
  const items = events.slice(0, MAX_EVENTS_SHOWN).map((e) => {
    const li = document.createElement("li");
    li.className = "event";
    const badge = document.createElement("span");
    badge.className = `badge ${e.type || ""}`;
    badge.textContent = e.type || "event";
    const t = e.time ? new Date(e.time * 1000).toLocaleTimeString() : "";
    const parts = [t, e.stream ?? ""];
    if (e.index !== undefined) parts.push(`#${e.index}`);
    if (e.peak !== undefined) parts.push(`peak ${fmt(e.peak, 4)}`);
    if (e.type === "end" && e.start_index !== undefined) parts.push(`from #${e.start_index}`);
    if (e.gap_s !== undefined) parts.push(`gap ${fmt(e.gap_s, 1)} s`);
    if (e.reason) parts.push(e.reason);
    if (e.message) parts.push(e.message);
    li.append(badge, document.createTextNode(parts.join("  ")));
    return li;
  });
  list.replaceChildren(...items);
}

// --- status line -----------------------------------------------------------------------------------
function updateStatus(st) {
  const el = $("status");
  el.classList.remove("down");
  el.textContent =
    `${fmt(st.fps, 1)} fps · p50 ${fmt(st.latency_ms_p50, 1)} ms · p99 ${fmt(st.latency_ms_p99, 1)} ms · ` +
    `frames ${st.frames ?? 0} · drops ${st.drops ?? 0} · anomalies ${st.anomalies ?? 0}` +
    (st.backend ? ` · ${st.backend}` : "");
}

async function tick() {
  try {
    const [streams, scores, events, stats] = await Promise.all([
      getJSON("/api/streams"), getJSON("/api/scores"), getJSON("/api/events"), getJSON("/api/stats"),
    ]);
    updateStreams(streams);
    drawChart(scores);
    updateEvents(events);
    updateStatus(stats);
  } catch (err) {
    const el = $("status");
    el.classList.add("down");
    el.textContent = `disconnected (${err.message})`;
  } finally {
    setTimeout(tick, POLL_MS);
  }
}

tick();
