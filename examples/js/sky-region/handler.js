// sky-region: forward a compact JSON summary of every alert located inside a
// cone on the sky; drop everything else.
//
// The JavaScript version of examples/sky-region: same parameters, same
// decisions and the same summary (tests/languages.rs checks it on every
// sample).
//
// Reads GCN unified-schema JSON notices (top-level `ra`, `dec`,
// `ra_dec_error`) and VOEvents (`WhereWhen` position). An alert is kept when
// the great-circle distance from the cone's centre to its position is at most
// `radius`; the summary sent to `sink` is
//
//   {"dec":-69.4969,"error":0.05,"mission":"SWIFT","offset":42,"partition":0,
//    "ra":225.0208,"time":"2022-07-30T15:48:54.89","topic":"..."}
//
// `mission` is the notice's `mission`, else the mission folder of its
// `$schema`, else for a VOEvent the stream of its ivorn; `time` the event time
// as written; `error` the error radius in degrees; unknown values are `null`.
//
// Parameters:
// - `ra`, `dec`: centre of the cone in degrees, required; `ra` from 0 to 360,
//   `dec` from -90 to 90.
// - `radius`: cone radius in degrees, required, above 0 and at most 180.
// - `sink`: name of the forward sink, default `summaries`.
//
// Dropped: other formats, alerts without a position, alerts outside the cone.
// A VOEvent that does not parse, or a position off the sky, is a bad record.
//
// Caveat: only the centre of the error region is tested.

import { BadRecord, forward, payload } from '../../../guest-sdk/js/src/index.js';

const { Format, Json, PayloadError, VoEvent } = payload;

const PARAMS = ['ra', 'dec', 'radius', 'sink'];

/** A number as Rust's `Display` writes it: `361`, `0.5`, `NaN`. */
const show = (value) => (Number.isNaN(value) ? 'NaN' : Number.isFinite(value) ? String(value) : value > 0 ? 'inf' : '-inf');

function inRange(params, key, low, high) {
  const value = params.number(key);
  if (!(value >= low && value <= high)) {
    throw new Error(`parameter \`${key}\` = ${show(value)} is out of range ${low} to ${high} (degrees)`);
  }
  return value;
}

/** `.../gcn/notices/einstein_probe/wxt/alert.schema.json` → `einstein_probe`. */
export function schemaMission(schema) {
  const at = schema.indexOf('/notices/');
  if (at < 0) return null;
  const mission = schema.slice(at + '/notices/'.length).split('/')[0];
  return mission || null;
}

/** `ivo://nasa.gsfc.gcn/SWIFT#BAT_GRB_Pos` → `SWIFT`. */
export function ivornStream(ivorn) {
  if (!ivorn.startsWith('ivo://') || !ivorn.includes('#')) return null;
  const path = ivorn.slice('ivo://'.length).split('#')[0];
  const slash = path.lastIndexOf('/');
  if (slash < 0) return null;
  return path.slice(slash + 1) || null;
}

/** The located alert of a unified-schema notice; `null` without a position. */
function fromJson(doc) {
  const ra = doc.number('ra');
  const dec = doc.number('dec');
  if (ra === null || dec === null) return null;
  const schema = doc.str('$schema');
  return {
    ra,
    dec,
    error: doc.number('ra_dec_error'),
    time: doc.str('trigger_time') ?? doc.str('alert_datetime'),
    mission: doc.str('mission') ?? (schema === null ? null : schemaMission(schema)),
  };
}

/** The located alert of a VOEvent; `null` when it has no position. */
function fromVoEvent(event) {
  const p = event.position;
  // GCN fills the position of notices that carry none (Fermi GBM alerts)
  // with RA 0, Dec 0 and error 0; that is not a location.
  if (p === null || (p.ra === 0 && p.dec === 0 && p.errorRadius === 0)) return null;
  return { ra: p.ra, dec: p.dec, error: p.errorRadius, time: event.isoTime, mission: ivornStream(event.ivorn) };
}

const radians = (degrees) => (degrees * Math.PI) / 180;
const degrees = (radians) => (radians * 180) / Math.PI;

/** Great-circle distance in degrees (haversine formula). */
export function angularDistance(ra1, dec1, ra2, dec2) {
  const [d1, d2] = [radians(dec1), radians(dec2)];
  const halfDdec = (d2 - d1) / 2;
  const halfDra = radians(ra2 - ra1) / 2;
  const h = Math.sin(halfDdec) ** 2 + Math.cos(d1) * Math.cos(d2) * Math.sin(halfDra) ** 2;
  return degrees(2 * Math.asin(Math.min(Math.sqrt(h), 1)));
}

/** Forwards summaries of alerts inside a cone. */
export class Handler {
  constructor(params) {
    for (const key of params.keys()) {
      if (!PARAMS.includes(key)) {
        throw new Error(`unknown parameter \`${key}\`; sky-region takes \`ra\`, \`dec\`, \`radius\` and \`sink\``);
      }
    }
    this.ra = inRange(params, 'ra', 0, 360);
    this.dec = inRange(params, 'dec', -90, 90);
    this.radius = inRange(params, 'radius', 0, 180);
    this.sink = params.get('sink', 'summaries').trim();
    if (this.radius === 0) throw new Error('parameter `radius` must be above 0');
    if (!this.sink) throw new Error('parameter `sink` is empty');
  }

  handle(msg) {
    let alert = null;
    try {
      const format = payload.detect(msg.value);
      if (format === Format.JSON) alert = fromJson(Json.parse(msg.value));
      else if (format === Format.VOEVENT) alert = fromVoEvent(VoEvent.parse(msg.value));
    } catch (e) {
      if (e instanceof PayloadError) throw new BadRecord(e.message);
      throw e;
    }
    if (alert === null) return [];
    if (!(alert.ra >= 0 && alert.ra <= 360 && alert.dec >= -90 && alert.dec <= 90)) {
      throw new BadRecord(`position ra=${show(alert.ra)}, dec=${show(alert.dec)} is not on the sky`);
    }
    if (angularDistance(this.ra, this.dec, alert.ra, alert.dec) > this.radius) return [];
    // Keys in sorted order, as the Rust and Python versions write them.
    const summary = {
      dec: alert.dec,
      error: alert.error,
      mission: alert.mission,
      offset: msg.offset,
      partition: msg.partition,
      ra: alert.ra,
      time: alert.time,
      topic: msg.topic,
    };
    return [forward(this.sink, { value: JSON.stringify(summary) })];
  }
}
