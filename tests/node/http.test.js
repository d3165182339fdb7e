// The HTTP listener against the real parleyd: /metrics checked line by line against the
// Prometheus text format (and by promtool when installed), /healthz, every query op as JSON
// with its error statuses, the dashboard page, and HTTP/1.1 framing: keep-alive, pipelining,
// HEAD, 400/404/405/413, bounds on connections, idle time and unread responses.
'use strict';
const {spawnSync} = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');
const L = require('./lib');
const {test, assert, eq} = L;

const NQ = 'National Committee on U.S.-China Relations';
const NOW = Math.floor(Date.now() / 1000);

// ---- Prometheus text format 0.0.4, as a strict reader ----

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const FLOAT = /^(?:[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|[+-]?Inf|NaN)$/;
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped']);

function parseLabels(s, where) {
  const labels = {};
  let i = 0;
  while (i < s.length) {
    const eq_ = s.indexOf('=', i);
    if (eq_ < 0) throw new Error(`${where}: label without "="`);
    const name = s.slice(i, eq_);
    if (!LABEL.test(name)) throw new Error(`${where}: bad label name ${JSON.stringify(name)}`);
    if (name in labels) throw new Error(`${where}: label ${name} given twice`);
    if (s[eq_ + 1] !== '"') throw new Error(`${where}: label value not quoted`);
    let j = eq_ + 2, v = '';
    for (; j < s.length && s[j] !== '"'; j++) {
      if (s[j] === '\\') {
        const e = s[++j];
        if (e === 'n') v += '\n';
        else if (e === '\\' || e === '"') v += e;
        else throw new Error(`${where}: bad escape \\${e} in a label value`);
      } else if (s[j] === '\n') {
        throw new Error(`${where}: raw newline in a label value`);
      } else {
        v += s[j];
      }
    }
    if (j >= s.length) throw new Error(`${where}: unterminated label value`);
    labels[name] = v;
    i = j + 1;
    if (s[i] === ',') i++;
    else if (i < s.length) throw new Error(`${where}: expected "," between labels`);
  }
  return labels;
}

// Returns Map family -> {help, type, samples: [{name, labels, value}]}; throws at the first
// line that breaks the format or our conventions.
function parseExposition(text) {
  const fams = new Map();
  const series = new Set();
  let current = null;
  if (!text.endsWith('\n')) throw new Error('the exposition must end with a newline');
  const lines = text.slice(0, -1).split('\n');
  const fam = (name) => {
    if (!fams.has(name)) fams.set(name, {help: null, type: null, samples: []});
    return fams.get(name);
  };
  lines.forEach((line, n) => {
    const where = `line ${n + 1} ${JSON.stringify(line.slice(0, 80))}`;
    let m;
    if (line === '') throw new Error(`${where}: empty line`);
    if ((m = /^# (HELP|TYPE) (\S+) (.*)$/.exec(line))) {
      const [, kw, name, rest] = m;
      if (!NAME.test(name)) throw new Error(`${where}: bad metric name`);
      const f = fam(name);
      if (f.samples.length) throw new Error(`${where}: ${kw} after the family's samples`);
      if (kw === 'HELP') {
        if (f.help !== null) throw new Error(`${where}: second HELP`);
        if (!rest.trim()) throw new Error(`${where}: empty HELP`);
        f.help = rest;
      } else {
        if (f.type !== null) throw new Error(`${where}: second TYPE`);
        if (!TYPES.has(rest)) throw new Error(`${where}: unknown type`);
        f.type = rest;
      }
      if (current !== name && f.samples.length === 0) current = name;
      return;
    }
    if (line.startsWith('#')) throw new Error(`${where}: unexpected comment`);
    m = /^([^{} ]+)(?:\{(.*)\})? (\S+)(?: (-?\d+))?$/.exec(line);
    if (!m) throw new Error(`${where}: not a sample line`);
    const [, name, lbl, value] = m;
    if (!NAME.test(name)) throw new Error(`${where}: bad metric name`);
    if (!FLOAT.test(value)) throw new Error(`${where}: bad value`);
    let family = name;
    const base = name.replace(/_(bucket|sum|count)$/, '');
    if (base !== name && fams.has(base) && fams.get(base).type === 'histogram') family = base;
    const f = fams.get(family);
    if (!f || !f.type || !f.help) throw new Error(`${where}: sample before its HELP and TYPE`);
    if (current !== family) throw new Error(`${where}: family ${family} is not contiguous`);
    const labels = lbl === undefined ? {} : parseLabels(lbl, where);
    const key = name + JSON.stringify(Object.entries(labels).sort());
    if (series.has(key)) throw new Error(`${where}: duplicate series`);
    series.add(key);
    if (f.type === 'histogram' && name === family)
      throw new Error(`${where}: bare histogram sample`);
    if (f.type === 'counter' && !/_total$/.test(name))
      throw new Error(`${where}: counter without _total`);
    if (f.type !== 'histogram' && 'le' in labels)
      throw new Error(`${where}: le outside a histogram`);
    f.samples.push({name, labels, value: Number(value)});
  });
  for (const [name, f] of fams) {
    if (!f.type || !f.help) throw new Error(`${name}: HELP or TYPE missing`);
    if (!f.samples.length) throw new Error(`${name}: family without samples`);
    if (f.type === 'histogram') checkHistogram(name, f);
  }
  return fams;
}

// Buckets ascending and cumulative, +Inf last and equal to _count, _sum present: per series.
function checkHistogram(name, f) {
  const groups = new Map();
  for (const s of f.samples) {
    const {le, ...rest} = s.labels;
    const key = JSON.stringify(Object.entries(rest).sort());
    if (!groups.has(key)) groups.set(key, {buckets: [], sum: null, count: null});
    const g = groups.get(key);
    if (s.name === name + '_bucket') {
      if (le === undefined) throw new Error(`${name}: bucket without le`);
      if (!FLOAT.test(le)) throw new Error(`${name}: le ${le} is not a float`);
      g.buckets.push({le: le === '+Inf' ? Infinity : Number(le), v: s.value});
    } else if (s.name === name + '_sum') {
      g.sum = s.value;
    } else {
      g.count = s.value;
    }
  }
  for (const [key, g] of groups) {
    const what = `${name}${key}`;
    if (g.buckets.length < 2) throw new Error(`${what}: fewer than two buckets`);
    for (let i = 1; i < g.buckets.length; i++) {
      if (!(g.buckets[i].le > g.buckets[i - 1].le)) throw new Error(`${what}: le not ascending`);
      if (g.buckets[i].v < g.buckets[i - 1].v) throw new Error(`${what}: buckets not cumulative`);
    }
    const last = g.buckets[g.buckets.length - 1];
    if (last.le !== Infinity) throw new Error(`${what}: no +Inf bucket`);
    if (g.count === null || g.sum === null) throw new Error(`${what}: _sum or _count missing`);
    if (last.v !== g.count) throw new Error(`${what}: +Inf ${last.v} != _count ${g.count}`);
    if (g.sum < 0) throw new Error(`${what}: negative _sum`);
  }
}

function value(fams, name, labels = {}) {
  const base = name.replace(/_(bucket|sum|count)$/, '');
  const f = fams.get(name) || fams.get(base);
  if (!f) throw new Error(`metric ${name} missing`);
  const s = f.samples.find((x) => x.name === name &&
    Object.entries(labels).every(([k, v]) => x.labels[k] === v));
  if (!s) throw new Error(`sample ${name}${JSON.stringify(labels)} missing`);
  return s.value;
}

async function metrics(d) {
  const r = await L.http(d.httpPort, '/metrics');
  eq(r.status, 200, '/metrics status');
  return parseExposition(r.text);
}

// The same request on the query port, for comparing shapes.
async function socketReply(d, req) { return d.query(req.op, req); }

const stopClean = L.stopClean;

// ---- metrics ----

test('GET /metrics: every line in the text format, histograms cumulative', async ({daemon}) => {
  const r = await L.http(daemon.httpPort, '/metrics');
  eq(r.status, 200, 'status');
  eq(r.headers['content-type'], 'text/plain; version=0.0.4; charset=utf-8', 'content type');
  eq(r.headers['cache-control'], 'no-store', 'cache control');
  eq(+r.headers['content-length'], r.body.length, 'content length');
  const fams = parseExposition(r.text);
  const want = {
    parley_build_info: 'gauge', parley_start_time_seconds: 'gauge', parley_uptime_seconds: 'gauge',
    parley_connections: 'gauge', parley_connections_accepted_total: 'counter',
    parley_connections_refused_total: 'counter',
    parley_ingest_received_bytes_total: 'counter', parley_ingest_messages_total: 'counter',
    parley_ingest_records_total: 'counter', parley_ingest_rejected_total: 'counter',
    parley_ingest_duplicates_total: 'counter', parley_ingest_acks_total: 'counter',
    parley_ingest_protocol_errors_total: 'counter', parley_ingest_auth_failures_total: 'counter',
    parley_ingest_acks_pending: 'gauge', parley_ingest_reads_paused: 'gauge',
    parley_ingest_read_pauses_total: 'counter', parley_ingest_ack_duration_seconds: 'histogram',
    parley_writer_commits_total: 'counter', parley_writer_commit_errors_total: 'counter',
    parley_writer_commit_duration_seconds: 'histogram', parley_writer_batch_records: 'histogram',
    parley_lmdb_map_size_bytes: 'gauge', parley_lmdb_map_size_max_bytes: 'gauge',
    parley_lmdb_used_bytes: 'gauge', parley_query_duration_seconds: 'histogram',
    parley_http_requests_total: 'counter', parley_http_responses_total: 'counter',
  };
  for (const [name, type] of Object.entries(want)) {
    assert(fams.has(name), name + ' is exported');
    eq(fams.get(name).type, type, name + ' type');
  }
  const version = (await daemon.q('ping')).version;
  eq(value(fams, 'parley_build_info', {version}), 1, 'build info');
  for (const server of ['ingest', 'query', 'http'])
    assert(value(fams, 'parley_connections', {server}) >= 0, 'connections ' + server);
  assert(value(fams, 'parley_connections', {server: 'http'}) >= 1, 'this scrape is a connection');
  const ops = new Set(fams.get('parley_query_duration_seconds').samples.map((s) => s.labels.op));
  for (const op of ['ping', 'stats', 'activity', 'top', 'series', 'pair', 'topics',
    'institutions', 'events', 'rejects', 'other'])
    assert(ops.has(op), 'query histogram for op ' + op);
  const les = fams.get('parley_writer_commit_duration_seconds').samples
    .filter((s) => s.name.endsWith('_bucket')).map((s) => s.labels.le);
  eq(les.slice(0, 3), ['0.000016', '0.000032', '0.000064'], 'duration buckets: 2^i * 16 us');
  eq(les[les.length - 1], '+Inf', 'last bucket');
  const batch = fams.get('parley_writer_batch_records').samples
    .filter((s) => s.name.endsWith('_bucket')).map((s) => s.labels.le);
  eq(batch.slice(0, 4), ['0', '1', '3', '7'], 'batch buckets: fewer than 2^i records');
});

test('metrics count what the daemon did: records, commits, bytes, LMDB', async ({daemon}) => {
  const fams = await metrics(daemon);
  const st = await daemon.q('stats');
  eq(value(fams, 'parley_ingest_records_total'), st.events, 'records stored = stats.events');
  eq(value(fams, 'parley_ingest_rejected_total'), st.rejected, 'rejected');
  assert(value(fams, 'parley_ingest_acks_total') >= 1, 'acks');
  assert(value(fams, 'parley_ingest_received_bytes_total') > 1000, 'bytes in');
  assert(value(fams, 'parley_ingest_messages_total') >= 1, 'messages');
  assert(value(fams, 'parley_writer_commits_total') >= 1, 'commits');
  assert(value(fams, 'parley_writer_commit_duration_seconds_count') >= 1, 'commit histogram count');
  assert(value(fams, 'parley_writer_commit_duration_seconds_sum') > 0, 'commit time');
  assert(value(fams, 'parley_writer_batch_records_sum') >= st.events, 'batch sum');
  assert(value(fams, 'parley_ingest_ack_duration_seconds_count') >= 1, 'ack latency recorded');
  const used = value(fams, 'parley_lmdb_used_bytes');
  const map = value(fams, 'parley_lmdb_map_size_bytes');
  assert(used > 0 && used <= map, `used ${used} within map ${map}`);
  assert(map <= value(fams, 'parley_lmdb_map_size_max_bytes'), 'map within its max');
  eq(value(fams, 'parley_lmdb_full'), 0, 'not full');
  const start = value(fams, 'parley_start_time_seconds');
  assert(Math.abs(start - NOW) < 120, 'start time is now-ish');
  assert(value(fams, 'parley_uptime_seconds') >= 0, 'uptime');
});

test('metrics move: query latency per op from both ports, HTTP statuses', async ({daemon}) => {
  const before = await metrics(daemon);
  await daemon.q('topics', {window: 3650});
  await L.http(daemon.httpPort, '/v1/top?window=3650');
  await L.http(daemon.httpPort, '/v1/top?window=3650');
  await L.http(daemon.httpPort, '/no-such-page');
  const after = await metrics(daemon);
  const count = (f, op) => value(f, 'parley_query_duration_seconds_count', {op});
  eq(count(after, 'topics') - count(before, 'topics'), 1, 'topics via the query port');
  eq(count(after, 'top') - count(before, 'top'), 2, 'top via HTTP');
  const cls = (f, code) => value(f, 'parley_http_responses_total', {code});
  assert(cls(after, '2xx') - cls(before, '2xx') >= 3, '2xx counted');
  eq(cls(after, '4xx') - cls(before, '4xx'), 1, '404 counted');
  eq(value(after, 'parley_http_requests_total') - value(before, 'parley_http_requests_total'), 4,
    'requests between the scrapes (this scrape included)');
});

test('promtool check metrics accepts the exposition (when installed)', async ({daemon}) => {
  const which = spawnSync('sh', ['-c', 'command -v promtool']);
  if (which.status !== 0) {
    console.log('# promtool not installed (Debian package prometheus): the parser test covers it');
    return;
  }
  const r = await L.http(daemon.httpPort, '/metrics');
  const out = spawnSync('promtool', ['check', 'metrics'], {input: r.body});
  eq(out.status, 0, 'promtool exit status: ' + out.stdout + out.stderr);
  eq((out.stdout + out.stderr).trim(), '', 'promtool reports no lint problems');
});

// ---- health ----

test('GET /healthz: 200 ok while storage works', async ({daemon}) => {
  const r = await L.http(daemon.httpPort, '/healthz');
  eq([r.status, r.text], [200, 'ok\n'], 'healthz');
  eq(r.headers['cache-control'], 'no-store', 'not cached');
  assert(/^text\/plain/.test(r.headers['content-type']), 'plain text');
});

test('GET /healthz: 503 with a reason when the store is full', async () => {
  const d = await L.Daemon.start({args: ['--set', 'storage.map_size=1MiB',
    '--set', 'storage.map_size_max=1MiB', '--set', 'ingest.record_max_bytes=512KiB']});
  try {
    eq((await L.http(d.httpPort, '/healthz')).status, 200, 'healthy at first');
    const pad = 'x'.repeat(200 * 1024);
    for (let i = 0; i < 40; i++) {
      const c = await L.RawClient.connect(d.ingestPort);
      c.send(L.message('fill', NOW, {institution: 'Filler ' + i, note: pad}, {chunk: 'fill-' + i}));
      const ack = await c.nextMessage();
      c.destroy();
      if (!ack) break; // the commit failed: no ack, connection closed
    }
    const r = await L.http(d.httpPort, '/healthz');
    eq(r.status, 503, 'healthz status: ' + r.text);
    assert(/full/.test(r.text) && r.text.endsWith('\n') && r.text.split('\n').length === 2,
      'one line naming the cause: ' + JSON.stringify(r.text));
    const fams = await metrics(d);
    eq(value(fams, 'parley_lmdb_full'), 1, 'parley_lmdb_full');
    assert(value(fams, 'parley_writer_commit_errors_total') >= 1, 'commit errors counted');
    const api = await L.http(d.httpPort, '/v1/stats');
    eq(api.status, 200, 'reads still work');
    await stopClean(d);
  } finally {
    d.cleanup();
  }
});

// ---- query ops as JSON ----

test('GET /v1/<op>: the same reply as the query port, as JSON', async ({daemon}) => {
  for (const [url, req] of [
    ['/v1/top?window=365', {op: 'top', window: 365}],
    ['/v1/topics?window=3650&limit=5', {op: 'topics', window: 3650, limit: 5}],
    ['/v1/institutions?limit=1000', {op: 'institutions', limit: 1000}],
    ['/v1/pair?a=' + encodeURIComponent(NQ) + '&b=China-U.S.+Green+Fund',
      {op: 'pair', a: NQ, b: 'China-U.S. Green Fund'}],
    ['/v1/series?bucket=year&from=2019-01-01&to=2023-12-31',
      {op: 'series', bucket: 'year', from: '2019-01-01', to: '2023-12-31'}],
  ]) {
    const r = await L.http(daemon.httpPort, url);
    eq(r.status, 200, url + ' status');
    eq(r.headers['content-type'], 'application/json', url + ' type');
    eq(r.headers['cache-control'], 'no-store', url + ' cache');
    assert(r.text.endsWith('}\n'), url + ' ends with a newline');
    eq(Object.keys(r.json), ['req', 'ok', 'result'], url + ' reply keys');
    eq(r.json.ok, true, url + ' ok');
    eq(r.json.result, (await socketReply(daemon, req)).result, url + ' result');
  }
  const st = await L.http(daemon.httpPort, '/v1/stats');
  eq(st.json.result.events, 10, 'stats events');
  eq(st.json.result.last_date, '2023-11-13', 'stats last date');
});

test('query strings: + and %XX decoded, integers as strings, req echoed', async ({daemon}) => {
  const a = await L.http(daemon.httpPort,
    '/v1/activity?institution=National+Committee+on+U.S.-China+Relations&window=36525');
  const b = await L.http(daemon.httpPort,
    '/v1/activity?institution=National%20Committee%20on%20U.S.%2DChina%20Relations&window=36525');
  eq(a.status, 200, 'status');
  eq(a.json.result.events, 3, 'events of ' + NQ);
  eq(a.json.result.formats, {virtual: 2, in_person: 1}, 'formats');
  eq(b.json, a.json, '%20 and + decode alike');
  const p = await L.http(daemon.httpPort, '/v1/ping?req=r%C3%A9q%201');
  const version = p.json.result.version;
  eq(p.json, {req: 'réq 1', ok: true, result: {pong: true, version}}, 'ping');
  const ev = await L.http(daemon.httpPort,
    '/v1/events?institution=Quincy+Institute+for+Responsible+Statecraft&limit=5');
  const row = ev.json.result.rows.find((x) => x.id === 't2-2023-11-13-quincy-letter');
  assert(row, 'the Quincy letter is returned');
  eq([row.participants, row.date, row.topics.length > 0], [34, '2023-11-13', true], 'fields');
});

test('error codes map to HTTP statuses with the socket reply shape', async ({daemon}) => {
  const cases = [
    ['/v1/top?window=abc', 400, 'bad_request'],
    ['/v1/top?window=0', 400, 'bad_request'],
    ['/v1/top?window=30&window=31', 400, 'bad_request'],
    ['/v1/top?bogus=1', 400, 'bad_request'],
    ['/v1/top?window=%zz', 400, 'bad_request'],
    ['/v1/no_such_op', 404, 'unknown_op'],
    ['/v1/activity?institution=Nobody+At+All', 404, 'not_found'],
    ['/v1/series?bucket=day&from=1900-01-01&to=2199-12-31', 413, 'too_large'],
    ['/v1/events?limit=999999', 413, 'too_large'],
  ];
  for (const [url, status, code] of cases) {
    const r = await L.http(daemon.httpPort, url);
    eq(r.status, status, url + ' status');
    eq(r.headers['content-type'], 'application/json', url + ' type');
    eq(Object.keys(r.json), ['req', 'ok', 'error'], url + ' keys');
    eq([r.json.ok, r.json.error.code], [false, code], url + ' code');
    assert(typeof r.json.error.message === 'string' && r.json.error.message, url + ' message');
  }
});

test('HEAD: the GET headers and Content-Length, no body', async ({daemon}) => {
  for (const p of ['/', '/metrics', '/healthz', '/v1/stats', '/v1/nope']) {
    const c = await L.HttpConn.connect(daemon.httpPort);
    c.send(`HEAD ${p} HTTP/1.1\r\nHost: x\r\n\r\nGET ${p} HTTP/1.1\r\nHost: x\r\n\r\n`);
    const h = await c.response({head: true});
    const g = await c.response();
    c.destroy();
    eq(h.status, g.status, p + ' status');
    eq(h.headers['content-type'], g.headers['content-type'], p + ' type');
    // /metrics and /v1/stats change between the two (uptime, counters): only the page is fixed.
    if (p === '/' || p === '/healthz' || p === '/v1/nope')
      eq(+h.headers['content-length'], g.body.length, p + ' length');
    else assert(+h.headers['content-length'] > 0, p + ' length');
  }
});

// ---- HTTP framing ----

test('every response has Content-Type, Content-Length and a Date', async ({daemon}) => {
  for (const p of ['/', '/metrics', '/healthz', '/v1/ping', '/v1/nope', '/nope']) {
    const r = await L.http(daemon.httpPort, p);
    for (const h of ['content-type', 'content-length', 'date'])
      assert(r.headers[h], `${p}: ${h} present`);
    eq(r.rawHeaders.filter(([k]) => k === 'content-length').length, 1, p + ' one length');
    eq(r.minor, 1, p + ' answers HTTP/1.1');
  }
});

test('unknown paths are 404; other methods 405 with Allow, connection kept', async ({daemon}) => {
  for (const p of ['/nope', '/v1', '/v1/', '/metrics/x', '/index.html'])
    eq((await L.http(daemon.httpPort, p)).status, 404, p);
  const c = await L.HttpConn.connect(daemon.httpPort);
  for (const m of ['POST', 'PUT', 'DELETE', 'OPTIONS', 'PATCH']) {
    c.send(`${m} /v1/stats HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello`);
    const r = await c.response();
    eq(r.status, 405, m + ' status');
    eq(r.headers.allow, 'GET, HEAD', m + ' Allow');
  }
  c.send('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
  eq((await c.response()).status, 200, 'the connection still serves GET');
  c.destroy();
});

test('malformed requests get 400 and the connection is closed', async ({daemon}) => {
  for (const bytes of ['GARBAGE\r\n\r\n', 'GET / HTTP/1.1\r\nBad Header\r\n\r\n',
    '\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03' + 'x'.repeat(40),
    'GET / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!']) {
    const c = await L.HttpConn.connect(daemon.httpPort);
    c.send(Buffer.from(bytes, 'latin1'));
    const r = await c.response();
    assert(r, JSON.stringify(bytes) + ': a response before the close');
    eq(r.status, 400, JSON.stringify(bytes) + ' status');
    eq(r.headers.connection, 'close', 'Connection: close');
    assert(await c.closedWithin(), JSON.stringify(bytes) + ': closed');
  }
  eq((await L.http(daemon.httpPort, '/healthz')).status, 200, 'others still served');
});

test('request head over max_request_bytes: 413; exactly the limit: served', async ({daemon}) => {
  // The default http.max_request_bytes is 16 KiB.
  const req = (total) => {
    const head = 'GET /healthz HTTP/1.1\r\nX-Pad: ';
    return head + 'a'.repeat(total - head.length - 4) + '\r\n\r\n';
  };
  const c = await L.HttpConn.connect(daemon.httpPort);
  c.send(req(16384));
  eq((await c.response()).status, 200, '16384 bytes');
  c.send(req(16385));
  const r = await c.response();
  eq(r.status, 413, '16385 bytes');
  assert(await c.closedWithin(), 'closed after 413');
  const big = await L.HttpConn.connect(daemon.httpPort);
  big.send('GET /' + 'a'.repeat(100000) + ' HTTP/1.1\r\n\r\n');
  eq((await big.response()).status, 413, 'a 100 KB request line');
  assert(await big.closedWithin(), 'closed');
  const body = await L.HttpConn.connect(daemon.httpPort);
  body.send('GET /healthz HTTP/1.1\r\nContent-Length: 100000\r\n\r\n' + 'b'.repeat(100000));
  eq((await body.response()).status, 413, 'a body over the bound');
  body.destroy();
});

test('keep-alive: HTTP/1.1 by default, HTTP/1.0 only when asked', async ({daemon}) => {
  const c = await L.HttpConn.connect(daemon.httpPort);
  for (let i = 0; i < 5; i++) {
    c.send('GET /v1/ping HTTP/1.1\r\nHost: x\r\n\r\n');
    const r = await c.response();
    eq(r.status, 200, 'request ' + i);
    assert(!r.headers.connection, 'no Connection header on a kept HTTP/1.1 connection');
  }
  c.send('GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n');
  eq((await c.response()).headers.connection, 'close', 'Connection: close honoured');
  assert(await c.closedWithin(), 'closed after Connection: close');

  const old = await L.HttpConn.connect(daemon.httpPort);
  old.send('GET /healthz HTTP/1.0\r\n\r\n');
  eq((await old.response()).headers.connection, 'close', 'HTTP/1.0 closes by default');
  assert(await old.closedWithin(), 'HTTP/1.0 closed');

  const ka = await L.HttpConn.connect(daemon.httpPort);
  ka.send('GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n');
  eq((await ka.response()).headers.connection, 'keep-alive', 'HTTP/1.0 keep-alive confirmed');
  ka.send('GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n');
  eq((await ka.response()).status, 200, 'second HTTP/1.0 request');
  ka.destroy();
});

test('pipelined requests are answered in order, API queries among quick ones', async ({daemon}) => {
  const c = await L.HttpConn.connect(daemon.httpPort);
  const reqs = [];
  for (let i = 0; i < 60; i++) {
    if (i % 3 === 0) reqs.push([`/v1/ping?req=${i}`, (r) => r.json && r.json.req === String(i)]);
    else if (i % 3 === 1)
      reqs.push([`/v1/top?window=3650&req=${i}`, (r) => r.json && r.json.req === String(i)]);
    else reqs.push(['/healthz', (r) => r.text === 'ok\n']);
  }
  c.send(reqs.map(([p]) => `GET ${p} HTTP/1.1\r\nHost: x\r\n\r\n`).join(''));
  for (const [p, check] of reqs) {
    const r = await c.response();
    if (/json/.test(r.headers['content-type'])) r.json = JSON.parse(r.text);
    assert(r.status === 200 && check(r), `in order: ${p} got ${r.text.slice(0, 80)}`);
  }
  c.destroy();
});

test('requests split at every byte still parse', async ({daemon}) => {
  const c = await L.HttpConn.connect(daemon.httpPort);
  const text = 'GET /v1/ping?req=split HTTP/1.1\r\nHost: x\r\nX-A: b\r\n\r\n' +
    'GET /healthz HTTP/1.1\r\n\r\n';
  for (const ch of text) {
    c.send(ch);
    await L.sleep(1);
  }
  eq(JSON.parse((await c.response()).text).req, 'split', 'first');
  eq((await c.response()).text, 'ok\n', 'second');
  c.destroy();
});

test('many clients at once', async ({daemon}) => {
  const rs = await Promise.all(Array.from({length: 60}, (_, i) =>
    L.http(daemon.httpPort, i % 2 ? `/v1/top?window=365&req=${i}` : '/metrics')));
  rs.forEach((r, i) => eq(r.status, 200, 'client ' + i));
});

test('a client that does not read: responses wait in order, memory bounded', async ({daemon}) => {
  const page = (await L.http(daemon.httpPort, '/')).body.length;
  const c = await L.HttpConn.connect(daemon.httpPort);
  c.sock.pause();
  const before = daemon.anonKiB();
  const n = 1000; // about 1000 x 21 KB of responses; the write queue bound is 1 MiB
  let reqs = '';
  for (let i = 0; i < n; i++)
    reqs += i % 50 === 0 ? `GET /v1/ping?req=${i} HTTP/1.1\r\n\r\n` : 'GET / HTTP/1.1\r\n\r\n';
  c.send(reqs);
  await L.sleep(1000 * L.SLOW);
  const grown = daemon.anonKiB() - before;
  console.log(`# ${n} requests unread: anonymous memory grew by ${grown} KiB`);
  if (!process.env.PARLEY_SAN)
    assert(grown < 12 * 1024, `grew by ${grown} KiB for ${(n * page) >> 10} KiB of responses`);
  eq((await L.http(daemon.httpPort, '/healthz')).status, 200, 'others served meanwhile');
  c.sock.resume();
  for (let i = 0; i < n; i++) {
    const r = await c.response();
    if (i % 50 === 0) eq(JSON.parse(r.text).req, String(i), 'ping ' + i + ' in its place');
    else eq(r.body.length, page, 'page ' + i + ' whole');
  }
  c.destroy();
});

test('unix socket listener', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'parley-http-'));
  const sock = path.join(dir, 'http.sock');
  const d = await L.Daemon.start({args: ['--http-listen', 'unix:' + sock]});
  try {
    assert(/http unix:/.test(d.log), 'ready line names the socket');
    const r = await L.http({path: sock}, '/v1/ping');
    eq([r.status, r.json.ok], [200, true], 'ping over the unix socket');
    await stopClean(d);
  } finally {
    d.cleanup();
    fs.rmSync(dir, {recursive: true, force: true});
  }
});

test('bounds: max_connections refused with 503, idle and slow requests closed', async () => {
  const d = await L.Daemon.start({args: ['--set', 'http.max_connections=2',
    '--set', 'ingest.idle_timeout=400ms']});
  try {
    const a = await L.HttpConn.connect(d.httpPort);
    const b = await L.HttpConn.connect(d.httpPort);
    a.send('GET /healthz HTTP/1.1\r\n\r\n');
    b.send('GET /healthz HTTP/1.1\r\n\r\n');
    eq([(await a.response()).status, (await b.response()).status], [200, 200], 'two served');
    const c = await L.HttpConn.connect(d.httpPort);
    const r = await c.response();
    eq(r && r.status, 503, 'the third is refused');
    assert(await c.closedWithin(), 'and closed');
    // idle keep-alive connections go after the timeout
    assert(await a.closedWithin(3000 * L.SLOW), 'idle connection closed');
    assert(await b.closedWithin(3000 * L.SLOW), 'idle connection closed');
    // a request trickling in slower than the timeout allows is cut off too
    const slow = await L.HttpConn.connect(d.httpPort);
    const started = Date.now();
    const dribble = setInterval(() => slow.ended || slow.send('X'), 100);
    slow.send('GET /healthz HTTP/1.1\r\nX-Slow: ');
    const closed = await slow.closedWithin(5000 * L.SLOW);
    clearInterval(dribble);
    assert(closed, 'slow request closed');
    assert(Date.now() - started < 4000 * L.SLOW, 'within a few timeouts');
    // the closed connections leave the count on the daemon's next loop turn
    const res = await L.waitFor(async () => {
      const x = await L.http(d.httpPort, '/metrics');
      return x.status === 200 ? x : null;
    });
    const fams = parseExposition(res.text);
    // (1, or more when a /metrics attempt above met the limit too)
    assert(value(fams, 'parley_connections_refused_total', {server: 'http'}) >= 1, 'refusal counted');
    await stopClean(d);
  } finally {
    d.cleanup();
  }
});

test('SIGTERM with open and busy HTTP connections exits 0 promptly', async () => {
  const d = await L.Daemon.start();
  try {
    await L.loadSample(d);
    const idle = await L.HttpConn.connect(d.httpPort);
    idle.send('GET /healthz HTTP/1.1\r\n\r\n');
    await idle.response();
    const busy = await L.HttpConn.connect(d.httpPort);
    let reqs = '';
    for (let i = 0; i < 200; i++) reqs += 'GET /v1/series?bucket=day HTTP/1.1\r\n\r\n';
    busy.send(reqs);
    await L.sleep(50);
    const t0 = Date.now();
    await stopClean(d);
    assert(Date.now() - t0 < 6000 * L.SLOW, 'stopped within seconds');
    assert(await idle.closedWithin(1000), 'idle connection closed');
  } finally {
    d.cleanup();
  }
});

// ---- dashboard ----

test('GET /: the dashboard, one self-contained HTML document', async ({daemon}) => {
  const r = await L.http(daemon.httpPort, '/');
  eq(r.status, 200, 'status');
  eq(r.headers['content-type'], 'text/html; charset=utf-8', 'type');
  const csp = r.headers['content-security-policy'] || '';
  assert(/default-src 'none'/.test(csp) && /connect-src 'self'/.test(csp), 'CSP keeps it local');
  const html = r.text;
  assert(/^<!doctype html>/i.test(html), 'doctype');
  assert(!/<script[^>]+src=/i.test(html), 'no external scripts');
  assert(!/<link[^>]+rel="?stylesheet/i.test(html), 'no external stylesheets');
  assert(!/(?:src|href)="?(?:https?:)?\/\//i.test(html), 'no network URLs');
  assert(!/url\(\s*['"]?(?:https?:)?\/\//i.test(html), 'no CSS URLs');
  assert(!/@import/i.test(html), 'no imports');
  for (const op of ['stats', 'top', 'series', 'topics', 'institutions', 'pair'])
    assert(html.includes(`'${op}'`), 'the page uses /v1/' + op);
  assert(html.includes('<select id="window">'), 'window select');
});

test('the daemon stops cleanly after all of the above', async ({daemon}) => {
  await stopClean(daemon);
});

L.run(async () => {
  const daemon = await L.Daemon.start();
  await L.loadSample(daemon);
  return {
    daemon,
    cleanup: async () => {
      await daemon.stop();
      daemon.cleanup();
    },
  };
});
