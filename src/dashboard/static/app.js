// The Nimbus dashboard's page script (no build step). Every value from the server is put
// in the page with textContent (never innerHTML): function names and log lines are untrusted.
(() => {
  const main = document.getElementById("main");
  if (!main) return;
  const kind = main.dataset.page;
  const fn = main.dataset.fn;
  let range = "1h";
  const charts = new Map();
  const dark = window.matchMedia("(prefers-color-scheme: dark)").matches;
  const palette = dark
    ? ["#8ab4f8", "#f28b82", "#fdd663", "#81c995", "#c58af9", "#78d9ec", "#fcad70", "#ff8bcb"]
    : ["#1a73e8", "#d93025", "#b06000", "#188038", "#9334e6", "#007b83", "#c5221f", "#b80672"];
  const axis = dark ? "#b0b0b0" : "#555";
  const grid = dark ? "#333" : "#e5e5e5";

  const el = (tag, text, attrs) => {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (attrs) for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    return e;
  };
  const row = (cells) => {
    const tr = document.createElement("tr");
    for (const c of cells) {
      const td = document.createElement("td");
      if (c instanceof Node) td.append(c);
      else td.textContent = c === null || c === undefined ? "–" : String(c);
      tr.append(td);
    }
    return tr;
  };
  const pct = (x) => `${(x * 100).toFixed(1)}%`;
  const msf = (x) => (x === null || x === undefined ? "–" : `${x} ms`);
  const usd = (x) => `$${x.toFixed(x < 0.01 ? 8 : 4)}`;
  const when = (t) => new Date(t).toLocaleTimeString();

  async function get(path) {
    const r = await fetch(path, { credentials: "same-origin", headers: { accept: "application/json" } });
    if (r.status === 401) {
      location.assign("/dashboard/login");
      throw new Error("logged out");
    }
    if (!r.ok) throw new Error(`${r.status}`);
    return r.json();
  }

  /** Draws (or redraws) a chart: x = times (s), ys = [{label, values}]. */
  function chart(holder, xs, ys) {
    const key = holder.dataset.metric;
    const data = [xs, ...ys.map((y) => y.values)];
    const old = charts.get(key);
    if (old && old.series.length === ys.length + 1) {
      old.setData(data);
      return;
    }
    if (old) old.destroy();
    const opts = {
      width: Math.max(300, holder.clientWidth || 360),
      height: 170,
      series: [{}, ...ys.map((y, i) => ({ label: y.label, stroke: palette[i % palette.length], width: 2 }))],
      axes: [
        { stroke: axis, grid: { stroke: grid } },
        { stroke: axis, grid: { stroke: grid } },
      ],
      legend: { show: true },
    };
    holder.textContent = "";
    charts.set(key, new uPlot(opts, data, holder));
  }

  function setRange(r) {
    range = r;
    for (const b of document.querySelectorAll("[data-range]"))
      b.setAttribute("aria-pressed", String(b.dataset.range === r));
    refresh();
  }
  for (const b of document.querySelectorAll("[data-range]"))
    b.addEventListener("click", () => setRange(b.dataset.range));

  async function overview() {
    const d = await get(`/dashboard/api/overview?range=${range}`);
    const tbody = document.querySelector("#functions tbody");
    tbody.textContent = "";
    for (const f of d.functions) {
      const a = el("a", f.name, { href: `/dashboard/fn/${encodeURIComponent(f.name)}` });
      const s = f.summary;
      tbody.append(
        row([
          a,
          s.rps.toFixed(3),
          pct(s.errorRate),
          msf(s.p50),
          msf(s.p99),
          pct(s.coldRate),
          f.instances,
          usd(s.cost),
        ]),
      );
    }
    if (d.functions.length === 0) tbody.append(row(["No functions deployed yet: nimbus deploy <file>"]));
    const shown = d.functions.slice(0, 8);
    const xs = (shown[0]?.series ?? []).map((p) => p.t / 1000);
    for (const holder of document.querySelectorAll(".chart")) {
      const m = holder.dataset.metric;
      chart(
        holder,
        xs,
        shown.map((f) => ({ label: f.name, values: f.series.map((p) => p[m]) })),
      );
    }
  }

  async function fnPage() {
    const status = document.getElementById("status").value;
    const d = await get(
      `/dashboard/api/fn/${encodeURIComponent(fn)}?range=${range}&status=${encodeURIComponent(status)}`,
    );
    const xs = d.series.map((p) => p.t / 1000);
    for (const holder of document.querySelectorAll(".chart")) {
      const m = holder.dataset.metric;
      if (m === "latency") {
        chart(holder, xs, [
          { label: "p50", values: d.series.map((p) => p.p50) },
          { label: "p99", values: d.series.map((p) => p.p99) },
        ]);
      } else chart(holder, xs, [{ label: m, values: d.series.map((p) => p[m]) }]);
    }
    const u = d.usage;
    document.getElementById("usage").textContent =
      `Over the range: ${u.requests} requests, ${u.errors} errors, ${u.refused} refused, ${u.gbSeconds.toFixed(6)} GB-s, ${u.cpuMs.toFixed(1)} CPU ms, cost ${usd(u.cost)}`;
    const vb = document.querySelector("#versions tbody");
    vb.textContent = "";
    for (const v of d.versions.slice().reverse()) {
      vb.append(
        row([
          v.version,
          v.executor,
          `${v.memory} MB`,
          `${v.sizeBytes} B`,
          new Date(v.createdAt).toLocaleString(),
          v.latest ? "latest" : "",
        ]),
      );
    }
    const ib = document.querySelector("#invocations tbody");
    ib.textContent = "";
    for (const r of d.invocations) {
      const b = el("button", r.id.slice(0, 13), { type: "button", "aria-label": `Open invocation ${r.id}` });
      b.addEventListener("click", () => openInvocation(r.id));
      ib.append(
        row([
          when(r.start),
          b,
          r.errorCode ? `${r.status} ${r.errorCode}` : r.status,
          `${r.durationMs.toFixed(1)} ms`,
          r.coldStart ? "cold" : "",
          r.trigger,
        ]),
      );
    }
    if (d.invocations.length === 0) ib.append(row(["No invocations in this filter."]));
  }

  async function openInvocation(id) {
    const d = await get(`/dashboard/api/fn/${encodeURIComponent(fn)}/invocations/${encodeURIComponent(id)}`);
    const box = document.getElementById("invocation");
    box.textContent = "";
    box.append(el("h3", `Invocation ${d.invocation.id}`));
    box.append(el("h4", "Trace (phases recorded by the platform)"));
    const wf = el("div", null, { class: "wf", role: "list", "aria-label": "Trace waterfall" });
    const lo = Math.min(0, ...d.phases.map((p) => p.start));
    const hi = Math.max(...d.phases.map((p) => p.start + p.ms), 1);
    for (const p of d.phases) {
      const name = el("span", p.name, { role: "listitem" });
      const track = el("div", null, { class: "track", "aria-hidden": "true" });
      const bar = el("div", null, { class: "bar" });
      bar.style.left = `${((p.start - lo) / (hi - lo)) * 100}%`;
      bar.style.width = `${(p.ms / (hi - lo)) * 100}%`;
      track.append(bar);
      wf.append(name, track, el("span", `${p.ms.toFixed(1)} ms`));
    }
    box.append(wf);
    box.append(el("h4", "Logs"));
    const ol = el("ol", null, { class: "log" });
    for (const l of d.logs)
      ol.append(
        el("li", `${new Date(l.t).toISOString()} ${l.level.toUpperCase()} ${l.msg}`, { class: l.level }),
      );
    if (d.logs.length === 0) ol.append(el("li", "No log lines."));
    box.append(ol);
  }

  function tail() {
    const list = document.getElementById("tail");
    const state = document.getElementById("tail-state");
    const es = new EventSource(`/dashboard/api/fn/${encodeURIComponent(fn)}/logs`);
    es.onopen = () => {
      state.textContent = "Live: new lines appear below.";
    };
    es.onerror = () => {
      state.textContent = "Disconnected; reconnecting…";
    };
    es.addEventListener("log", (e) => {
      const l = JSON.parse(e.data);
      list.append(
        el(
          "li",
          `${new Date(l.t).toISOString()} ${l.level.toUpperCase()} ${l.invocationId ?? "-"} ${l.msg}`,
          { class: l.level },
        ),
      );
      while (list.children.length > 500) list.firstChild.remove();
      list.scrollTop = list.scrollHeight;
    });
  }

  function refresh() {
    (kind === "overview" ? overview() : fnPage()).catch((err) => console.warn("refresh failed", err));
  }
  if (kind === "fn") {
    document.getElementById("status").addEventListener("change", refresh);
    tail();
  }
  refresh();
  setInterval(refresh, 5000);
})();
