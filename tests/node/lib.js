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
const SAMPLE = path.resolve(__dirname, '../../../shared/data/track2-sample.jsonl');
const SAMPLE_FALLBACK = path.resolve(__dirname, '../data/track2-sample.jsonl');
const SLOW = process.env.PARLEY_SAN ? 4 : 1; // sanitizer builds run slower

function sampleRecords() {
  const file = fs.existsSync(SAMPLE_FALLBACK) ? SAMPLE_FALLBACK : SAMPLE;
  return fs.readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
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
  test, run, assert, eq,
};
