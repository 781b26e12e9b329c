"""gbm-subthreshold: save Fermi GBM sub-threshold notices whose reliability
is high enough; drop every other message.

The Python version of ``examples/gbm-subthreshold``: same parameters, same
decisions (``tests/languages.rs`` checks it on every sample).

A message is saved when it is a VOEvent with ``Packet_Type`` 131
(``FERMI_GBM_SUBTHRESH``) and its ``Reliability`` param is at least
``min_reliability``. GBM rates each sub-threshold transient from 1 to 10.

Parameters:
- ``min_reliability``: integer from 1 to 10, default 5. Anything else
  refuses the handler at init.

Errors: a payload that starts like a VOEvent but does not parse, and a
sub-threshold notice without a numeric ``Reliability``, are bad records.

Caveat: test notices (``role="test"``) are treated like real ones.
"""

import alerthost
from alerthost import payload
from alerthost.payload import PayloadError, VoEvent

#: GCN's notice type number for Fermi GBM sub-threshold notices.
FERMI_GBM_SUBTHRESH = 131


class Handler:
    """Saves reliable-enough Fermi GBM sub-threshold VOEvents."""

    def __init__(self, params: alerthost.Params) -> None:
        for key in params.keys():
            if key != "min_reliability":
                raise ValueError(f"unknown parameter `{key}`; gbm-subthreshold takes `min_reliability`")
        self.min_reliability = params.int("min_reliability", 5)
        if not 1 <= self.min_reliability <= 10:
            raise ValueError(
                f"parameter `min_reliability` = {self.min_reliability} is out of range: "
                "GBM reliability runs from 1 to 10"
            )

    def handle(self, msg: alerthost.Message):
        if payload.detect(msg.value) != payload.VOEVENT:
            return None
        try:
            event = VoEvent.parse(msg.value)
        except PayloadError as e:
            raise alerthost.BadRecord(str(e))
        if event.packet_type() != FERMI_GBM_SUBTHRESH:
            return None
        try:
            reliability = event.param_float("Reliability")
        except PayloadError as e:
            raise alerthost.BadRecord(f"sub-threshold notice {event.ivorn}: {e}")
        if reliability >= self.min_reliability:
            return alerthost.save()
        alerthost.debug(f"{event.ivorn}: reliability {reliability} is below {self.min_reliability}, dropped")
        return None
