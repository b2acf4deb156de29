// A small Rosey plugin SDK for Node.js: the wire protocol of docs/plugins/PROTOCOL.md, on the
// maintained `nats` client. Copy this file next to your plugin (it depends on `nats` only).
//
//   const { runPlugin } = require("./rosey");
//   runPlugin({ handleCommand: async (event) => ({ message: "hi " + event.data.args.join(" ") }) });
//
// handleCommand(event) gets the decoded envelope ({ id, type, source, ts, cid, data }, with
// data.args, data.user, data.channel from chat) and returns the result data ({ message: "..." }),
// or throws: the error's message goes back as the command's error.
"use strict";

const crypto = require("crypto");
const fs = require("fs");
const { connect, ErrorCode, Events } = require("nats");

const WIRE_VERSION = 1;
const READY = "READY\n";
const ON_START = "ON_START\n";
const STOP_GRACE_MS = 3000; // in-flight commands get this long after SIGTERM (as the Python SDK)

// Event ids: a random per-process prefix and a counter, 32 hex digits (as core/events.py).
const idPrefix = crypto.randomBytes(10).toString("hex");
let idCounter = 0;
function newId() {
  idCounter += 1;
  return idPrefix + idCounter.toString(16).padStart(12, "0");
}

// The envelope: what every message on Rosey's bus carries (core/events.py).
function encode(type, source, cid, data) {
  const envelope = { v: WIRE_VERSION, id: newId(), type, source, ts: Date.now() / 1000, cid: cid ?? null, data };
  // JSON.stringify would write NaN/Infinity as null without a word; refuse them as Rosey does.
  const text = JSON.stringify(envelope, (key, value) => {
    if (typeof value === "number" && !Number.isFinite(value)) {
      throw new TypeError(`event data is not JSON: ${key} is ${value}`);
    }
    return value;
  });
  return Buffer.from(text, "utf8");
}

function decode(payload, subject) {
  let raw;
  try {
    raw = JSON.parse(Buffer.from(payload).toString("utf8"));
  } catch (e) {
    throw new Error(`message on ${subject} is not JSON: ${e.message}`);
  }
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) {
    throw new Error(`message on ${subject} is not a JSON object`);
  }
  const data = raw.data === undefined ? {} : raw.data;
  if (data === null || typeof data !== "object" || Array.isArray(data)) {
    throw new Error(`message on ${subject} has a 'data' that is not an object`);
  }
  return {
    subject,
    v: raw.v ?? WIRE_VERSION,
    id: String(raw.id || newId()),
    type: String(raw.type || subject.split(".").pop()),
    source: String(raw.source ?? "unknown"),
    ts: Number(raw.ts ?? 0),
    cid: raw.cid === null || raw.cid === undefined ? null : String(raw.cid),
    data,
  };
}

// The launch handshake: one line on the readiness pipe, then the descriptor is closed and its
// variable removed (contract.py's notify_ready).
function tellRunner(line, close) {
  const raw = process.env.ROSEY_READY_FD;
  if (!raw) return false;
  try {
    fs.writeSync(Number(raw), line);
    if (close) {
      fs.closeSync(Number(raw));
      delete process.env.ROSEY_READY_FD;
    }
    return true;
  } catch {
    return false;
  }
}

function percentile(sorted, q) {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

async function runPlugin(plugin) {
  const name = process.env.ROSEY_PLUGIN_NAME;
  if (!name || !/^[a-z0-9_]+$/.test(name)) {
    throw new Error("ROSEY_PLUGIN_NAME is missing or invalid: run this plugin under rosey");
  }
  const user = process.env.NATS_USER || undefined;
  const source = `plugin-${name}`;
  const stats = { commands: 0, errors: 0, permission_violations: 0, malformed: 0, latencies: [] };
  const inFlight = new Set();
  // Commands run concurrently, at most ROSEY_MAX_CONCURRENCY at once (the operator's bound);
  // the rest wait here in arrival order.
  const maxConcurrency = Math.max(1, parseInt(process.env.ROSEY_MAX_CONCURRENCY || "100", 10) || 100);
  const waiting = [];

  const nc = await connect({
    servers: process.env.NATS_URL || "nats://127.0.0.1:4222",
    user,
    pass: user ? process.env.NATS_PASSWORD || "" : undefined,
    token: process.env.NATS_TOKEN || undefined,
    name: source,
    // NATS lets a plugin subscribe to its own inbox only: _INBOX.<user>.>
    inboxPrefix: user ? `_INBOX.${user}` : undefined,
    maxReconnectAttempts: -1,
  });
  // The credentials are used: nothing else in this process needs them.
  delete process.env.NATS_PASSWORD;
  delete process.env.NATS_TOKEN;

  (async () => {
    for await (const s of nc.status()) {
      if (s.type === Events.Error && s.data === ErrorCode.PermissionsViolation) {
        stats.permission_violations += 1;
        const ctx = s.permissionContext || {};
        console.error(`NATS denied ${source}: ${ctx.operation || "?"} to ${ctx.subject || "?"}`);
      }
    }
  })().catch(() => {});

  function publishAnswer(action, data, cid, reply) {
    let payload;
    try {
      payload = encode(action, source, cid, data);
    } catch (e) {
      action = "error";
      payload = encode("error", source, cid, { error: `result is not JSON: ${e.message}` });
    }
    nc.publish(`rosey.commands.${name}.${action}`, payload);
    if (reply) nc.publish(reply, payload); // the requester's inbox: one answer per request
  }

  async function runCommand(msg) {
    let event;
    try {
      event = decode(msg.data, msg.subject);
    } catch (e) {
      stats.malformed += 1;
      console.error(`dropped malformed message: ${e.message}`);
      return;
    }
    const started = process.hrtime.bigint();
    stats.commands += 1;
    try {
      const result = await plugin.handleCommand(event);
      publishAnswer("result", { ...(result || {}), correlation_id: event.cid }, event.cid, msg.reply);
    } catch (e) {
      stats.errors += 1;
      publishAnswer("error", { error: String((e && e.message) || e) }, event.cid, msg.reply);
    } finally {
      stats.latencies.push(Number(process.hrtime.bigint() - started) / 1e6);
      if (stats.latencies.length > 1000) stats.latencies.shift();
    }
  }

  function startWaiting() {
    while (waiting.length > 0 && inFlight.size < maxConcurrency) {
      const task = runCommand(waiting.shift()).finally(() => {
        inFlight.delete(task);
        startWaiting();
      });
      inFlight.add(task);
    }
  }

  let stopping = false;
  nc.subscribe(`rosey.commands.${name}.execute`, {
    queue: source, // an overlapping restart answers each command once
    callback: (err, msg) => {
      if (err || stopping) return;
      waiting.push(msg);
      startWaiting();
    },
  });
  // Answered on the event loop: a loop blocked by plugin code misses pings and gets restarted.
  nc.subscribe(`rosey.control.${name}.ping`, {
    callback: (err, msg) => {
      if (err || !msg.reply) return;
      const sorted = [...stats.latencies].sort((a, b) => a - b);
      msg.respond(
        encode("pong", source, null, {
          commands: stats.commands,
          errors: stats.errors,
          in_flight: inFlight.size + waiting.length,
          latency_ms_p50: percentile(sorted, 0.5),
          latency_ms_p99: percentile(sorted, 0.99),
          permission_violations: stats.permission_violations,
          malformed: stats.malformed,
          sandbox: null, // the launcher reported what is in force; a plugin's word is not shown
        }),
      );
    },
  });
  await nc.flush(); // the server has our subscriptions before we say ready
  tellRunner(ON_START, false);
  if (plugin.onStart) await plugin.onStart(nc);
  nc.publish(`rosey.plugins.${name}.started`, encode("started", source, null, { plugin_name: name, timestamp: Date.now() / 1000 }));
  tellRunner(READY, true);
  console.error(`Plugin '${name}' running (pid ${process.pid})`);

  async function stop() {
    if (stopping) return;
    stopping = true;
    await Promise.race([Promise.allSettled([...inFlight]), new Promise((r) => setTimeout(r, STOP_GRACE_MS))]);
    try {
      if (plugin.onStop) await plugin.onStop();
    } catch (e) {
      console.error(`onStop failed: ${e.message}`);
    }
    nc.publish(`rosey.plugins.${name}.stopped`, encode("stopped", source, null, { plugin_name: name }));
    await nc.drain(); // flushes what we published, then closes
    process.exit(0);
  }
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
  const closed = await nc.closed();
  if (!stopping) {
    console.error(`NATS connection closed${closed ? ": " + closed.message : ""}`);
    process.exit(1);
  }
}

function main(plugin) {
  runPlugin(plugin).catch((e) => {
    console.error(`Plugin failed: ${(e && e.stack) || e}`);
    process.exit(1);
  });
}

module.exports = { runPlugin: main, encode, decode, newId };
