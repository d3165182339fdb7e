// Writes the seed corpora of the fuzz targets (tests/fuzz/corpus/<target>/): every Forward
// mode and time encoding, the sample records, and one request per query op. Rerun after
// changing it: node tests/fuzz/make-corpus.js
'use strict';
const fs = require('fs');
const path = require('path');
const zlib = require('zlib');
const L = require('../node/lib');

const root = path.join(__dirname, 'corpus');
function put(target, name, buf) {
  fs.mkdirSync(path.join(root, target), {recursive: true});
  // the forward target reads its first byte as the split size
  fs.writeFileSync(path.join(root, target, name), target === 'forward' ? Buffer.concat([Buffer.from([7]), buf]) : buf);
}

const recs = L.sampleRecords();
const t = 1700000000;
const e = recs.slice(0, 3).map((r, i) => L.entry(i === 0 ? L.eventTime(t, 5) : t, r));
put('forward', 'message', L.message('track2', t, recs[0], {chunk: 'c1'}));
put('forward', 'message-eventtime-ext8', L.message('track2',
  Buffer.from([0xc7, 8, 0, 0x65, 0x53, 0xf1, 0x00, 0, 0, 0, 1]), recs[1]));
put('forward', 'forward', L.forward('track2', e, {chunk: 'c2', size: 3}));
put('forward', 'forward-v15', L.forward('fb', [L.packArray([new L.Raw(L.packArray([new L.Raw(L.eventTime(t)), {a: 1}])), recs[2]])], {chunk: 'c3'}));
put('forward', 'packed-bin', L.packedForward('track2', e, {chunk: 'c4'}));
put('forward', 'packed-str', L.packedForward('track2', e, {compressed: 'text'}, {asStr: true}));
put('forward', 'compressed', L.packedForward('track2', e, {compressed: 'gzip', chunk: 'c5'}, {gzip: true}));
put('forward', 'heartbeat-then-message', Buffer.concat([Buffer.from([0xc0]), L.message('t', t, {institution: 'X'})]));
put('forward', 'float-time', L.message('t', 1700000000.25, {institution: 'X', id: 7}));
recs.forEach((r, i) => put('record', 'sample-' + i, Buffer.from(L.encode(r))));
put('record', 'bad-types', Buffer.from(L.encode({institution: 1, date: 2, topics: 'x', participants: -1})));
put('record', 'single-counterpart', Buffer.from(L.encode({institution: ' A ', counterparts: 'B', id: 12})));
const q = [
  {op: 'ping', req: 1}, {op: 'stats'}, {op: 'activity', institution: 'Alpha Center', window: 365},
  {op: 'top', window: 30, by: 'counterparts', kind: 'visit'}, {op: 'top', window: '3650', topic: 'trade', format: 'virtual'},
  {op: 'series', institution: 'Beta Institute', bucket: 'week', from: '2019-12-20', to: '2020-01-10'},
  {op: 'series', bucket: 'month', kind: 'visit', topic: 'trade'}, {op: 'pair', a: 'Alpha Center', b: 'Beta Institute', period: 'month'},
  {op: 'topics', window: 90, limit: 5}, {op: 'institutions', prefix: 'G'}, {op: 'events', limit: 3, institution: 'Gamma Fund'},
  {op: 'rejects', limit: 2}, {op: 'nope'},
];
q.forEach((r, i) => put('query', 'req-' + i, Buffer.from(L.encode(r))));
console.log('corpus written to', root);
