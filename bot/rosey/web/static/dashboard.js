// Rosey's dashboard. Everything a plugin can influence (names, exit reasons, output) is put in
// the page with textContent, never parsed as HTML.
"use strict";

(() => {
  const TOKEN_KEY = "rosey-operator-token";
  const MAX_LOG_LINES = 1000;
  const METRICS = ["cpu", "mem", "p50", "p95"];

  const state = {
    interval: 2,
    window: 900,
    times: [], // tick times (unix seconds), shared by every plugin's series
    series: new Map(), // name -> {cpu: [], mem: [], p50: [], p95: []}, aligned with times
    rows: new Map(), // name -> {tr, cells, data}
    order: [],
    selected: new URLSearchParams(location.search).get("plugin"),
    lastTick: 0,
    lastSeen: 0,
    charts: {},
    logAbort: null,
    token: null,
  };

  const $ = (id) => document.getElementById(id);

  // ------------------------------------------------------------------ the operator token
  // `rosey dashboard` puts it in the fragment, which the browser never sends; keep it for this
  // tab only and take it out of the address bar (and so out of the history).
  function readToken() {
    const match = /(?:^#|&)token=([^&]+)/.exec(location.hash);
    if (match) {
      sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(match[1]));
      history.replaceState(null, "", location.pathname + location.search);
    }
    return sessionStorage.getItem(TOKEN_KEY);
  }

  function authHeaders() {
    return state.token ? { Authorization: "Bearer " + state.token } : {};
  }

  // ------------------------------------------------------------------ formatting
  const NONE = "–";
  function duration(s) {
    if (s == null) return NONE;
    s = Math.floor(s);
    if (s < 60) return s + "s";
    const m = Math.floor(s / 60), h = Math.floor(m / 60), d = Math.floor(h / 24);
    if (m < 60) return m + "m" + String(s % 60).padStart(2, "0") + "s";
    if (h < 24) return h + "h" + String(m % 60).padStart(2, "0") + "m";
    return d + "d" + String(h % 24).padStart(2, "0") + "h";
  }
  function percent(v) { return v == null ? NONE : v.toFixed(1) + " %"; }
  function memory(mb) {
    if (mb == null) return NONE;
    return mb >= 1024 ? (mb / 1024).toFixed(2) + " GB" : mb.toFixed(1) + " MB";
  }
  function latency(ms) {
    if (ms == null) return NONE;
    if (ms < 1) return Math.round(ms * 1000) + " µs";
    if (ms < 1000) return (ms < 10 ? ms.toFixed(2) : ms < 100 ? ms.toFixed(1) : Math.round(ms)) + " ms";
    return (ms / 1000).toFixed(2) + " s";
  }
  function rate(v) { return v == null ? NONE : (v < 10 ? v.toFixed(1) : Math.round(v)) + " /min"; }
  function errors(v) { return v == null ? NONE : (v * 100).toFixed(1) + " %"; }
  function integer(v) { return v == null ? NONE : String(v); }
  function axisTime(t, ticks) {
    const fine = ticks.length > 1 && ticks[1] - ticks[0] < 60;
    const options = { hour12: false, hour: "2-digit", minute: "2-digit", ...(fine ? { second: "2-digit" } : {}) };
    return new Date(t * 1000).toLocaleTimeString([], options);
  }
  function clock(t) { return new Date(t * 1000).toLocaleTimeString([], { hour12: false }); }

  // ------------------------------------------------------------------ the table
  const COLUMNS = [
    ["name", "name", (r) => r.name],
    ["kind", "", (r) => r.kind],
    ["state", "", (r) => r.state],
    ["pid", "num", (r) => integer(r.pid)],
    ["host", "", (r) => r.host],
    ["restarts", "num", (r) => integer(r.restarts)],
    ["last_exit", "exit", (r) => r.last_exit || NONE],
    ["uptime", "num", (r) => duration(r.uptime_seconds)],
    ["cpu", "num", (r) => percent(r.cpu_percent)],
    ["memory", "num", (r) => memory(r.memory_mb)],
    ["commands", "num", (r) => rate(r.commands_per_minute)],
    ["errors", "num", (r) => errors(r.error_rate)],
    ["p50", "num", (r) => latency(r.p50_ms)],
    ["p95", "num", (r) => latency(r.p95_ms)],
    ["denied", "num", (r) => (r.nats_denials ? String(r.nats_denials) : NONE)],
    ["sandbox", "sandbox", (r) => (r.sandbox ? r.sandbox.split(",").join(" · ") : NONE)],
  ];

  function makeRow(name) {
    const tr = document.createElement("tr");
    tr.tabIndex = 0;
    tr.dataset.name = name;
    const cells = {};
    for (const [key, cls] of COLUMNS) {
      const td = document.createElement("td");
      td.className = cls;
      td.dataset.col = key;
      tr.appendChild(td);
      cells[key] = td;
    }
    tr.addEventListener("click", () => select(name));
    tr.addEventListener("keydown", (e) => { if (e.key === "Enter") select(name); });
    return { tr, cells, data: null };
  }

  function fillRow(row, data) {
    row.data = data;
    for (const [key, , render] of COLUMNS) {
      const td = row.cells[key];
      const text = render(data);
      if (td.textContent !== text) td.textContent = text;
      td.classList.toggle("none", text === NONE);
    }
    row.cells.state.className = "state " + data.state;
    row.cells.last_exit.title = data.reason || data.last_exit || "";
    row.cells.sandbox.title = data.sandbox || "";
    row.cells.denied.classList.toggle("hot", data.nats_denials > 0);
    row.cells.errors.classList.toggle("hot", (data.error_rate || 0) > 0);
    row.tr.classList.toggle("selected", data.name === state.selected);
  }

  function renderTable(plugins) {
    const tbody = document.querySelector("#plugins tbody");
    const names = plugins.map((p) => p.name);
    if (names.join("\u0000") !== state.order.join("\u0000")) {
      tbody.replaceChildren();
      for (const name of names) {
        if (!state.rows.has(name)) state.rows.set(name, makeRow(name));
        tbody.appendChild(state.rows.get(name).tr);
      }
      for (const name of [...state.rows.keys()]) if (!names.includes(name)) state.rows.delete(name);
      state.order = names;
    }
    for (const plugin of plugins) fillRow(state.rows.get(plugin.name), plugin);
    $("empty").hidden = plugins.length > 0;
  }

  function renderSummary(tick) {
    const r = tick.rosey;
    $("s-host").textContent = tick.host;
    $("s-pid").textContent = integer(r.pid);
    $("s-uptime").textContent = duration(r.uptime_seconds);
    $("s-sandbox").textContent = r.sandbox_mode;
    $("s-launcher").textContent = r.launcher;
    const running = tick.plugins.filter((p) => p.state === "running").length;
    $("s-count").textContent = running + " of " + tick.plugins.length + " running";
    const ready = $("ready");
    ready.textContent = r.ready ? "ready" : "not ready";
    ready.className = "pill " + (r.ready ? "ok" : "warn");
    ready.title = r.reasons.join("\n");
  }

  // ------------------------------------------------------------------ plots
  function css(name) { return getComputedStyle(document.documentElement).getPropertyValue(name).trim(); }

  const isPowerOfTen = (v) => Math.abs(Math.log10(v) - Math.round(Math.log10(v))) < 1e-9;
  const decades = (u, ticks) => ticks.map((v) => (isPowerOfTen(v) ? v : null));
  function latencyTick(ms) {
    if (ms < 1) return Math.round(ms * 1000) + " µs";
    return ms < 1000 ? ms + " ms" : ms / 1000 + " s";
  }

  function chartOptions(width, spec) {
    const axis = { stroke: css("--axis"), grid: { stroke: css("--grid"), width: 1 }, ticks: { stroke: css("--grid") } };
    const log = spec.log === true;
    return {
      width,
      height: 170,
      padding: [8, 28, 0, 0],
      legend: { show: false }, // the caption names the series; the cursor shows the values
      cursor: { drag: { x: false, y: false } },
      scales: {
        x: { time: true },
        // Latency spans microseconds to seconds: a log scale keeps one slow command from
        // flattening the rest.
        y: log ? { distr: 3, log: 10 } : { range: (u, min, max) => [0, Math.max(max * 1.15 || 0, spec.floor)] },
      },
      axes: [
        { ...axis, space: 50, values: (u, ticks) => ticks.map((t) => axisTime(t, ticks)) },
        log
          ? {
              ...axis,
              size: 72,
              filter: decades,
              grid: { ...axis.grid, filter: decades },
              ticks: { ...axis.ticks, filter: decades },
              values: (u, ticks) => ticks.map((v) => (v == null ? "" : latencyTick(v))),
            }
          : { ...axis, size: 72, values: (u, ticks) => ticks.map((v) => (v === 0 ? "0" : spec.format(v))) },
      ],
      series: [
        { value: (u, t) => (t == null ? NONE : clock(t)) },
        ...spec.series.map(([label, color]) => ({
          label,
          stroke: color,
          width: log ? 1.2 : 1.6,
          fill: log ? undefined : color + "1f",
          spanGaps: false,
          // Commands are sparse: a tick with commands between two without is a point, not a line.
          points: log ? { show: true, size: 4, fill: color } : { show: false },
          value: (u, v) => (v == null ? NONE : spec.format(v)),
        })),
      ],
    };
  }

  function chartSpecs() {
    const p1 = css("--plot1"), p2 = css("--plot2");
    return {
      cpu: { el: "chart-cpu", series: [["CPU", p1]], floor: 1, format: (v) => v.toFixed(v < 10 ? 1 : 0) + " %", keys: ["cpu"] },
      mem: { el: "chart-mem", series: [["Memory", p1]], floor: 0.1, format: (v) => memory(v), keys: ["mem"] },
      latency: { el: "chart-latency", series: [["p50", p1], ["p95", p2]], log: true, format: (v) => latency(v), keys: ["p50", "p95"] },
    };
  }

  function chartData(keys) {
    const s = state.series.get(state.selected);
    const empty = () => state.times.map(() => null);
    return [state.times.slice(), ...keys.map((k) => (s ? s[k].slice() : empty()))];
  }

  function buildCharts() {
    for (const chart of Object.values(state.charts)) chart.u.destroy();
    state.charts = {};
    if (typeof uPlot === "undefined" || !state.selected) return;
    for (const [kind, spec] of Object.entries(chartSpecs())) {
      const el = $(spec.el);
      el.replaceChildren();
      const width = Math.max(el.clientWidth, 280);
      const u = new uPlot(chartOptions(width, spec), chartData(spec.keys), el);
      state.charts[kind] = { u, keys: spec.keys };
    }
  }

  function updateCharts() {
    for (const chart of Object.values(state.charts)) chart.u.setData(chartData(chart.keys));
  }

  let resizeTimer = null;
  window.addEventListener("resize", () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => {
      for (const [kind, chart] of Object.entries(state.charts)) {
        const el = $(chartSpecs()[kind].el);
        chart.u.setSize({ width: Math.max(el.clientWidth, 280), height: 170 });
      }
    }, 150);
  });

  // ------------------------------------------------------------------ the live stream
  function trimHistory() {
    const oldest = state.lastTick - state.window;
    let drop = 0;
    while (drop < state.times.length && state.times[drop] < oldest) drop++;
    if (!drop) return;
    state.times.splice(0, drop);
    for (const s of state.series.values()) for (const k of METRICS) s[k].splice(0, drop);
  }

  function appendPoints(tick) {
    if (tick.t <= state.lastTick) return; // already in the history this client got
    state.times.push(tick.t);
    const n = state.times.length;
    for (const [name, values] of Object.entries(tick.points)) {
      if (!state.series.has(name)) {
        state.series.set(name, Object.fromEntries(METRICS.map((k) => [k, new Array(n - 1).fill(null)])));
      }
    }
    for (const [name, s] of state.series) {
      const values = tick.points[name];
      METRICS.forEach((k, i) => s[k].push(values ? values[i] : null));
    }
    state.lastTick = tick.t;
    trimHistory();
  }

  function setConnection(text, cls) {
    const el = $("connection");
    el.textContent = text;
    el.className = "pill " + cls;
  }

  function connect() {
    const source = new EventSource("/api/events");
    source.addEventListener("open", () => setConnection("live", "ok"));
    source.addEventListener("error", () => setConnection("reconnecting", "warn"));
    source.addEventListener("hello", (e) => {
      const hello = JSON.parse(e.data);
      state.interval = hello.interval;
      state.window = hello.window;
      state.times = hello.t;
      state.series = new Map();
      state.lastTick = hello.t.length ? hello.t[hello.t.length - 1] : 0;
    });
    source.addEventListener("history", (e) => {
      const h = JSON.parse(e.data);
      state.series.set(h.name, { cpu: h.cpu, mem: h.mem, p50: h.p50, p95: h.p95 });
    });
    source.addEventListener("tick", (e) => {
      const tick = JSON.parse(e.data);
      state.lastSeen = Date.now();
      appendPoints(tick);
      renderSummary(tick);
      renderTable(tick.plugins);
      if ($("detail").hidden && tick.plugins.length) {
        // The first tick: the plugin named in ?plugin=, else the first one.
        select(state.rows.has(state.selected) ? state.selected : tick.plugins[0].name);
      } else if (state.selected) {
        renderDetailHead();
        if (!Object.keys(state.charts).length) buildCharts();
        else updateCharts();
      }
    });
  }

  setInterval(() => {
    if (state.lastSeen && Date.now() - state.lastSeen > state.interval * 3000) setConnection("stale", "bad");
  }, 1000);

  // ------------------------------------------------------------------ one plugin
  function renderDetailHead() {
    const row = state.rows.get(state.selected);
    if (!row || !row.data) return;
    $("d-name").textContent = row.data.name;
    const st = $("d-state");
    st.textContent = row.data.state + (row.data.pid ? " · pid " + row.data.pid : "");
    st.className = "state " + row.data.state;
    $("d-reason").textContent = row.data.reason || "";
  }

  function select(name) {
    if (!state.rows.has(name)) return;
    state.selected = name;
    for (const [n, row] of state.rows) row.tr.classList.toggle("selected", n === name);
    $("detail").hidden = false;
    $("action-message").hidden = true;
    renderDetailHead();
    buildCharts();
    followLogs(name);
  }

  function showMessage(text, cls) {
    const el = $("action-message");
    el.textContent = text;
    el.className = "message " + cls;
    el.hidden = false;
  }

  async function act(action) {
    const name = state.selected;
    if (!name) return;
    const buttons = document.querySelectorAll(".actions button");
    buttons.forEach((b) => (b.disabled = true));
    showMessage(action + " " + name + "…", "");
    try {
      const response = await fetch("/api/plugins/" + encodeURIComponent(name) + "/" + action, {
        method: "POST",
        headers: authHeaders(),
        cache: "no-store",
        credentials: "omit",
      });
      const body = await response.json().catch(() => ({}));
      if (!response.ok) {
        showMessage(action + " refused: " + (body.error || "HTTP " + response.status), "error");
        return;
      }
      const plugin = body.plugin;
      if (plugin && state.rows.has(plugin.name)) fillRow(state.rows.get(plugin.name), plugin);
      renderDetailHead();
      const pid = plugin && plugin.pid ? " (pid " + plugin.pid + ")" : "";
      showMessage(name + ": " + action + " done, now " + (plugin ? plugin.state : "?") + pid, "ok");
    } catch (err) {
      showMessage(action + " failed: " + err, "error");
    } finally {
      buttons.forEach((b) => (b.disabled = false));
    }
  }

  // ------------------------------------------------------------------ logs
  function appendLogLine(line) {
    const log = $("log");
    const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
    const div = document.createElement("div");
    div.className = "line " + (line.stream === "stderr" ? "stderr" : "stdout");
    const time = document.createElement("span");
    time.className = "time";
    time.textContent = clock(line.t);
    const stream = document.createElement("span");
    stream.className = "stream";
    stream.textContent = line.stream === "stderr" ? "err" : "out";
    div.append(time, stream, document.createTextNode(line.text));
    log.appendChild(div);
    while (log.childElementCount > MAX_LOG_LINES) log.firstElementChild.remove();
    if (atBottom) log.scrollTop = log.scrollHeight;
  }

  function logNote(text) { $("log-note").textContent = text; }

  async function followLogs(name) {
    if (state.logAbort) state.logAbort.abort();
    $("log").replaceChildren();
    if (!state.token) {
      logNote("the output may hold users' messages: it needs the operator token (open the link `rosey dashboard` prints)");
      return;
    }
    const abort = new AbortController();
    state.logAbort = abort;
    logNote("loading…");
    try {
      const response = await fetch("/api/plugins/" + encodeURIComponent(name) + "/logs?follow=1&lines=200", {
        headers: authHeaders(),
        cache: "no-store",
        credentials: "omit",
        signal: abort.signal,
      });
      if (!response.ok) {
        const body = await response.json().catch(() => ({}));
        logNote(body.error || "HTTP " + response.status);
        return;
      }
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          let event = "message", data = "";
          for (const field of block.split("\n")) {
            if (field.startsWith("event: ")) event = field.slice(7);
            else if (field.startsWith("data: ")) data += field.slice(6);
          }
          const payload = data ? JSON.parse(data) : {};
          if (event === "line") appendLogLine(payload);
          else if (event === "live") logNote("following");
          else if (event === "dropped") logNote(payload.lines + " lines skipped (too fast to show)");
        }
      }
      logNote("the stream ended (the bot stopped?)");
    } catch (err) {
      if (!abort.signal.aborted) logNote("output unavailable: " + err);
    }
  }

  // ------------------------------------------------------------------ start
  function start() {
    state.token = readToken();
    const auth = $("auth");
    if (state.token) {
      auth.textContent = "operator";
      auth.className = "pill ok";
      auth.title = "this tab holds the operator token: buttons and logs work";
    } else {
      auth.textContent = "read-only";
      auth.className = "pill";
      auth.title = "no operator token: open the link `rosey dashboard` prints to use the buttons and logs";
    }
    for (const button of document.querySelectorAll(".actions button")) {
      button.addEventListener("click", () => act(button.dataset.action));
    }
    connect();
  }

  // For tests and the curious: what the page holds (read-only copies).
  window.roseyDashboard = {
    selected: () => state.selected,
    series: (name) => {
      const s = state.series.get(name);
      return s ? { t: state.times.slice(), ...Object.fromEntries(METRICS.map((k) => [k, s[k].slice()])) } : null;
    },
    plotData: (kind) => (state.charts[kind] ? state.charts[kind].u.data.map((column) => Array.from(column)) : null),
    row: (name) => (state.rows.has(name) ? { ...state.rows.get(name).data } : null),
  };

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
