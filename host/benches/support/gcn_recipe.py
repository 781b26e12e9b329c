"""The gbm-subthreshold filter written the way GCN's Python recipes are.

A confluent-kafka consumer (the library under NASA's `gcn-kafka` client) in a
consumer group, auto-commit off, `consume(timeout=1)` in a loop as in the
gcn-kafka README; each VOEvent parsed with `xml.etree.ElementTree`; a notice
with Packet_Type 131 (Fermi GBM sub-threshold) and Reliability at least
MIN_RELIABILITY written to one file; then a synchronous commit of that
message, so nothing is committed before it is handled.

The file is written with a plain `open`/`write`, as a recipe does: no fsync,
so unlike alerthost a committed alert is not necessarily on disk.

    python gcn_recipe.py BOOTSTRAP GROUP TOPIC OUT_DIR MIN_RELIABILITY

Runs until killed (`cargo bench --bench gcn_recipe` stops it once the group's
commits reach the end of the topic).
"""

import os
import sys
import xml.etree.ElementTree as ET

from confluent_kafka import Consumer

bootstrap, group, topic, out_dir, min_reliability = sys.argv[1:]
min_reliability = float(min_reliability)

consumer = Consumer(
    {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    }
)
consumer.subscribe([topic])

while True:
    for message in consumer.consume(timeout=1):
        if message.error():
            print(message.error(), file=sys.stderr)
            continue
        root = ET.fromstring(message.value())
        params = {
            elem.attrib["name"]: elem.attrib.get("value")
            for elem in root.iterfind(".//Param")
        }
        if (
            params.get("Packet_Type") == "131"
            and float(params["Reliability"]) >= min_reliability
        ):
            name = f"{message.topic()}+{message.partition()}+{message.offset()}.xml"
            with open(os.path.join(out_dir, name), "wb") as f:
                f.write(message.value())
        consumer.commit(message=message, asynchronous=False)
