// first-notice: pass the first notice of each GCN event, and any later notice
// of it whose error radius is smaller than that of every earlier one;
// retractions always pass. Everything else is dropped.
//
// The JavaScript version of examples/first-notice: same parameters, same
// rules, same decisions (tests/parity.rs checks them on every sample). The
// Rust crate's src/lib.rs explains the event keys, error radii and
// retractions in full; in short:
//
// - key `MISSION/ID`: the mission from GCN's notice type (VOEvent
//   `Packet_Type`, packet word 0), the JSON `$schema` folders, or the text
//   `TITLE`; the ID from `TrigID` / `GraceID` / `run_id`+`event_id` /
//   `Trans_Num`, the packet's trigger number, JSON `id.0` or `ref_ID`, IGWN
//   `superevent_id`, text `TRIGGER_NUM`;
// - error radius in degrees (0 is none): VOEvent `Error2Radius`, JSON
//   `ra_dec_error`, packet word 11 / 10000 for position notices, text
//   `GRB_ERROR` in deg, arcmin or arcsec;
// - the state keeps, per key, the smallest radius passed so far as decimal
//   text (empty when none), expiring `ttl_days` after the last passing notice.
//
// Parameters:
// - `sink`: forward passing notices to this sink instead of saving them.
// - `ttl_days`: how long an event is remembered, 1 to 3650, default 30.

import { debug, forward, payload, save, state } from '../../../guest-sdk/js/src/index.js';

const PARAMS = ['sink', 'ttl_days'];
const DAY_MS = 86_400_000;

/** GCN notice types whose packet word 11 is the error radius in 1/10000
 * degree (see the Rust crate). */
export const POSITION_PACKETS = [53, 54, 55, 56, 61, 67, 81, 97, 111, 112, 115, 131, 173, 174, 176];

const PASSING = ['first', 'smaller', 'retraction'];

/** Passes first notices and better localisations. */
export class Handler {
  constructor(params) {
    for (const key of params.keys()) {
      if (!PARAMS.includes(key)) throw new Error(`unknown parameter \`${key}\`; first-notice takes \`sink\` and \`ttl_days\``);
    }
    const days = params.integer('ttl_days', 30);
    if (!(days >= 1 && days <= 3650)) throw new Error(`parameter \`ttl_days\` = ${days} is out of range: 1 to 3650`);
    let sink = params.get('sink');
    if (sink !== null) {
      sink = payload.trim(sink);
      if (sink === '') throw new Error('parameter `sink` is empty');
    }
    this.sink = sink;
    this.ttlMs = days * DAY_MS;
  }

  handle(msg) {
    const [decision, key] = this.decide(msg.value);
    debug(`first-notice: ${decision} ${key ?? '-'}`);
    if (!PASSING.includes(decision)) return [];
    return this.sink === null ? save() : forward(this.sink);
  }

  /** Decide on one payload and record the decision in the state: `[decision,
   * key]`. */
  decide(bytes) {
    const n = notice(bytes);
    if (n === null) return ['no-event', null];
    const stored = state.get(n.key);
    const seen = stored !== null;
    // The smallest radius passed so far; null when none had one.
    const best = seen ? payload.parseF64(new TextDecoder().decode(stored)) : null;
    let decision;
    if (n.retraction) decision = 'retraction';
    else if (!seen) decision = 'first';
    else if (n.errorRadius !== null && (best === null || n.errorRadius < best)) decision = 'smaller';
    else decision = 'repeat';
    let record;
    if (decision === 'first' || decision === 'smaller') record = n.errorRadius;
    // A retraction of an unseen event makes it seen.
    else if (decision === 'retraction' && !seen) record = null;
    else return [decision, n.key];
    state.set(n.key, record === null ? '' : String(record), { ttlMs: this.ttlMs });
    return [decision, n.key];
  }
}

/** The mission of a GCN notice type; other types get `gcn-TYPE`. */
export function missionOfPacket(type) {
  if (type >= 52 && type <= 56) return 'integral';
  if (type >= 60 && type <= 99) return 'swift';
  if (type >= 110 && type <= 119) return 'fermi-gbm';
  if (type >= 120 && type <= 129) return 'fermi-lat';
  if (type === 131) return 'fermi-gbm-subthreshold';
  if ((type >= 150 && type <= 154) || type === 163 || type === 164) return 'lvk';
  if (type >= 157 && type <= 160) return 'amon';
  if ([173, 174, 176].includes(type)) return 'icecube';
  return `gcn-${type}`;
}

/** The event key, error radius and retraction flag of a notice in any of
 * GCN's formats: `{key, errorRadius, retraction}`, or `null` when it names no
 * event this handler knows. */
export function notice(bytes) {
  try {
    switch (payload.detect(bytes)) {
      case payload.Format.VOEVENT:
        return voeventNotice(payload.VoEvent.parse(bytes));
      case payload.Format.JSON:
        return jsonNotice(payload.Json.parse(bytes));
      case payload.Format.CLASSIC_BINARY:
        return binaryNotice(payload.ClassicBinary.parse(bytes));
      case payload.Format.CLASSIC_TEXT:
        return textNotice(payload.classicTextPairs(bytes));
      default:
        return null;
    }
  } catch (e) {
    if (e instanceof payload.PayloadError) return null;
    throw e;
  }
}

const key = (mission, id) => {
  const trimmed = id === null || id === undefined ? '' : payload.trim(id);
  return trimmed === '' ? null : `${mission}/${trimmed}`;
};
const positive = (radius) => (radius !== null && radius !== undefined && radius > 0 ? radius : null);
const asciiLower = (text) => text.replace(/[A-Z]/g, (c) => c.toLowerCase());
const make = (k, errorRadius, retraction) => (k === null ? null : { key: k, errorRadius, retraction });

function voeventNotice(event) {
  const type = event.packetType();
  if (type === null) return null;
  const mission = missionOfPacket(type);
  let id;
  if (mission === 'lvk') id = event.param('GraceID');
  else if (mission === 'icecube') {
    const [run, number] = [event.param('run_id'), event.param('event_id')];
    if (run === null || number === null) return null;
    id = `${payload.trim(run)}_${payload.trim(number)}`;
  } else if (mission === 'fermi-gbm-subthreshold') id = event.param('Trans_Num');
  else id = event.param('TrigID');
  const flag = (name, value) => {
    const found = event.param(name);
    return found !== null && asciiLower(payload.trim(found)) === asciiLower(value);
  };
  return make(
    key(mission, id),
    positive(event.position?.errorRadius ?? null),
    type === 164 || flag('Retraction', 'true') || flag('AlertType', 'Retraction'),
  );
}

function jsonNotice(doc) {
  const alertType = doc.str('alert_type');
  const retraction = alertType !== null && asciiLower(payload.trim(alertType)) === 'retraction';
  const superevent = doc.str('superevent_id');
  if (superevent !== null) return make(key('lvk', superevent), null, retraction);
  const schema = doc.str('$schema');
  const at = schema === null ? -1 : schema.indexOf('/notices/');
  if (at < 0) return null;
  const path = schema.slice(at + '/notices/'.length);
  const slash = path.lastIndexOf('/');
  if (slash < 0) return null;
  const mission = path.slice(0, slash).replaceAll('/', '-');
  const id = doc.str('id.0') ?? doc.str('ref_ID');
  return make(key(mission, id), positive(doc.number('ra_dec_error')), retraction);
}

function binaryNotice(packet) {
  const type = packet.packetType;
  const mission = missionOfPacket(type);
  let trigger = packet.triggerNumber;
  // The top 8 bits are the observation segment.
  if (mission === 'swift') trigger &= 0x00ffffff;
  if (trigger <= 0) return null;
  const id = mission === 'icecube' ? `${packet.word(23)}_${trigger}` : String(trigger);
  const radius = POSITION_PACKETS.includes(type) ? packet.words[11] / 10_000 : null;
  return make(key(mission, id), positive(radius), type === 164);
}

function textNotice(pairs) {
  const value = (name) => pairs.find(([k]) => k === name)?.[1] ?? null;
  const title = value('TITLE');
  if (title === null || !title.startsWith('GCN/') || !title.endsWith(' NOTICE')) return null;
  const source = asciiLower(payload.trim(title.slice('GCN/'.length, title.length - ' NOTICE'.length)));
  const noticeType = asciiLower(value('NOTICE_TYPE') ?? '');
  let mission = source;
  if (source === 'fermi') {
    if (noticeType.includes('sub-threshold')) mission = 'fermi-gbm-subthreshold';
    else if (noticeType.includes('lat')) mission = 'fermi-lat';
    else mission = 'fermi-gbm';
  } else if (source === 'lvc') mission = 'lvk';
  const trigger = value('TRIGGER_NUM');
  if (trigger === null) return null;
  const error = value('GRB_ERROR');
  return make(
    key(mission, trigger.split(/[ ,]/)[0]),
    positive(error === null ? null : textRadius(error)),
    noticeType.includes('retraction'),
  );
}

/** A classic text `GRB_ERROR` such as `7.60 [deg radius, statistical only]`,
 * in degrees. */
function textRadius(text) {
  const words = text.split(/[ \t\n\f\r]+/).filter((w) => w !== '');
  if (words.length < 2) return null;
  const number = payload.parseF64(words[0]);
  if (number === null || !Number.isFinite(number)) return null;
  const unit = words[1].replace(/^\[+/, '').split(/[,\]]/)[0];
  switch (unit) {
    case 'deg':
      return number;
    case 'arcmin':
      return number / 60;
    case 'arcsec':
      return number / 3600;
    default:
      return null;
  }
}
