"""Embedding loopgain-receiver in Python: store one payload, read stats."""
import json
import sys

from loopgain_receiver import Receiver

with Receiver("telemetry.db") as receiver:  # SQLite file, created if absent
    customer = receiver.create_customer("Acme")  # the token is shown once
    body = open(sys.argv[1], "rb").read()  # a POST /v1/aggregate body
    result = receiver.ingest("Bearer " + customer.token, body)
    print("redacted:", result.redacted)
    print(json.dumps(receiver.stats(customer.customer_id)["totals"]))
