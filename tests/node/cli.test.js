// The parley command-line client against the real parleyd: send (acks, refused lines,
// reconnect and resend across a daemon kill), every query op as a table and as --json,
// and error exits.
'use strict';
const {spawn, spawnSync, execFileSync} = require('child_process');
const fs = require('fs');
const net = require('net');
const os = require('os');
const path = require('path');
const L = require('./lib');
const {test, assert, eq} = L;

const PARLEY = path.join(L.BUILD, 'parley');
const SAMPLE = path.resolve(__dirname, '../data/track2-sample.jsonl');

function parley(args, opts = {}) {
  const r = spawnSync(PARLEY, args, Object.assign({timeout: 60000 * L.SLOW}, opts));
  return {status: r.status, out: r.stdout.toString(), err: r.stderr.toString()};
}

function q(d, args) { return parley(['--addr', `127.0.0.1:${d.queryPort}`, ...args]); }

test('parley send: the sample, every line acked', async ({d}) => {
  const r = parley(['--addr', `127.0.0.1:${d.ingestPort}`, 'send', SAMPLE]);
  eq(r.status, 0, 'exit status: ' + r.err);
  eq(r.out.trim(), 'sent 10, acked 10, refused 0', 'summary');
  eq((await d.q('stats')).events, 10, 'stored');
});

test('parley send: lines that are not JSON objects are refused by number, exit 1', async ({d}) => {
  const file = path.join(d.dir, 'mixed.jsonl');
  fs.writeFileSync(file, '{"institution": "Line One Institute", "id": "l1"}\n' +
    'not json at all\n\n[1, 2]\n{"institution": "Line Five Forum", "id": "l5"}\n{"unterminated": \n');
  const r = parley(['--addr', `127.0.0.1:${d.ingestPort}`, 'send', file]);
  eq(r.status, 1, 'exit status');
  eq(r.out.trim(), 'sent 2, acked 2, refused 3', 'summary');
  assert(/line 2:/.test(r.err) && /line 4:/.test(r.err) && /line 6:/.test(r.err), r.err);
});

test('parley send from stdin', async ({d}) => {
  const r = parley(['--addr', `127.0.0.1:${d.ingestPort}`, 'send', '-'],
    {input: '{"institution": "Stdin Council", "id": "s1"}\n'});
  eq([r.status, r.out.trim()], [0, 'sent 1, acked 1, refused 0'], 'stdin');
});

test('query ops as tables, --json, and errors', async ({d}) => {
  let r = q(d, ['top', '--window', '3650', '--as-of', '2023-12-31']);
  eq(r.status, 0, 'top exit');
  assert(/National Committee on U\.S\.-China Relations\s+3/.test(r.out), 'top table:\n' + r.out);
  // (earlier tests stored undated records, dated today: `to` must end the sample's years)
  r = q(d, ['--json', 'pair', '--a', 'National Committee on U.S.-China Relations',
    '--b', 'China-U.S. Green Fund', '--to', '2023-12-31']);
  eq(r.status, 0, 'pair exit');
  const pair = JSON.parse(r.out);
  eq([pair.events, pair.current_streak, pair.longest_streak, pair.first], [3, 2, 2, '2019-03-01'], 'pair');
  for (const op of [['ping'], ['stats'], ['topics', '--window', '3650'], ['institutions', '--prefix', 'Na'],
    ['series', '--bucket', 'year'], ['events', '--limit', '3'], ['rejects'],
    ['activity', '--institution', 'Center for China and Globalization', '--window', '365']]) {
    r = q(d, op);
    eq(r.status, 0, op[0] + ' exit: ' + r.err);
    assert(r.out.trim().length > 0, op[0] + ' printed something');
    r = q(d, ['--json', ...op]);
    eq(r.status, 0, op[0] + ' --json exit');
    JSON.parse(r.out);
  }
  r = q(d, ['activity', '--institution', 'Nobody Anywhere']);
  eq(r.status, 1, 'not_found exit');
  assert(/not_found/.test(r.err) && /Nobody Anywhere/.test(r.err), r.err);
  r = q(d, ['frobnicate']);
  eq(r.status, 1, 'unknown op exit');
  assert(/unknown_op/.test(r.err), r.err);
  r = parley(['--addr', '127.0.0.1:1', 'ping']);
  eq(r.status, 1, 'connection refused exit');
  assert(r.err.length > 0, 'says why');
});

test('parley send reconnects and resends across a daemon kill: nothing lost, nothing twice', async () => {
  // A fixed port, so the restarted daemon listens where the client reconnects.
  const port = await new Promise((resolve) => {
    const srv = net.createServer().listen(0, '127.0.0.1', () => {
      const p = srv.address().port;
      srv.close(() => resolve(p));
    });
  });
  const d = await L.Daemon.start({args: ['--listen', `127.0.0.1:${port}`]});
  const file = path.join(d.dir, 'gen.jsonl');
  try {
    fs.writeFileSync(file, execFileSync(path.join(L.BUILD, 'parley-bench'),
      ['gen', '--events', '60000', '--seed', '7'], {maxBuffer: 1 << 28}));
    const lines = fs.readFileSync(file, 'utf8').trim().split('\n');
    const ids = new Set(lines.map((l) => JSON.parse(l).id));
    const child = spawn(PARLEY, ['--addr', `127.0.0.1:${port}`, '--timeout', '5', 'send', file,
      '--batch', '500']);
    let out = '';
    child.stdout.on('data', (b) => { out += b; });
    child.stderr.on('data', () => {});
    const exited = new Promise((r) => child.on('exit', (code) => r(code)));
    await L.waitFor(async () => (await d.q('stats')).events > 5000, 30000 * L.SLOW, 20);
    await d.stop('SIGKILL');
    await L.sleep(300);
    await d.spawn(); // same data dir, same ingest port
    const code = await exited;
    eq(code, 0, 'exit status; output: ' + out);
    eq(out.trim(), `sent ${lines.length}, acked ${lines.length}, refused 0`, 'summary');
    const st = await d.q('stats');
    // the generator re-sends about 0.5% of its records on purpose (same date and id)
    eq(st.events, ids.size, 'every distinct record stored once');
  } finally {
    await d.stop();
    d.cleanup();
  }
});

L.run(async () => {
  const d = await L.Daemon.start();
  return {d, daemon: d, cleanup: async () => { await d.stop(); d.cleanup(); }};
});
