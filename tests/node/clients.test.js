// Real Forward clients against the real parleyd: npm fluent-logger and @fluent-org/logger in
// every mode with acks, plus hand-built frames in the shapes Fluentd and Fluent Bit send
// (str32 entries, compressed:"text", concatenated gzip, v1.5 [EventTime, meta] times),
// retried chunks and re-sent ids, rejects, heartbeats, half-close, and the handshake.
'use strict';
const zlib = require('zlib');
const logger = require('fluent-logger');
const {FluentClient} = require('@fluent-org/logger');
const L = require('./lib');
const {test, assert, eq} = L;

const sample = L.sampleRecords();
const NOW = Math.floor(Date.now() / 1000);

function withIds(recs, suffix) {
  return recs.map((r) => Object.assign({}, r, {id: r.id + suffix}));
}

async function stats(d) { return d.q('stats'); }

test('fluent-logger, Message mode with acks: every record stored', async ({daemon}) => {
  const before = (await stats(daemon)).events;
  const sender = logger.createFluentSender('track2', {
    host: '127.0.0.1', port: daemon.ingestPort, requireAckResponse: true,
    ackResponseTimeout: 10000 * L.SLOW, timeout: 5.0,
  });
  for (const r of withIds(sample, '-fl-msg')) {
    await new Promise((res, rej) => sender.emit('event', r, (e) => (e ? rej(e) : res())));
  }
  sender.end();
  eq((await stats(daemon)).events - before, sample.length, 'new events');
  const ev = await daemon.q('events', {institution: 'Quincy Institute for Responsible Statecraft'});
  const row = ev.rows.find((x) => x.id === 't2-2023-11-13-quincy-letter-fl-msg');
  assert(row, 'the Quincy letter is returned by the events op');
  eq(row.tag, 'track2.event', 'tag');
  eq(row.participants, 34, 'participants');
  eq(row.date, '2023-11-13', 'date');
});

test('fluent-logger, PackedForward and CompressedPackedForward with acks', async ({daemon}) => {
  for (const mode of ['PackedForward', 'CompressedPackedForward']) {
    const before = (await stats(daemon)).events;
    const sender = logger.createFluentSender('track2', {
      host: '127.0.0.1', port: daemon.ingestPort, requireAckResponse: true,
      ackResponseTimeout: 10000 * L.SLOW, eventMode: mode, flushInterval: 5,
    });
    await Promise.all(withIds(sample, '-fl-' + mode).map((r) =>
      new Promise((res, rej) => sender.emit('event', r, (e) => (e ? rej(e) : res())))));
    sender.end();
    eq((await stats(daemon)).events - before, sample.length, mode + ' new events');
  }
});

test('@fluent-org/logger, all four modes, EventTime, pipelined acks', async ({daemon}) => {
  for (const mode of ['Message', 'Forward', 'PackedForward', 'CompressedPackedForward']) {
    const before = (await stats(daemon)).events;
    const c = new FluentClient('org', {
      socket: {host: '127.0.0.1', port: daemon.ingestPort},
      ack: {ackTimeout: 10000 * L.SLOW}, eventMode: mode, milliseconds: true,
    });
    await Promise.all(withIds(sample, '-org-' + mode).map((r) => c.emit('event', r)));
    await c.disconnect();
    eq((await stats(daemon)).events - before, sample.length, mode + ' new events');
  }
});

test('a retried chunk is acked again and stored once', async ({daemon}) => {
  const before = await stats(daemon);
  const entries = [L.entry(L.eventTime(NOW), {institution: 'Retry Institute', kind: 'visit'}),
    L.entry(NOW, {institution: 'Retry Institute', kind: 'seminar'})];
  const frame = L.packedForward('retry', entries, {chunk: 'Y2h1bmstMQ==\n', size: 2});
  const c = await L.RawClient.connect(daemon.ingestPort);
  c.send(frame);
  eq(await c.nextMessage(), {ack: 'Y2h1bmstMQ==\n'}, 'first ack echoes the chunk byte-exact');
  c.send(frame);
  eq(await c.nextMessage(), {ack: 'Y2h1bmstMQ==\n'}, 'the retry is acked too');
  c.end();
  const after = await stats(daemon);
  eq(after.events - before.events, 2, 'stored once');
  eq(after.duplicates - before.duplicates, 0, 'a retried chunk is not a duplicate record');
});

test('a re-sent id in a new chunk is counted as duplicate, never stored twice', async ({daemon}) => {
  const before = await stats(daemon);
  const rec = {institution: 'Idem Center', date: '2023-03-03', id: 'same-id-1'};
  const c = await L.RawClient.connect(daemon.ingestPort);
  c.send(L.message('t', NOW, rec, {chunk: 'a1'}));
  c.send(L.message('t', NOW, rec, {chunk: 'a2'}));
  c.send(L.message('t', NOW, Object.assign({}, rec, {date: '2023-03-04'}), {chunk: 'a3'}));
  eq(await c.nextMessage(), {ack: 'a1'}, 'ack 1');
  eq(await c.nextMessage(), {ack: 'a2'}, 'ack 2');
  eq(await c.nextMessage(), {ack: 'a3'}, 'ack 3');
  c.end();
  const after = await stats(daemon);
  eq(after.events - before.events, 2, 'the same id on another date is another record');
  eq(after.duplicates - before.duplicates, 1, 'duplicates');
});

test('Fluentd shapes: str32 entries, compressed:"text", concatenated gzip members', async ({daemon}) => {
  const before = (await stats(daemon)).events;
  const e1 = L.entry(L.eventTime(NOW, 5), {institution: 'Fluentd Shape A'});
  const e2 = L.entry(L.eventTime(NOW, 6), {institution: 'Fluentd Shape B'});
  const c = await L.RawClient.connect(daemon.ingestPort);
  c.send(L.packedForward('fd', [e1, e2], {size: 2, compressed: 'text', chunk: 'fd-1'}, {asStr: true}));
  eq(await c.nextMessage(), {ack: 'fd-1'}, 'str32 + text');
  // Two gzip members back to back, in a str32 as Fluentd writes it.
  const body = Buffer.concat([zlib.gzipSync(e1), zlib.gzipSync(e2)]);
  const hdr = Buffer.from([0xdb, 0, 0, 0, 0]);
  hdr.writeUInt32BE(body.length, 1);
  c.send(L.packArray(['fd', new L.Raw(Buffer.concat([hdr, body])),
    {size: 2, compressed: 'gzip', chunk: 'fd-2'}]));
  eq(await c.nextMessage(), {ack: 'fd-2'}, 'concatenated gzip');
  c.end();
  eq((await stats(daemon)).events - before, 4, 'four events');
});

test('Fluent Bit v1.5 shape: Forward mode with [[EventTime, {meta}], record]', async ({daemon}) => {
  const before = (await stats(daemon)).events;
  const t = L.packArray([new L.Raw(L.eventTime(NOW, 1)), {}]);
  const entries = [L.packArray([new L.Raw(t), {institution: 'Fluent Bit Shape', kind: 'dialogue'}]),
    // group markers (EventTime -1 / -2) are metadata, not events
    L.packArray([new L.Raw(L.packArray([new L.Raw(L.eventTime(0xFFFFFFFF)), {}])), {}])];
  const c = await L.RawClient.connect(daemon.ingestPort);
  c.send(L.forward('fb', entries, {chunk: 'ZmJzaGFwZQ==', size: 2, fluent_signal: 0}));
  eq(await c.nextMessage(), {ack: 'ZmJzaGFwZQ=='}, 'ack');
  c.end();
  eq((await stats(daemon)).events - before, 1, 'one event');
});

test('invalid records go to the reject store with a reason, and are still acked', async ({daemon}) => {
  const before = await stats(daemon);
  const c = await L.RawClient.connect(daemon.ingestPort);
  c.send(L.forward('bad', [
    L.entry(NOW, {institution: '   ', kind: 'visit'}),
    L.entry(NOW, {institution: 'Fine Institute', format: 'carrier pigeon'}),
    L.entry(NOW, {institution: 'Fine Institute', date: '2023-02-30'}),
    L.entry('not a time', {institution: 'Fine Institute'}),
    L.entry(NOW, {institution: 'Fine Institute'}),
  ], {chunk: 'rj'}));
  eq(await c.nextMessage(), {ack: 'rj'}, 'acked');
  c.end();
  const after = await stats(daemon);
  eq(after.events - before.events, 1, 'one valid event');
  eq(after.rejected - before.rejected, 4, 'four rejects');
  const rj = await daemon.q('rejects', {limit: 1000});
  const reasons = rj.rows.slice(-4).map((r) => r.reason);
  assert(reasons[0].includes('institution'), 'empty institution reason: ' + reasons[0]);
  assert(reasons[1].includes('format'), 'format reason: ' + reasons[1]);
  assert(reasons[2].includes('2023-02-30'), 'date reason: ' + reasons[2]);
  assert(/time/i.test(reasons[3]), 'time reason: ' + reasons[3]);
  assert(rj.rows.slice(-1)[0].raw.length > 0, 'raw bytes kept');
});

test('nil heartbeat is ignored and a message without chunk is stored without ack', async ({daemon}) => {
  const before = (await stats(daemon)).events;
  const c = await L.RawClient.connect(daemon.ingestPort);
  c.send(Buffer.from([0xc0]));
  c.send(L.message('hb', NOW, {institution: 'Heartbeat Fund'}));
  c.send(L.message('hb', NOW, {institution: 'Heartbeat Fund'}, {chunk: 'after'}));
  eq(await c.nextMessage(), {ack: 'after'}, 'only the chunked message is acked');
  c.end();
  eq((await stats(daemon)).events - before, 2, 'both stored');
});

test('half-close: complete messages are committed and acked before the socket closes', async ({daemon}) => {
  const before = (await stats(daemon)).events;
  const c = await L.RawClient.connect(daemon.ingestPort);
  const frames = [];
  for (let i = 0; i < 50; i++) {
    frames.push(L.message('hc', NOW, {institution: 'Half Close Lab', id: 'hc-' + i}, {chunk: 'hc' + i}));
  }
  // the last message is cut short: it is dropped, not half stored
  const partial = L.message('hc', NOW, {institution: 'Half Close Lab', id: 'hc-x'}, {chunk: 'hcx'});
  c.sock.end(Buffer.concat([...frames, partial.subarray(0, partial.length - 3)]));
  await c.closed;
  eq(c.acks.map((a) => a.ack), frames.map((_, i) => 'hc' + i), 'every ack arrived, in order');
  eq((await stats(daemon)).events - before, 50, 'stored');
});

test('handshake: shared key and user accepted, wrong key refused with PONG false', async () => {
  const d = await L.Daemon.start({args: ['--set', 'ingest.shared_key=s3cret',
    '--set', 'ingest.self_hostname=parley-test', '--set', 'ingest.user=alice:pw1']});
  try {
    const sender = logger.createFluentSender('sec', {
      host: '127.0.0.1', port: d.ingestPort, requireAckResponse: true, ackResponseTimeout: 10000,
      security: {clientHostname: 'client-host', sharedKey: 's3cret', username: 'alice', password: 'pw1'},
    });
    await new Promise((res, rej) => sender.emit('e', {institution: 'Secure Forum'}, (e) => (e ? rej(e) : res())));
    sender.end();
    const org = new FluentClient('org', {
      socket: {host: '127.0.0.1', port: d.ingestPort}, ack: {ackTimeout: 10000},
      security: {clientHostname: 'client-host', sharedKey: 's3cret', username: 'alice', password: 'pw1'},
    });
    await org.emit('e', {institution: 'Secure Forum'});
    await org.disconnect();
    eq((await d.q('stats')).events, 2, 'both authenticated clients stored');
    // wrong key: PONG false, then closed; a data message first is refused too
    const c = await L.RawClient.connect(d.ingestPort);
    const helo = await c.nextMessage();
    eq(helo[0], 'HELO', 'server speaks first');
    assert(helo[1].nonce instanceof Uint8Array && helo[1].nonce.length === 16, 'nonce is bin(16)');
    c.send(L.packArray(['PING', 'client-host', 'salt', 'f'.repeat(128), 'alice', 'e'.repeat(128)]));
    const pong = await c.nextMessage();
    eq([pong[0], pong[1]], ['PONG', false], 'refused');
    assert(await c.closedWithin(), 'closed after PONG false');
    const c2 = await L.RawClient.connect(d.ingestPort);
    await c2.nextMessage(); // HELO
    c2.send(L.message('t', NOW, {institution: 'Sneaky'}, {chunk: 'x'}));
    assert(await c2.closedWithin(), 'data before PING closes the connection');
    eq((await d.q('stats')).events, 2, 'nothing stored from unauthenticated clients');
  } finally {
    await d.stop();
    d.cleanup();
  }
});

test('SIGTERM: exit 0, and a restart serves the same data at once', async ({daemon}) => {
  const before = (await stats(daemon)).events;
  const {code} = await daemon.restart('SIGTERM');
  eq(code, 0, 'exit status');
  eq((await stats(daemon)).events, before, 'events after restart');
});

test('retention: old raw events are deleted in the background, aggregates still answer', async () => {
  const d = await L.Daemon.start({args: ['--set', 'storage.retention_days=30']});
  try {
    const c = await L.RawClient.connect(d.ingestPort);
    const entries = [];
    for (let day = 0; day < 120; day++) {
      const date = new Date(Date.UTC(2023, 0, 1) + day * 86400000).toISOString().slice(0, 10);
      entries.push(L.entry(NOW, {institution: 'Retention Institute', date, id: 'ret-' + day,
        counterparts: ['Old Partner Fund'], kind: 'visit'}));
    }
    c.send(L.forward('ret', entries, {chunk: 'ret'}));
    eq(await c.nextMessage(), {ack: 'ret'}, 'acked');
    c.end();
    // the writer deletes in the background, between commits
    const ev = await L.waitFor(async () => {
      const r = await d.q('events', {limit: 1000});
      return r.retained_from ? r : null;
    });
    eq(ev.retained_from, '2023-04-01', 'whole months before the window');
    eq(ev.rows.length, 30, 'raw events of April remain');
    const act = await d.q('activity', {institution: 'Retention Institute', window: 31, as_of: '2023-01-31'});
    eq(act.events, 31, 'January still answers from its aggregates');
    const pair = await d.q('pair', {a: 'Retention Institute', b: 'Old Partner Fund'});
    eq(pair.events, 120, 'the pair counts every event');
    eq((await d.q('stats')).events, 120, 'stats counts every event');
  } finally {
    await d.stop();
    d.cleanup();
  }
});

L.run(async () => {
  const daemon = await L.Daemon.start();
  return {daemon, cleanup: async () => { await daemon.stop(); daemon.cleanup(); }};
});
