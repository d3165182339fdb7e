// Test harness for integration tests: starts the real parleyd on 127.0.0.1 with free ports
// and a temporary data dir, speaks raw Forward protocol and the query protocol, and
// reports TAP lines ("ok - name" / "not ok - name") that tests/run.sh counts.
'use strict';
const {spawn, execFileSync} = require('child_process');
const fs = require('fs');
const net = require('net');
const os = require('os');
const path = require('path');
const zlib = require('zlib');
const {encode, decodeMultiStream, decodeMulti} = require('@msgpack/msgpack');

const BUILD = process.env.PARLEY_BUILD || path.resolve(__dirname, '../../build');
// A copy of ../shared/data/track2-sample.jsonl, so the suite runs from a clean clone alone.
const SAMPLE = path.resolve(__dirname, '../data/track2-sample.jsonl');
const SLOW = process.env.PARLEY_SAN ? 4 : 1; // sanitizer builds run slower

function sampleRecords() {
  return fs.readFileSync(SAMPLE, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitFor(fn, ms = 5000 * SLOW, step = 20) {
  const until = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > until) throw new Error('timed out waiting for ' + fn.toString().slice(0, 80));
    await sleep(step);
  }
}

class Daemon {
  constructor(dir, args) {
    this.dir = dir;
    this.args = args;
    this.log = '';
    this.proc = null;
  }

  // Starts parleyd and waits for its "ready:" line. opts.args are extra flags; opts.dir
  // reuses a data directory (for restarts).
  static async start(opts = {}) {
    const dir = opts.dir || fs.mkdtempSync(path.join(os.tmpdir(), 'parley-it-'));
    const d = new Daemon(dir, opts.args || []);
    await d.spawn();
    return d;
  }

  async spawn() {
    const args = ['--data-dir', path.join(this.dir, 'data'), '--listen', '127.0.0.1:0',
      '--query-listen', '127.0.0.1:0', '--http-listen', process.env.PARLEY_NO_HTTP ? 'none' : '127.0.0.1:0',
      '--log-level', 'debug',
      ...this.args];
    this.log = '';
    this.proc = spawn(path.join(BUILD, 'parleyd'), args, {stdio: ['ignore', 'ignore', 'pipe']});
    this.exited = new Promise((resolve) => this.proc.on('exit', (code, sig) => resolve({code, sig})));
    this.proc.stderr.on('data', (b) => { this.log += b.toString(); });
    const m = await waitFor(() => {
      if (this.proc.exitCode !== null) throw new Error('parleyd exited: ' + this.log);
      return /ready: ingest (\S+):(\d+) query (\S+):(\d+) http (\S+?)(?::(\d+))? /.exec(this.log);
    }, 10000 * SLOW);
    this.ingestPort = +m[2];
    this.queryPort = +m[4];
    this.httpPort = m[6] ? +m[6] : null;
    this.pid = this.proc.pid;
  }

  async stop(signal = 'SIGTERM') {
    if (!this.proc || this.proc.exitCode !== null) return this.exited;
    this.proc.kill(signal);
    return this.exited;
  }

  // Stops (returning how it exited) and starts again on the same data directory.
  async restart(signal = 'SIGTERM') {
    const how = await this.stop(signal);
    await this.spawn();
    return how;
  }

  rssKiB() {
    const s = fs.readFileSync(`/proc/${this.pid}/status`, 'utf8');
    return +/VmRSS:\s+(\d+)/.exec(s)[1];
  }

  // Anonymous (heap) RSS: excludes the LMDB map, which is file-backed.
  anonKiB() {
    const s = fs.readFileSync(`/proc/${this.pid}/status`, 'utf8');
    const m = /RssAnon:\s+(\d+)/.exec(s);
    return m ? +m[1] : this.rssKiB();
  }

  cleanup() {
    if (this.proc && this.proc.exitCode === null) this.proc.kill('SIGKILL');
    fs.rmSync(this.dir, {recursive: true, force: true});
  }

  async query(op, args = {}) {
    const q = await QueryClient.connect(this.queryPort);
    try {
      return await q.request(Object.assign({op}, args));
    } finally {
      q.close();
    }
  }

  // The result of a query that must succeed.
  async q(op, args = {}) {
    const r = await this.query(op, args);
    if (!r.ok) throw new Error(`${op} failed: ${JSON.stringify(r.error)}`);
    return r.result;
  }
}

// A raw Forward client: send bytes, read acks.
class RawClient {
  static connect(port) {
    return new Promise((resolve, reject) => {
      const c = new RawClient();
      c.sock = net.connect(port, '127.0.0.1', () => resolve(c));
      c.sock.on('error', (e) => { c.error = e; reject(e); });
      c.closed = new Promise((r) => c.sock.on('close', r));
      c.acks = [];
      c.waiters = [];
      (async () => {
        try {
          for await (const m of decodeMultiStream(c.sock)) {
            c.acks.push(m);
            c.waiters.splice(0).forEach((w) => w());
          }
        } catch (e) { /* closed or garbage */ }
        c.ended = true;
        c.waiters.splice(0).forEach((w) => w());
      })();
    });
  }

  send(buf) { this.sock.write(buf); }

  async nextMessage(ms = 5000 * SLOW) {
    const until = Date.now() + ms;
    while (this.acks.length === 0) {
      if (this.ended) return null;
      if (Date.now() > until) throw new Error('no reply within ' + ms + ' ms');
      await new Promise((r) => { this.waiters.push(r); setTimeout(r, 50); });
    }
    return this.acks.shift();
  }

  end() { this.sock.end(); }
  destroy() { this.sock.destroy(); }

  // Resolves true if the server closes the connection within ms.
  async closedWithin(ms = 3000 * SLOW) {
    return Promise.race([this.closed.then(() => true), sleep(ms).then(() => false)]);
  }
}

// A query client: pipelined requests, replies matched in order.
class QueryClient {
  static connect(port) {
    return new Promise((resolve, reject) => {
      const c = new QueryClient();
      c.sock = net.connect(port, '127.0.0.1', () => resolve(c));
      c.sock.on('error', reject);
      c.pending = [];
      (async () => {
        try {
          for await (const m of decodeMultiStream(c.sock)) {
            const p = c.pending.shift();
            if (p) p.resolve(m);
          }
        } catch (e) { /* closed */ }
        c.pending.splice(0).forEach((p) => p.reject(new Error('connection closed')));
      })();
    });
  }

  request(obj) {
    return new Promise((resolve, reject) => {
      this.pending.push({resolve, reject});
      this.sock.write(encode(obj));
    });
  }

  close() { this.sock.end(); }
}

// Forward encodings.
function eventTime(sec, nsec = 0) {
  const b = Buffer.alloc(10);
  b[0] = 0xd7;
  b[1] = 0x00;
  b.writeUInt32BE(sec >>> 0, 2);
  b.writeUInt32BE(nsec >>> 0, 6);
  return b;
}

// A msgpack value that is already encoded (spliced into arrays by pack()).
class Raw { constructor(buf) { this.buf = buf; } }

// Encodes an array whose items may be Raw byte strings.
function packArray(items) {
  const parts = [];
  const n = items.length;
  parts.push(n < 16 ? Buffer.from([0x90 | n]) : Buffer.from([0xdc, n >> 8, n & 255]));
  for (const it of items) parts.push(it instanceof Raw ? it.buf : Buffer.from(encode(it)));
  return Buffer.concat(parts);
}

function entry(time, record) {
  return packArray([time instanceof Buffer ? new Raw(time) : time, record]);
}

function message(tag, time, record, option) {
  const items = [tag, time instanceof Buffer ? new Raw(time) : time, record];
  if (option !== undefined) items.push(option);
  return packArray(items);
}

function forward(tag, entries, option) {
  const arr = Buffer.concat([entries.length < 16 ? Buffer.from([0x90 | entries.length])
    : Buffer.from([0xdc, entries.length >> 8, entries.length & 255]), ...entries]);
  const items = [tag, new Raw(arr)];
  if (option !== undefined) items.push(option);
  return packArray(items);
}

function packedForward(tag, entries, option, {asStr = false, gzip = false} = {}) {
  let body = Buffer.concat(entries);
  if (gzip) body = zlib.gzipSync(body);
  const hdr = Buffer.alloc(5);
  hdr[0] = asStr ? 0xdb : 0xc6;
  hdr.writeUInt32BE(body.length, 1);
  const items = [tag, new Raw(Buffer.concat([hdr, body]))];
  if (option !== undefined) items.push(option);
  return packArray(items);
}

// A raw HTTP/1.1 client on one connection: write any bytes, read responses one at a time
// (framed by Content-Length, which parleyd always sends), see when the server closes.
class HttpConn {
  // target: a port on 127.0.0.1, or {path} for a unix socket.
  static connect(target) {
    return new Promise((resolve, reject) => {
      const c = new HttpConn();
      const opts = typeof target === 'object' ? {path: target.path}
        : {port: target, host: '127.0.0.1'};
      c.sock = net.connect(opts, () => resolve(c));
      c.buf = Buffer.alloc(0);
      c.chunks = []; // received, not yet joined to buf (joined only when buf runs short)
      c.ended = false;
      c.waiters = [];
      const wake = () => c.waiters.splice(0).forEach((w) => w());
      c.sock.on('data', (b) => { c.chunks.push(b); wake(); });
      c.sock.on('error', (e) => { c.error = e; reject(e); wake(); });
      c.closed = new Promise((r) => c.sock.on('close', () => { c.ended = true; wake(); r(); }));
    });
  }

  send(data) { this.sock.write(data); }

  // Resolves on the next bytes or close, or after ms.
  wait(ms) { return new Promise((r) => { this.waiters.push(r); setTimeout(r, ms); }); }

  // The next response: {status, reason, headers (lower-case names), rawHeaders, body, text}.
  // head: the request was HEAD (a Content-Length but no body follows). Null when the server
  // closed before a whole response arrived.
  async response({head = false} = {}, ms = 10000 * SLOW) {
    const until = Date.now() + ms;
    for (;;) {
      const r = this.parseResponse(head);
      if (r) return r;
      if (this.chunks.length) {
        this.buf = Buffer.concat([this.buf, ...this.chunks.splice(0)]);
        continue;
      }
      if (this.ended) return null;
      if (Date.now() > until) throw new Error('no whole HTTP response within ' + ms + ' ms');
      await this.wait(50);
    }
  }

  parseResponse(head) {
    const end = this.buf.indexOf('\r\n\r\n');
    if (end < 0) return null;
    const lines = this.buf.subarray(0, end).toString('latin1').split('\r\n');
    const m = /^HTTP\/1\.([01]) (\d{3}) (.*)$/.exec(lines[0]);
    if (!m) throw new Error('bad status line: ' + JSON.stringify(lines[0]));
    const headers = {};
    const rawHeaders = [];
    for (const l of lines.slice(1)) {
      const i = l.indexOf(':');
      const k = l.slice(0, i).toLowerCase();
      rawHeaders.push([k, l.slice(i + 1).trim()]);
      headers[k] = l.slice(i + 1).trim();
    }
    const len = head ? 0 : +(headers['content-length'] || 0);
    if (this.buf.length < end + 4 + len) return null;
    const body = this.buf.subarray(end + 4, end + 4 + len);
    this.buf = this.buf.subarray(end + 4 + len);
    return {status: +m[2], reason: m[3], minor: +m[1], headers, rawHeaders, body,
      text: body.toString('utf8')};
  }

  end() { this.sock.end(); }
  destroy() { this.sock.destroy(); }

  // Resolves true if the server closes the connection within ms.
  async closedWithin(ms = 3000 * SLOW) {
    return Promise.race([this.closed.then(() => true), sleep(ms).then(() => false)]);
  }
}

// One request on a fresh connection. Returns the response (see HttpConn.response); json is
// the parsed body when it is JSON.
async function http(target, reqPath, {method = 'GET', headers = {}} = {}) {
  const c = await HttpConn.connect(target);
  try {
    let req = `${method} ${reqPath} HTTP/1.1\r\nHost: 127.0.0.1\r\n`;
    for (const k in headers) req += `${k}: ${headers[k]}\r\n`;
    c.send(req + '\r\n');
    const r = await c.response({head: method === 'HEAD'});
    if (!r) throw new Error(`${method} ${reqPath}: connection closed without a response`);
    if (/^application\/json/.test(r.headers['content-type'] || '') && r.body.length)
      r.json = JSON.parse(r.text);
    return r;
  } finally {
    c.destroy();
  }
}

// Stores the sample records through the ingest port (one PackedForward message with a chunk
// id) and waits for the ack. suffix makes the ids new, so the records are stored again.
async function loadSample(d, suffix = '') {
  const recs = sampleRecords().map((r) => Object.assign({}, r, {id: r.id + suffix}));
  const now = Math.floor(Date.now() / 1000);
  const chunk = 'sample-' + suffix + '-' + Math.random().toString(36).slice(2);
  const c = await RawClient.connect(d.ingestPort);
  c.send(packedForward('track2', recs.map((r) => entry(now, r)), {chunk}));
  const ack = await c.nextMessage();
  c.end();
  if (!ack || ack.ack !== chunk) throw new Error('sample not acked: ' + JSON.stringify(ack));
  return recs.length;
}

// Stops a daemon (SIGTERM) and checks it exited 0 with no sanitizer report in its log.
async function stopClean(d) {
  const how = await d.stop();
  if (how.code !== 0)
    throw new Error(`parleyd exited with ${how.code} (${how.sig}): ${d.log.slice(-2000)}`);
  const report = d.log.split('\n').filter((l) => /Sanitizer|runtime error:|^\s+#\d+ /.test(l));
  if (report.length) throw new Error('sanitizer report:\n' + report.slice(0, 30).join('\n'));
}

// TAP reporting.
const tests = [];
function test(name, fn) { tests.push({name, fn}); }

async function run(setup) {
  let failed = 0;
  const ctx = setup ? await setup() : {};
  for (const t of tests) {
    const started = Date.now();
    try {
      await t.fn(ctx);
      console.log(`ok - ${t.name} (${Date.now() - started} ms)`);
    } catch (e) {
      failed++;
      console.log(`not ok - ${t.name}`);
      for (const line of String(e && e.stack || e).split('\n').slice(0, 12)) console.log('# ' + line);
      if (ctx.daemon) console.log('# daemon log tail:\n# ' + ctx.daemon.log.split('\n').slice(-15).join('\n# '));
    }
  }
  if (ctx.cleanup) await ctx.cleanup();
  process.exit(failed ? 1 : 0);
}

function assert(cond, msg) { if (!cond) throw new Error('assertion failed: ' + msg); }
function eq(a, b, msg) {
  const ja = JSON.stringify(a), jb = JSON.stringify(b);
  if (ja !== jb) throw new Error(`${msg}: expected ${jb}, got ${ja}`);
}

module.exports = {
  BUILD, SLOW, Daemon, RawClient, QueryClient, Raw, sampleRecords, sleep, waitFor,
  eventTime, entry, message, forward, packedForward, packArray, encode, decodeMulti,
  test, run, assert, eq, HttpConn, http, loadSample, stopClean,
};
