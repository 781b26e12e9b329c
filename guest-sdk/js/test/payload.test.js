// The payload helpers read the sample alerts the way the Rust SDK does (the
// cases mirror guest-sdk/src/payload*.rs).

import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { ClassicBinary, Format, Json, PayloadError, VoEvent, classicTextPairs, detect, isoTimeToUnixMillis } from '../src/payload.js';

const SAMPLES = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'tests', 'data', 'samples');
const sample = (relative) => new Uint8Array(readFileSync(join(SAMPLES, relative)));
const samplesIn = (folder) => readdirSync(join(SAMPLES, folder)).sort().map((name) => [name, sample(`${folder}/${name}`)]);
const bytes = (text) => new TextEncoder().encode(text);

test('detects every sample by content', () => {
  for (const [folder, expected] of [['voevent', Format.VOEVENT], ['json', Format.JSON], ['binary', Format.CLASSIC_BINARY]]) {
    for (const [name, data] of samplesIn(folder)) assert.equal(detect(data), expected, `${folder}/${name}`);
  }
});

test('detects prologs, prefixes and look-alikes', () => {
  const cases = [
    [new Uint8Array([0xef, 0xbb, 0xbf, ...bytes("\n <VOEvent ivorn='x'/>")]), Format.VOEVENT],
    [bytes("<?xml version='1.0'?><!-- c --><!DOCTYPE v><v:VOEvent>"), Format.VOEVENT],
    [bytes("<?xml version='1.0'?><html></html>"), Format.UNKNOWN],
    [bytes("<?xml version='1.0'"), Format.UNKNOWN],
    [bytes(' [1, 2]'), Format.JSON],
    [bytes('{"ra": '), Format.UNKNOWN],
    [bytes('TITLE:           GCN/FERMI NOTICE\nNOTICE_DATE:     Fri 17 May 24\n'), Format.CLASSIC_TEXT],
    [bytes('hello world'), Format.UNKNOWN],
    [new Uint8Array(160), Format.CLASSIC_BINARY],
    [new Uint8Array(159), Format.UNKNOWN],
    [new Uint8Array(160).fill(0x20), Format.UNKNOWN],
    [new Uint8Array(0), Format.UNKNOWN],
  ];
  for (const [data, expected] of cases) assert.equal(detect(data), expected, new TextDecoder().decode(data));
});

test('ISO times become Unix milliseconds', () => {
  const cases = [
    ['1970-01-01T00:00:00', 0],
    ['2018-04-22T21:54:11.05', 1524434051050],
    ['2026-02-07T00:55:47.933189Z', 1770425747933],
    ['2024-02-29 12:00:00Z', 1709208000000],
    ['2024-05-01T10:00:00+02:00', 1714550400000],
    ['2024-05-01T10:00:00-0130', 1714563000000],
    ['1969-12-31T23:59:59.999', -1],
    ['2023-02-29T00:00:00', null],
    ['2024-05-01T24:00:00', null],
    ['2024-05-01T10:00:60', null],
    ['2024-05-01T10:00:00.', null],
    ['2024-05-01', null],
    ['2024/05/01T10:00:00', null],
    ['not a time', null],
  ];
  for (const [text, expected] of cases) assert.equal(isoTimeToUnixMillis(text), expected, text);
});

test('reads GBM sub-threshold params, groups and position', () => {
  const event = VoEvent.parse(sample('voevent/fermi_gbm_subthresh_546126856.xml'));
  assert.equal(event.ivorn, 'ivo://nasa.gsfc.gcn/Fermi#GBM_SubThresh_2018-04-22T21:54:11.00_546126856_0-001');
  assert.equal(event.role, 'test');
  assert.equal(event.version, '2.0');
  assert.equal(event.date, '2018-04-23T00:30:42');
  assert.equal(event.packetType(), 131);
  assert.equal(event.param('Reliability'), '2');
  assert.equal(event.paramNumber('Reliability'), 2);
  assert.equal(event.params.find((p) => p.name === 'Reliability').unit, 'dn');
  assert.equal(event.paramNumber('Trans_Duration'), 1.407);
  assert.equal(event.param('Trigger_ID'), '0x0');
  assert.equal(event.groupParam('Trigger_ID', 'Test_Submission'), 'false');
  const sunRa = event.params.find((p) => p.name === 'Sun_RA');
  assert.deepEqual([sunRa.group, sunRa.ucd], ['Obs_Support_Info', 'pos.eq.ra']);
  assert.equal(event.params.length, 34);
  assert.equal(event.isoTime, '2018-04-22T21:54:11.05');
  assert.equal(event.timeUnixMillis(), 1524434051050);
  assert.deepEqual(event.position, { ra: 262.97, dec: 19.7399, errorRadius: 22.1299 });
});

test('reads Swift BAT position and LVK notice without one', () => {
  const bat = VoEvent.parse(sample('voevent/swift_bat_grb_pos_1118357.xml'));
  assert.equal(bat.role, 'observation');
  assert.equal(bat.packetType(), 61);
  assert.equal(bat.param('TrigID'), '1118357');
  assert.deepEqual(bat.position, { ra: 225.0208, dec: -69.4969, errorRadius: 0.05 });
  assert.equal(bat.isoTime, '2022-07-30T15:48:54.89');
  const lvk = VoEvent.parse(sample('voevent/lvc_preliminary_MS260207a-1.xml'));
  assert.equal(lvk.packetType(), 150);
  assert.equal(lvk.groupParam('Classification', 'BNS').length, 18);
  assert.equal(lvk.paramNumber('FAR'), 5.176954877338635e-16);
  assert.equal(lvk.date, '2026-02-07T00:57:16Z');
  assert.equal(lvk.timeUnixMillis(), 1770425747933);
  assert.equal(lvk.position, null);
});

test('parses every sample with ivorn, time and packet type', () => {
  for (const [name, data] of samplesIn('voevent')) {
    const event = VoEvent.parse(data);
    assert.ok(event.ivorn.startsWith('ivo://'), name);
    assert.notEqual(event.timeUnixMillis(), null, name);
    assert.notEqual(event.packetType(), null, name);
    assert.equal(event.position === null, name.startsWith('lvc_'), name);
  }
});

test('reads Value children, entities and a plain root', () => {
  const event = VoEvent.parse(bytes(`<VOEvent ivorn="ivo://x/y#1&amp;2">
    <What>
      <Param name="a"><Value>1.5</Value></Param>
      <Param name="b" value="x &lt; y"/>
      <Param name="c" value="&#x41;"/>
    </What>
    <WhereWhen><ObsDataLocation><ObservationLocation>
      <AstroCoords coord_system_id="UTC-GAL-GEO">
        <Position2D unit="deg"><Value2><C1>1</C1><C2>2</C2></Value2></Position2D>
      </AstroCoords>
    </ObservationLocation></ObsDataLocation></WhereWhen>
  </VOEvent>`));
  assert.equal(event.ivorn, 'ivo://x/y#1&2');
  assert.equal(event.paramNumber('a'), 1.5);
  assert.equal(event.param('b'), 'x < y');
  assert.equal(event.param('c'), 'A');
  assert.equal(event.position, null);
});

test('param errors say missing or not a number', () => {
  const event = VoEvent.parse(bytes('<VOEvent ivorn="i"><What><Param name="x" value="high"/></What></VOEvent>'));
  assert.throws(() => event.paramNumber('y'), { message: 'invalid VOEvent: no Param named `y`' });
  assert.throws(() => event.paramNumber('x'), { message: 'invalid VOEvent: Param `x` = "high" is not a number' });
});

test('malformed documents fail with line and reason', () => {
  const subthreshold = sample('voevent/fermi_gbm_subthresh_546126856.xml');
  const cut = new TextDecoder().decode(subthreshold).indexOf('<WhereWhen>');
  const cases = [
    [subthreshold.subarray(0, cut), 'document ends inside <VOEvent>'],
    [subthreshold.subarray(0, cut + 3), 'not closed'],
    [bytes("<VOEvent ivorn='i'>\n<What>\n</Who>\n</VOEvent>"), 'line 3: malformed XML'],
    [bytes('<html/>'), 'root element is <html>, not <VOEvent>'],
    [bytes("<VOEvent role='test'/>"), '<VOEvent> has no ivorn attribute'],
    [bytes("<VOEvent ivorn='i'/><VOEvent ivorn='j'/>"), 'after the end of the root'],
    [bytes("<VOEvent ivorn='i'>&nbsp;</VOEvent>"), 'unknown entity `&nbsp;`'],
    [new Uint8Array([...bytes("<VOEvent ivorn='i'>"), 0xff, ...bytes('</VOEvent>')]), 'not UTF-8 at byte 19'],
    [bytes('  '), 'no root element'],
  ];
  for (const [data, expected] of cases) {
    assert.throws(() => VoEvent.parse(data), (e) => e instanceof PayloadError && e.format === Format.VOEVENT && e.detail.includes(expected), expected);
  }
});

test('bad coordinates are errors', () => {
  const xml = bytes(`<VOEvent ivorn="i"><WhereWhen><Position2D unit="deg">
      <Value2><C1>abc</C1><C2>1</C2></Value2></Position2D></WhereWhen></VOEvent>`);
  assert.throws(() => VoEvent.parse(xml), { detail: 'line 2: <C1> "abc" is not a number' });
});

test('reads JSON by dotted path', () => {
  const ep = Json.parse(sample('json/einstein_probe_wxt-alert-01709259773.json'));
  assert.equal(ep.number('ra'), 184.664);
  assert.equal(ep.number('ra_dec_error'), 0.05174976);
  assert.equal(ep.str('instrument'), 'WXT');
  assert.equal(ep.str('mission'), null);
  assert.equal(ep.str('id.0'), '01709259773');
  assert.equal(ep.number('image_energy_range.1'), 4);
  assert.equal(isoTimeToUnixMillis(ep.str('trigger_time')), 1775735111949);
  const gw = Json.parse(sample('json/igwn_gwalert-S230518h-initial.json'));
  assert.equal(gw.str('event.pipeline'), 'pycbc');
  assert.equal(gw.number('event.classification.NSBH'), 0.8642645059209272);
  assert.equal(gw.str('event.instruments.1'), 'L1');
  assert.equal(gw.get('event.duration'), null);
  assert.equal(gw.number('ra'), null);
  const doc = new Json({ a: [{ b: 'x' }], n: '1.5' });
  assert.equal(doc.str('a.0.b'), 'x');
  for (const path of ['a.1.b', 'a.x', 'a.0.b.c', 'missing', 'a..b']) assert.equal(doc.get(path), undefined, path);
  assert.equal(doc.number('n'), null);
  assert.throws(() => Json.parse(bytes('{\n  "ra": 12,,\n}')), (e) => e instanceof PayloadError && e.format === Format.JSON);
});

test('reads classic binary packets', () => {
  const packet = ClassicBinary.parse(sample('binary/SWIFT_BAT_GRB_POS_ACK.bin'));
  assert.equal(packet.packetType, 61);
  assert.equal(packet.triggerNumber, 1227767);
  assert.equal(packet.burstTjd, 20441);
  assert.equal(packet.burstSod, 65213.22);
  assert.equal(packet.burstUnixMillis, isoTimeToUnixMillis('2024-05-11T18:06:53.22Z'));
  assert.deepEqual([packet.word(7), packet.word(8), packet.word(40)], [3366645, 85135, null]);
  for (const [name, data] of samplesIn('binary')) {
    const tjd = ClassicBinary.parse(data).burstTjd;
    assert.ok(tjd >= 20310 && tjd <= 20675, name);
  }
  assert.throws(() => ClassicBinary.parse(new Uint8Array(161)), {
    message: 'invalid classic binary packet: a packet is 160 bytes, this payload is 161',
  });
});

test('reads classic text notice pairs with continuations', () => {
  const notice = bytes(
    'TITLE:            GCN/FERMI NOTICE\r\n' +
      'NOTICE_TYPE:      Fermi-GBM Sub-Threshold\n' +
      'GRB_RA:           217.6800d {+14h 30m 43s} (J2000),\n' +
      '                  217.9000d {+14h 31m 36s} (current)\n' +
      '\n' +
      'COMMENTS:         Fermi-GBM Sub-Threshold Notice.\n' +
      'COMMENTS:         Reliability: 2\n',
  );
  assert.equal(detect(notice), Format.CLASSIC_TEXT);
  assert.deepEqual(classicTextPairs(notice), [
    ['TITLE', 'GCN/FERMI NOTICE'],
    ['NOTICE_TYPE', 'Fermi-GBM Sub-Threshold'],
    ['GRB_RA', '217.6800d {+14h 30m 43s} (J2000), 217.9000d {+14h 31m 36s} (current)'],
    ['COMMENTS', 'Fermi-GBM Sub-Threshold Notice.'],
    ['COMMENTS', 'Reliability: 2'],
  ]);
  assert.deepEqual(classicTextPairs(bytes('  stray\nKEY:\n  more\nnot a key: x\n')), [['KEY', 'more not a key: x']]);
});
