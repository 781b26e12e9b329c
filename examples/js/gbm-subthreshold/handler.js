// gbm-subthreshold: save Fermi GBM sub-threshold notices whose reliability
// is high enough; drop every other message.
//
// The JavaScript version of examples/gbm-subthreshold: same parameters, same
// decisions (tests/languages.rs checks it on every sample).
//
// A message is saved when it is a VOEvent with `Packet_Type` 131
// (`FERMI_GBM_SUBTHRESH`) and its `Reliability` param is at least
// `min_reliability`. GBM rates each sub-threshold transient from 1 to 10.
//
// Parameters:
// - `min_reliability`: integer from 1 to 10, default 5. Anything else
//   refuses the handler at init.
//
// Errors: a payload that starts like a VOEvent but does not parse, and a
// sub-threshold notice without a numeric `Reliability`, are bad records.
//
// Caveat: test notices (`role="test"`) are treated like real ones.

import { BadRecord, debug, payload, save } from '../../../guest-sdk/js/src/index.js';

const { Format, PayloadError, VoEvent } = payload;

/** GCN's notice type number for Fermi GBM sub-threshold notices. */
export const FERMI_GBM_SUBTHRESH = 131;

/** Saves reliable-enough Fermi GBM sub-threshold VOEvents. */
export class Handler {
  constructor(params) {
    for (const key of params.keys()) {
      if (key !== 'min_reliability') {
        throw new Error(`unknown parameter \`${key}\`; gbm-subthreshold takes \`min_reliability\``);
      }
    }
    this.minReliability = params.integer('min_reliability', 5);
    if (!(this.minReliability >= 1 && this.minReliability <= 10)) {
      throw new Error(
        `parameter \`min_reliability\` = ${this.minReliability} is out of range: GBM reliability runs from 1 to 10`,
      );
    }
  }

  handle(msg) {
    if (payload.detect(msg.value) !== Format.VOEVENT) return [];
    let event;
    try {
      event = VoEvent.parse(msg.value);
    } catch (e) {
      if (e instanceof PayloadError) throw new BadRecord(e.message);
      throw e;
    }
    if (event.packetType() !== FERMI_GBM_SUBTHRESH) return [];
    let reliability;
    try {
      reliability = event.paramNumber('Reliability');
    } catch (e) {
      if (e instanceof PayloadError) throw new BadRecord(`sub-threshold notice ${event.ivorn}: ${e.message}`);
      throw e;
    }
    if (reliability >= this.minReliability) return [save()];
    debug(`${event.ivorn}: reliability ${reliability} is below ${this.minReliability}, dropped`);
    return [];
  }
}
